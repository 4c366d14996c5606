// The camera's video to the box: one supervised ffmpeg pushing RTMP (the box's node-media-server)
// from a V4L2 device (encoded to H.264 at the set size and bitrate), the camera's own RTSP
// encoder or a file looped (copied as they are). Restarted with backoff when it ends; a push
// refused at once again and again (a stream key the box no longer takes) is reported.
// With motion frames on, the same ffmpeg also hands small RGB frames to the camera's motion
// sensor (fd 3): one reader of the source, which a V4L2 device needs.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';

/** Encoded here (raw frames in): their size and bitrate are ours to set. */
export interface EncodedVideo {
  width: number;
  height: number;
  bitrateKbps: number;
}

export type VideoSource =
  | { kind: 'file'; path: string }
  | { kind: 'rtsp'; url: string }
  | ({ kind: 'v4l2'; device: string } & EncodedVideo)
  /** ffmpeg's test pattern: a camera with no sensor, for demos (and the encoder's tests). */
  | ({ kind: 'pattern' } & EncodedVideo);

export const encodedHere = (s: VideoSource): s is Extract<VideoSource, EncodedVideo> =>
  s.kind === 'v4l2' || s.kind === 'pattern';

const ENCODED_DEFAULTS: EncodedVideo = { width: 1280, height: 720, bitrateKbps: 2000 };

