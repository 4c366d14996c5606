// Decoded frames for detection, from the camera's live fMP4 (never a second connection to
// the camera): one ffmpeg per camera decodes at a low rate and scales once, giving
// model-sized RGB frames for the detector and a JPEG of each frame for event snapshots.
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

const JPEG_FD = 3;
/** JPEGs kept for the snapshots of events (the newest few frames). */
const JPEGS_KEPT = 30;
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
  private jpegs = new Map<number, Buffer>();
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

  /** The JPEG of a frame, if still kept. */
  jpeg(seq: number): Buffer | undefined {
    return this.jpegs.get(seq);
  }

  close(): void {
    this.closed = true;
    this.input.destroy();
    this.decoder?.kill('SIGKILL');
    this.decoder = undefined;
  }

  private start(sourceWidth: number, sourceHeight: number, init: Buffer): void {
    this.decoder?.kill('SIGKILL');
    if (this.closed) return;
    const { fps, modelSize, snapshotWidth } = this.options;
    const scale = Math.min(modelSize / sourceWidth, modelSize / sourceHeight);
    const width = Math.round((sourceWidth * scale) / 2) * 2;
    const height = Math.round((sourceHeight * scale) / 2) * 2;
    const frameBytes = width * height * 3;
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
        `[d]scale=${width}:${height}:flags=bilinear,format=rgb24[det];[s]scale=${snapshotWidth}:-2[snap]`,
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
      '-c:v',
      'mjpeg',
      '-q:v',
      '4',
      '-f',
      'image2pipe',
      // Each JPEG out whole at once: buffered, a picture's end waited for the next one.
      '-flush_packets',
      '1',
      `pipe:${JPEG_FD}`,
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

    // A frame is emitted once both its RGB and its JPEG are out (the two outputs of one
    // decode, in the same order).
    const rgbs: Buffer[] = [];
    const jpegs: Buffer[] = [];
    const pair = () => {
      while (rgbs.length && jpegs.length) {
        const seq = this.seq++;
        const jpeg = jpegs.shift()!;
        this.jpegs.set(seq, jpeg);
        this.jpegs.delete(seq - JPEGS_KEPT);
        this.emit('frame', { seq, at: this.frameTime(seq), rgb: rgbs.shift()!, width, height });
      }
    };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    child.stdout!.on('data', (chunk: Buffer) => {
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (pendingBytes >= frameBytes) {
        const all = Buffer.concat(pending, pendingBytes);
        rgbs.push(Buffer.from(all.subarray(0, frameBytes)));
        pending = pendingBytes > frameBytes ? [all.subarray(frameBytes)] : [];
        pendingBytes -= frameBytes;
      }
      pair();
    });

    // JPEGs one per frame: the entropy-coded data never holds FF D9 (it stuffs FF as
    // FF 00), so the end-of-image marker splits them.
    let jpegBuf = Buffer.alloc(0);
    (child.stdio[JPEG_FD] as Readable).on('data', (chunk: Buffer) => {
      jpegBuf = Buffer.concat([jpegBuf, chunk]);
      let end: number;
      while ((end = jpegBuf.indexOf(EOI)) >= 0) {
        jpegs.push(jpegBuf.subarray(0, end + 2));
        jpegBuf = jpegBuf.subarray(end + 2);
      }
      pair();
    });
    child.stdin!.write(init);
  }
}
