// Decoded frames for detection, from the camera's live fMP4 (never a second connection to
// the camera): one ffmpeg per camera decodes at a low rate and scales once, giving
// model-sized RGB frames for the detector and a snapshot-sized picture of each frame. Only the
// few pictures an event may show are kept, and made JPEGs when one does (an encoder started on
// demand): encoding every frame cost more than decoding it, for pictures nearly never shown.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { FragmentReader, videoSize } from '../../lib/media/fragmented-mp4.ts';
import { LIVE_FMP4_STDIN, spawnSupervised } from '../../lib/media/supervised-process.ts';

export interface DecodedFrame {
  seq: number;
  /** When the frame came out of the decoder (live: about when the camera sent it). */
  at: number;
  /** RGB24 at the size the model takes (the letterbox's content, no padding). */
  rgb: Buffer;
  width: number;
  height: number;
}

export interface FrameSourceOptions {
  ffmpegPath: string;
  /** The camera it decodes for (its CPU is charted per camera). */
  camera?: string;
  /** Before the input: hardware decoding (-hwaccel …), or nothing. */
  inputArgs?: string[];
  fps: number;
  /** The model's square input side: frames are scaled to fit it. */
  modelSize: number;
  /** Width of snapshot JPEGs. */
  snapshotWidth: number;
}

const SNAPSHOT_FD = 3;
/** The newest pictures, kept until the detector says whether their frame went to the model. */
const RECENT_KEPT = 2;
/** Pictures of frames that went to the model (an event's best frame is one of these). */
const HELD_KEPT = 4;
/** An encoder with no picture to make for this long is stopped (ms): a quiet camera keeps one only around its events. */
const ENCODER_IDLE_MS = 10_000;
const EOI = Buffer.from([0xff, 0xd9]);
const MAX_CLOCK_DRIFT_MS = 2000;

export class FrameSource extends EventEmitter<{ frame: [DecodedFrame]; error: [Error] }> {
  private decoder: ChildProcess | undefined;
  private reader = new FragmentReader({
    // A new init: the camera's stream (re)started, and so does the decoder.
    init: (init) => {
      const size = videoSize(init);
      if (size) this.start(size.width, size.height, init);
      else this.emit('error', new Error('the stream has no video size'));
    },
    fragment: (moof, mdat, _keyframe, track) => {
      // The camera's sound is no use here: its decoder gets the video only.
      if (track !== 'video' || !this.decoder?.stdin?.writable) return;
      this.decoder.stdin.write(moof);
      this.decoder.stdin.write(mdat);
    },
  });
  private seq = 0;
  /** Hardware decoding, until it fails once on this camera's stream. */
  private inputArgs: string[];
  /** Snapshot-sized YUV 4:2:0 pictures by frame, and the JPEGs made of them. */
  private pictures = new Map<number, Buffer>();
  private held: number[] = [];
  private jpegs = new Map<number, Promise<Buffer | undefined>>();
  private encoder: JpegEncoder | undefined;
  private snapshotSize = { width: 0, height: 0 };
  private closed = false;
  private anchor: { seq: number; at: number } | undefined;

  constructor(
    private readonly input: Readable,
    private readonly options: FrameSourceOptions,
  ) {
    super();
    this.inputArgs = options.inputArgs ?? [];
    input.on('data', (chunk: Buffer) => this.reader.push(chunk));
    input.on('end', () => this.decoder?.stdin?.end());
    input.on('error', (err) => this.emit('error', err));
  }

  /**
   * Frames come out of the decoder in bursts (a fragment at a time), so their time is
   * the stream's own: one frame every 1/fps from an anchor on the wall clock, re-anchored
   * when the two drift apart (a stall, a restart).
   */
  private frameTime(seq: number): number {
    const now = Date.now();
    const at = this.anchor ? this.anchor.at + ((seq - this.anchor.seq) * 1000) / this.options.fps : now;
    // Never ahead of the clock (a burst after a stall), and never far behind it.
    if (!this.anchor || at > now || now - at > MAX_CLOCK_DRIFT_MS) {
      this.anchor = { seq, at: now };
      return now;
    }
    return Math.round(at);
  }