/** A source from the command line: a file path, rtsp://..., /dev/videoN, or "pattern". */
export function parseSource(text: string): VideoSource {
  if (/^rtsps?:\/\//.test(text)) return { kind: 'rtsp', url: text };
  if (/^\/dev\/video\d+$/.test(text)) return { kind: 'v4l2', device: text, ...ENCODED_DEFAULTS };
  if (text === 'pattern') return { kind: 'pattern', ...ENCODED_DEFAULTS };
  return { kind: 'file', path: text };
}

/** The ffmpeg input of a source, as read for a push or a snapshot. */
export function sourceInput(s: VideoSource): string[] {
  switch (s.kind) {
    case 'file':
      return ['-re', '-stream_loop', '-1', '-i', s.path];
    case 'rtsp':
      return ['-rtsp_transport', 'tcp', '-timeout', '5000000', '-i', s.url];
    case 'v4l2':
      return ['-f', 'v4l2', '-video_size', `${s.width}x${s.height}`, '-i', s.device];
    case 'pattern':
      return ['-re', '-f', 'lavfi', '-i', `testsrc2=size=${s.width}x${s.height}:rate=15`];
  }
}

/** H.264 as browsers play it (4:2:0; a webcam gives 4:2:2), a keyframe every 2 s, at the set bitrate. */
const encode = (s: EncodedVideo) => [
  '-vf',
  `scale=${s.width}:${s.height}`,
  '-pix_fmt',
  'yuv420p',
  '-c:v',
  'libx264',
  '-preset',
  'veryfast',
  '-tune',
  'zerolatency',
  '-force_key_frames',
  'expr:gte(t,n_forced*2)',
  '-b:v',
  `${s.bitrateKbps}k`,
  '-maxrate',
  `${s.bitrateKbps}k`,
  '-bufsize',
  `${s.bitrateKbps * 2}k`,
];

/** Motion frames: small and few, enough for a motion engine. */
export const MOTION_FRAME = { width: 256, height: 144, fps: 2 };
const MOTION_FRAME_BYTES = MOTION_FRAME.width * MOTION_FRAME.height * 3;

const PROGRESS_STALE_MS = 5000;
const QUICK_EXIT_MS = 3000;
const REFUSED_AFTER = 3;

export class VideoPush extends EventEmitter<{
  refused: [string];
  frame: [{ data: Buffer; width: number; height: number }];
}> {
  private child: ChildProcess | undefined;
  private url: string | undefined;
  private lastProgressAt = 0;
  private quickExits = 0;
  private backoffMs = 1000;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(
    private source: VideoSource,
    private readonly ffmpeg = 'ffmpeg',
    private readonly log: (m: string) => void = () => {},
    private readonly motionFrames = false,
    /** Where a source encoded here keeps its latest picture (a V4L2 device has one reader: the push). */
    private readonly latestJpeg?: string,
  ) {
    super();
  }

  /** Frames went out in the last few seconds. */
  get healthy(): boolean {
    return Boolean(this.child) && Date.now() - this.lastProgressAt < PROGRESS_STALE_MS;
  }

  get video(): VideoSource {
    return this.source;
  }

  start(url: string): void {
    this.url = url;
    this.stopped = false;
    this.quickExits = 0;
    this.restart();
  }

  /** Another size or bitrate (of a source encoded here: a copied stream is what its encoder makes). */
  setVideo(v: Partial<EncodedVideo>): void {
    if (!encodedHere(this.source))
      throw new Error(
        `The video is copied from ${this.source.kind === 'file' ? 'a file' : "the camera's encoder"}; its size and bitrate are set there`,
      );
    this.source = { ...this.source, ...v };
    this.restart();
  }

  restart(): void {
    clearTimeout(this.timer);
    const old = this.child;
    this.child = undefined;
    old?.removeAllListeners('exit');
    old?.kill('SIGTERM');
    if (!this.stopped && this.url) this.spawn(this.url);
  }

  private args(url: string): string[] {
    const s = this.source;
    const input =
      s.kind === 'file'
        ? [...sourceInput(s), '-c', 'copy']
        : s.kind === 'rtsp'
          ? // An RTSP encoder's first packets can come before its RTCP timing, with no timestamps,
            // which FLV cannot carry: they are given 0 and made non-negative.
            [
              '-fflags',
              '+genpts',
              ...sourceInput(s),
              '-c',
              'copy',
              '-bsf:v',
              'setts=pts=if(eq(PTS\\,NOPTS)\\,0\\,PTS):dts=if(eq(DTS\\,NOPTS)\\,0\\,DTS)',
            ]
          : [...sourceInput(s), ...encode(s)];
    const frames = this.motionFrames
      ? [
          '-map',
          '0:v:0',
          '-vf',
          `fps=${MOTION_FRAME.fps},scale=${MOTION_FRAME.width}:${MOTION_FRAME.height}`,
          '-pix_fmt',
          'rgb24',
          '-f',
          'rawvideo',
          'pipe:3',
        ]
      : [];
    const latest =
      this.latestJpeg && encodedHere(s)
        ? [
            '-map',
            '0:v:0',
            '-vf',
            'fps=1',
            '-q:v',
            '4',
            '-f',
            'image2',
            '-update',
            '1',
            '-atomic_writing',
            '1',
            this.latestJpeg,
          ]
        : [];
    return [
      '-hide_banner',
      '-nostdin',
      '-y',
      '-loglevel',
      'error',
      '-nostats',
      '-progress',
      'pipe:1',
      ...input,
      '-an',
      '-avoid_negative_ts',
      'make_zero',
      '-f',
      'flv',
      url,
      ...frames,
      ...latest,
    ];
  }

  private spawn(url: string): void {
    const started = Date.now();
    const child = spawn(this.ffmpeg, this.args(url), {
      stdio: ['ignore', 'pipe', 'pipe', ...(this.motionFrames ? (['pipe'] as const) : [])],
    });
    this.child = child;
    if (this.motionFrames) this.readFrames(child.stdio[3] as NodeJS.ReadableStream);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('progress=')) {
        this.lastProgressAt = Date.now();
        this.quickExits = 0;
        this.backoffMs = 1000;
      }
    });
    let lastError = '';
    createInterface({ input: child.stderr! }).on('line', (line) => (lastError = line));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.stopped) return;
      this.quickExits = Date.now() - started < QUICK_EXIT_MS ? this.quickExits + 1 : 0;
      this.log(
        `video push ended (${signal ?? code})${lastError ? `: ${lastError}` : ''}; again in ${this.backoffMs} ms`,
      );
      if (this.quickExits >= REFUSED_AFTER) {
        this.quickExits = 0;
        this.emit('refused', lastError);
      }
      this.timer = setTimeout(() => this.spawn(url), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
    });
  }

  /** Whole frames out of the raw stream (its chunks do not keep to frame borders). */
  private readFrames(input: NodeJS.ReadableStream): void {
    let pending: Buffer = Buffer.alloc(0);
    input.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= MOTION_FRAME_BYTES) {
        this.emit('frame', {
          data: pending.subarray(0, MOTION_FRAME_BYTES),
          width: MOTION_FRAME.width,
          height: MOTION_FRAME.height,
        });
        pending = pending.subarray(MOTION_FRAME_BYTES);
      }
    });
  }

  stop(): void {
    this.stopped = true;
    this.restart();
  }
}
