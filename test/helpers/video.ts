// Real video components for tests: GStreamer's RTSP server playing the bundled clip,
// ffprobe/ffmpeg checks of what was recorded, and a look at running ffmpeg processes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DEMO_CLIP } from '../../services/cameras/cameras.service.ts';
import { Proc, waitUntil } from './processes.ts';
import type { TestBox } from './box.ts';
import type { Frame } from '../../lib/vision/yolox.ts';

const run = promisify(execFile);
const HELPER = path.join(import.meta.dirname, 'rtsp_server.py');

/**
 * Adds RTSP cameras to a box (as `{ id: camera }`) and waits until those named in `online` (all,
 * unless given) are online.
 */
export async function addRtspCameras(
  box: TestBox,
  admin: string,
  cameras: Record<string, RtspCamera>,
  online = Object.keys(cameras),
): Promise<void> {
  for (const [id, camera] of Object.entries(cameras)) {
    const res = await box.request('POST', '/api/v1/cameras', {
      auth: admin,
      body: { id, name: id, source: { kind: 'rtsp', url: camera.url() } },
    });
    if (res.status !== 201) throw new Error(`camera ${id} not added: ${res.status} ${res.text}`);
  }
  await waitUntil(
    `${online.join(', ')} online`,
    async () => {
      const list = (await box.request('GET', '/api/v1/cameras', { auth: admin })).json as Array<{
        id: string;
        status: { state: string } | null;
      }>;
      return online.every((id) => list.find((c) => c.id === id)?.status?.state === 'online');
    },
    30_000,
    300,
  );
}

/** A clip made once by ffmpeg (from `args`, output last) and kept in the temp folder. */
async function madeOnce(name: string, args: string[]): Promise<string> {
  const file = path.join(os.tmpdir(), name);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp.mp4`;
    await run('ffmpeg', ['-v', 'error', '-y', ...args, tmp]);
    await run('mv', [tmp, file]);
  }
  return file;
}

/** H.264 as an IP camera sends it: no B-frames (WebRTC decoders do not reorder), a keyframe every 2 s at 15 fps. */
const AS_A_CAMERA = ['-c:v', 'libx264', '-preset', 'veryfast', '-bf', '0', '-g', '30', '-an'];

/** The 20 s bundled clip looped to 3 minutes (stream copy: about a second to make). */
export function longClip(): Promise<string> {
  return madeOnce('fogedge-test-clip-180s.mp4', ['-stream_loop', '8', '-i', DEMO_CLIP, '-c', 'copy']);
}

/**
 * A camera whose picture cannot be taken for the street's: ffmpeg's moving test pattern at
 * 480x270, as a camera sends it (no B-frames), 3 minutes (a few seconds to make).
 */
export function patternClip(): Promise<string> {
  return madeOnce('fogedge-test-clip-pattern-480.mp4', [
    '-f',
    'lavfi',
    '-i',
    'testsrc2=size=480x270:rate=15',
    '-t',
    '180',
    '-pix_fmt',
    'yuv420p',
    ...AS_A_CAMERA,
  ]);
}

/** 8 s of the bundled clip encoded as H.265 (libx265, ultrafast: about 2 s to make). */
export function h265Clip(): Promise<string> {
  return madeOnce('fogedge-test-clip-h265.mp4', [
    '-i',
    DEMO_CLIP,
    '-t',
    '8',
    '-c:v',
    'libx265',
    '-preset',
    'ultrafast',
    '-x265-params',
    'keyint=30:log-level=error',
    '-tag:v',
    'hvc1',
    '-an',
  ]);
}

/**
 * The street as a typical IP camera encodes it for WebRTC: H.264 Main, no B-frames (WebRTC
 * decoders do not reorder frames), a keyframe every 2 s; 90 s (about 15 s to make, then kept).
 */
export function cameraClip(): Promise<string> {
  return madeOnce('fogedge-test-clip-nob-90s.mp4', [
    '-stream_loop',
    '4',
    '-i',
    DEMO_CLIP,
    '-t',
    '90',
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-profile:v',
    'main',
    '-bf',
    '0',
    '-g',
    '30',
    '-an',
  ]);
}

/** One frame of the bundled clip held for 60 s: a scene with people and no motion at all. */
export async function stillClip(): Promise<string> {
  const file = path.join(os.tmpdir(), 'fogedge-test-clip-still.mp4');
  if (!existsSync(file)) {
    const frame = `${file}.${process.pid}.png`;
    const tmp = `${file}.${process.pid}.tmp.mp4`;
    await run('ffmpeg', ['-v', 'error', '-y', '-ss', '10', '-i', DEMO_CLIP, '-frames:v', '1', frame]);
    await run('ffmpeg', [
      '-v',
      'error',
      '-y',
      '-loop',
      '1',
      '-i',
      frame,
      '-t',
      '60',
      '-r',
      '15',
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-g',
      '30',
      '-pix_fmt',
      'yuv420p',
      tmp,
    ]);
    await run('mv', [tmp, file]);
    await run('rm', ['-f', frame]);
  }
  return file;
}

/** The bundled clip at 640x360, as a camera's sub-stream sends it: no B-frames (20 s, about 2 s to make). */
export async function subStreamClip(): Promise<string> {
  const file = path.join(os.tmpdir(), 'fogedge-test-clip-640-nob.mp4');
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp.mp4`;
    await run('ffmpeg', ['-v', 'error', '-y', '-i', DEMO_CLIP, '-vf', 'scale=640:360', ...AS_A_CAMERA, tmp]);
    await run('mv', [tmp, file]);
  }
  return file;
}