  /**
   * This frame went to the model: its picture is kept, for an event it may start. The encoder
   * starts now if it is not running, so that the event's first picture does not wait for it.
   */
  hold(seq: number): void {
    if (!this.pictures.has(seq) || this.held.includes(seq)) return;
    this.held.push(seq);
    if (this.held.length > HELD_KEPT) this.forget(this.held.shift()!);
    if (!this.closed) this.jpegEncoder();
  }

  /** The JPEG of a frame, if its picture is still kept (made once, on first asking). */
  jpeg(seq: number): Promise<Buffer | undefined> {
    const made = this.jpegs.get(seq);
    if (made) return made;
    const picture = this.pictures.get(seq);
    if (!picture || this.closed) return Promise.resolve(undefined);
    const jpeg = this.jpegEncoder().encode(picture);
    this.jpegs.set(seq, jpeg);
    return jpeg;
  }

  close(): void {
    this.closed = true;
    this.input.destroy();
    this.decoder?.kill('SIGKILL');
    this.decoder = undefined;
    this.encoder?.close();
  }

  private jpegEncoder(): JpegEncoder {
    if (!this.encoder) {
      const encoder = new JpegEncoder(this.options.ffmpegPath, this.snapshotSize, this.options.camera, () => {
        if (this.encoder === encoder) this.encoder = undefined;
      });
      this.encoder = encoder;
    }
    return this.encoder;
  }

  private forget(seq: number): void {
    this.pictures.delete(seq);
    this.jpegs.delete(seq);
  }

  private start(sourceWidth: number, sourceHeight: number, init: Buffer): void {
    this.decoder?.kill('SIGKILL');
    if (this.closed) return;
    const { fps, modelSize } = this.options;
    const scale = Math.min(modelSize / sourceWidth, modelSize / sourceHeight);
    const width = Math.round((sourceWidth * scale) / 2) * 2;
    const height = Math.round((sourceHeight * scale) / 2) * 2;
    const frameBytes = width * height * 3;
    const snapshotWidth = Math.min(this.options.snapshotWidth, sourceWidth) & ~1;
    const snapshotHeight = Math.round((sourceHeight * snapshotWidth) / sourceWidth / 2) * 2;
    const pictureBytes = (snapshotWidth * snapshotHeight * 3) / 2;
    // A new stream may have another size: the encoder for the old one goes.
    this.encoder?.close();
    this.encoder = undefined;
    this.snapshotSize = { width: snapshotWidth, height: snapshotHeight };
    const args = [
      '-hide_banner',
      '-nostdin',
      '-loglevel',
      'error',
      // Frame threads hold the last frames of each fragment back until the next fragment comes
      // (a quarter second); slice threads never delay a frame.
      '-thread_type',
      'slice',
      ...this.inputArgs,
      ...LIVE_FMP4_STDIN,
      '-filter_complex',
      // The first frame of each 1/fps slot: fps=N would wait for the next frame to choose one.
      `[0:v]select='isnan(prev_selected_t)+gt(floor(t*${fps}),floor(prev_selected_t*${fps}))',split=2[d][s];` +
        `[d]scale=${width}:${height}:flags=bilinear,format=rgb24[det];` +
        `[s]scale=${snapshotWidth}:${snapshotHeight},format=yuv420p[snap]`,
      '-map',
      '[det]',
      '-fps_mode',
      'passthrough',
      '-f',
      'rawvideo',
      '-flush_packets',
      '1',
      'pipe:1',
      '-map',
      '[snap]',
      '-fps_mode',
      'passthrough',
      '-f',
      'rawvideo',
      '-flush_packets',
      '1',
      `pipe:${SNAPSHOT_FD}`,
    ];
    const child = spawnSupervised(
      this.options.ffmpegPath,
      args,
      { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
      this.options.camera,
    );
    this.decoder = child;
    child.stdin!.on('error', () => undefined); // a killed decoder: the next init starts another
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('exit', (code, signal) => {
      if (this.decoder === child && !this.closed && signal !== 'SIGKILL' && code !== 0) {
        const why = stderr.trim().split('\n').pop() ?? '';
        // The hardware decoder took the test clip but not this stream: software from here on.
        if (this.inputArgs.length) {
          this.emit('error', new Error(`hardware decoding failed (${why}): this camera now decodes in software`));
          this.inputArgs = [];
          this.start(sourceWidth, sourceHeight, init);
          return;
        }
        this.emit('error', new Error(`frame decoder exited (${code ?? signal}): ${why}`));
      }
    });

    // A frame is emitted once both its RGB and its picture are out (the two outputs of one
    // decode, in the same order).
    const rgbs = new RawFrames(frameBytes);
    const pictures = new RawFrames(pictureBytes);
    const pair = () => {
      while (rgbs.ready.length && pictures.ready.length) {
        const seq = this.seq++;
        this.pictures.set(seq, pictures.ready.shift()!);
        const old = seq - RECENT_KEPT;
        if (!this.held.includes(old)) this.forget(old);
        this.emit('frame', { seq, at: this.frameTime(seq), rgb: rgbs.ready.shift()!, width, height });
      }
    };
    child.stdout!.on('data', (chunk: Buffer) => {
      rgbs.push(chunk);
      pair();
    });
    (child.stdio[SNAPSHOT_FD] as Readable).on('data', (chunk: Buffer) => {
      pictures.push(chunk);
      pair();
    });
    child.stdin!.write(init);
  }
}

/** Fixed-size raw frames cut from a pipe's chunks. */
class RawFrames {
  readonly ready: Buffer[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly frameBytes: number) {}