/** The sub-stream clip looped to 3 minutes (stream copy), for cameras that run longer than 20 s. */
export async function longSubStreamClip(): Promise<string> {
  return madeOnce('fogedge-test-clip-640-nob-180s.mp4', [
    '-stream_loop',
    '8',
    '-i',
    await subStreamClip(),
    '-c',
    'copy',
  ]);
}

/**
 * The street with nobody in it: each pixel's median over 41 frames of the clip, 0.5 s apart
 * (people walk on; the street stays). A PNG, 1280x720.
 */
async function emptyStreet(file: string): Promise<void> {
  const [width, height, count] = [1280, 720, 41];
  const { stdout } = await run(
    'ffmpeg',
    [
      '-v',
      'error',
      '-i',
      DEMO_CLIP,
      '-vf',
      'fps=2',
      '-frames:v',
      String(count),
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      '-',
    ],
    { encoding: 'buffer', maxBuffer: 1 << 30 },
  );
  const size = width * height * 3;
  const frames = Math.floor(stdout.length / size);
  const out = Buffer.alloc(size);
  const values = new Uint8Array(frames);
  for (let i = 0; i < size; i++) {
    for (let f = 0; f < frames; f++) values[f] = stdout[f * size + i]!;
    out[i] = values.sort()[frames >> 1]!;
  }
  const raw = `${file}.rgb`;
  await writeFile(raw, out);
  await run('ffmpeg', [
    '-v',
    'error',
    '-y',
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    '-s',
    `${width}x${height}`,
    '-i',
    raw,
    file,
  ]);
  await rm(raw, { force: true });
}

/**
 * A quiet camera: the street with nobody in it, and the real street, its people walking, for
 * 5 s in every 30 (as people passing a garden camera now and then); 1280x720 15 fps, no
 * B-frames, 3 minutes (about a minute to make, then kept).
 */
export async function quietClip(): Promise<string> {
  const file = path.join(os.tmpdir(), 'fogedge-test-clip-quiet-empty-180s.mp4');
  if (existsSync(file)) return file;
  const empty = `${file}.${process.pid}.png`;
  await emptyStreet(empty);
  return madeOnce(path.basename(file), [
    '-loop',
    '1',
    '-framerate',
    '15',
    '-i',
    empty,
    '-stream_loop',
    '-1',
    '-i',
    DEMO_CLIP,
    '-filter_complex',
    "[0:v][1:v]overlay=enable='lt(mod(t,30),5)',format=yuv420p",
    '-t',
    '180',
    '-r',
    '15',
    ...AS_A_CAMERA,
  ]).finally(() => rm(empty, { force: true }));
}

/**
 * Frames of the bundled clip as the detector sees them: 5 fps, RGB, scaled into the model's
 * 416x416 letterbox (416x234). The whole clip when no range is given.
 */
export async function clipFrames(range?: { from: number; seconds: number }): Promise<Frame[]> {
  const cut = range ? ['-ss', String(range.from), '-i', DEMO_CLIP, '-t', String(range.seconds)] : ['-i', DEMO_CLIP];
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', ...cut, '-vf', 'fps=5,scale=416:234', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 1e9 },
  );
  const size = 416 * 234 * 3;
  return Array.from({ length: stdout.length / size }, (_, i) => ({
    data: stdout.subarray(i * size, (i + 1) * size),
    width: 416,
    height: 234,
  }));
}

/**
 * The benches' reference recorder: a bare ffmpeg copying a camera's video into MP4 segment files
 * in `dir`, with none of the box around it.
 */
export function bareRecorder(url: string, dir: string, segmentSeconds: number): ChildProcess {
  const args = ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url, '-map', '0:v:0', '-c', 'copy'];
  const segments = ['-f', 'segment', '-segment_time', String(segmentSeconds), '-segment_format', 'mp4'];
  return spawn('ffmpeg', [...args, ...segments, '-reset_timestamps', '1', path.join(dir, '%05d.mp4')], {
    stdio: 'ignore',
  });
}

export class RtspCamera {
  private proc: Proc | undefined;
  constructor(
    readonly port: number,
    private readonly options: {
      user?: string;
      password?: string;
      noVideo?: boolean;
      h265?: boolean;
      clip?: string;
      /** A tone as a second track, as a camera's microphone would send it. */
      audio?: 'pcma' | 'pcmu' | 'aac';
    } = {},
  ) {}

  url(credentials = this.options.user ? `${this.options.user}:${this.options.password}@` : ''): string {
    return `rtsp://${credentials}127.0.0.1:${this.port}/cam`;
  }

  async start(): Promise<void> {
    const args = [
      HELPER,
      String(this.port),
      this.options.clip ?? (this.options.h265 ? await h265Clip() : await longClip()),
    ];
    if (this.options.h265) args.push('--codec', 'h265');
    if (this.options.user) args.push('--user', this.options.user, '--password', this.options.password ?? '');
    if (this.options.noVideo) args.push('--no-video');
    if (this.options.audio) args.push('--audio', this.options.audio);
    // Debian's python3 has the GObject bindings; another python3 may come first on the PATH.
    this.proc = new Proc('/usr/bin/python3', args);
    await this.proc.waitForLine(/^ready /, 10_000);
  }

  /** SIGSTOP: the server keeps its sockets open but sends nothing (a stalled camera). */
  pause() {
    process.kill(this.proc!.pid, 'SIGSTOP');
  }
  resume() {
    process.kill(this.proc!.pid, 'SIGCONT');
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

/**
 * Decodes the whole file; resolves to its duration, throws on any decoding error.
 * Not counted: the null muxer's note on two equal DTS at the very start of an RTSP session
 * (the camera's first RTP packets come before RTCP timing); decoders play those frames.
 */
export async function playable(file: string): Promise<{ seconds: number; codec: string; width: number }> {
  const { stderr } = await run('ffmpeg', ['-v', 'error', '-i', file, '-f', 'null', '-']);
  const problems = stderr
    .split('\n')
    .filter(
      (l) =>
        l.trim() &&
        !/^\[null @ \w+\] Application provided invalid, non monotonically increasing dts|^\s*Last message repeated/.test(
          l,
        ),
    );
  if (problems.length) throw new Error(`${file} does not decode cleanly: ${problems[0]}`);
  const { stdout } = await run('ffprobe', [
    '-v',
    'error',
    '-show_entries',
    'format=duration:stream=codec_name,width',
    '-of',
    'json',
    file,
  ]);
  const info = JSON.parse(stdout);
  return { seconds: Number(info.format.duration), codec: info.streams[0].codec_name, width: info.streams[0].width };
}

/** The ffmpeg processes reading a camera now (its recorder), by pid. */
export const ffmpegReading = (camera: RtspCamera): number[] =>
  ffmpegPids(`127.0.0.1:${camera.port}/`).filter((pid) => pid > 0);

/** A process's command line, as its arguments. */
export const commandLine = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

/** Pids of ffmpeg processes whose command line mentions `marker` (a test's data folder). */
export function ffmpegPids(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const state = /State:\s+(\w)/.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (cmdline.includes('ffmpeg') && cmdline.includes(marker) && !cmdline.includes('setpriv') && state !== 'Z')
        pids.push(Number(entry));
      if (cmdline.includes('ffmpeg') && cmdline.includes(marker) && state === 'Z') pids.push(-Number(entry)); // zombies, negative
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** A picture's size as ffprobe reads it ("1280,720"): the picture a user would see, whatever made it. */
export async function pictureSize(jpeg: Buffer): Promise<string> {
  const file = path.join(os.tmpdir(), `fogedge-picture-${process.pid}-${Date.now()}.jpg`);
  await writeFile(file, jpeg);
  try {
    const { stdout } = await run('ffprobe', [
      '-v',
      'error',
      '-show_entries',
      'stream=width,height',
      '-of',
      'csv=p=0',
      file,
    ]);
    return stdout.trim();
  } finally {
    await rm(file, { force: true });
  }
}