  push(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= this.frameBytes) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      this.ready.push(Buffer.from(all.subarray(0, this.frameBytes)));
      this.pending = this.pendingBytes > this.frameBytes ? [all.subarray(this.frameBytes)] : [];
      this.pendingBytes -= this.frameBytes;
    }
  }
}

/**
 * One ffmpeg making JPEGs of YUV 4:2:0 pictures of one size, in the order given; it stops when
 * idle. A JPEG's entropy-coded data never holds FF D9 (FF is stuffed as FF 00), so the
 * end-of-image marker splits them.
 */
class JpegEncoder {
  private readonly child: ChildProcess;
  private readonly waiting: Array<(jpeg: Buffer | undefined) => void> = [];
  private buffered = Buffer.alloc(0);
  private idle: NodeJS.Timeout | undefined;

  constructor(
    ffmpegPath: string,
    size: { width: number; height: number },
    camera: string | undefined,
    private readonly ended: () => void,
  ) {
    this.child = spawnSupervised(
      ffmpegPath,
      [
        ...['-hide_banner', '-nostdin', '-loglevel', 'error'],
        ...['-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${size.width}x${size.height}`, '-i', 'pipe:0'],
        // Each JPEG out whole at once: buffered, a picture's end waited for the next one.
        // One thread: frame threads hold each picture back until the next one comes.
        ...['-threads', '1', '-c:v', 'mjpeg', '-q:v', '4', '-f', 'image2pipe', '-flush_packets', '1', 'pipe:1'],
      ],
      { stdio: ['pipe', 'pipe', 'ignore'] },
      camera,
    );
    this.child.stdin!.on('error', () => undefined); // its exit answers what waits
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      let end: number;
      while ((end = this.buffered.indexOf(EOI)) >= 0) {
        this.waiting.shift()?.(this.buffered.subarray(0, end + 2));
        this.buffered = this.buffered.subarray(end + 2);
      }
      if (!this.waiting.length) this.idleSoon();
    });
    // Gone (exited, or never started: 'exit' may not follow a spawn error): what waits gets no picture.
    const gone = () => {
      this.ended();
      clearTimeout(this.idle);
      for (const answer of this.waiting.splice(0)) answer(undefined);
    };
    this.child.on('exit', gone);
    this.child.on('error', gone);
    this.idleSoon();
  }

  encode(picture: Buffer): Promise<Buffer | undefined> {
    clearTimeout(this.idle);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin!.write(picture);
    });
  }

  close(): void {
    this.child.kill('SIGKILL');
  }

  private idleSoon(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.close(), ENCODER_IDLE_MS).unref();
  }
}
