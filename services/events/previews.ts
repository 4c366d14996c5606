// A review item's preview: its footage from the recordings (recorder.clip over the bus), made
// small on the box (320 px wide, 8 frames a second, sped up to last at most PREVIEW_SECONDS), so
// a list of items can play them on hover over any link. Made once an item closed and its last
// segment is on disk, one at a time, at low priority; a camera that records nothing has none.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { LoggerInstance, ServiceBroker } from 'moleculer';
import pLimit from 'p-limit';
import { call } from '../../lib/bus.ts';
import type { ReviewItem } from './events.schemas.ts';

export const PREVIEW_WIDTH = 320;
const PREVIEW_FPS = 8;
const PREVIEW_SECONDS = 10;
/** Footage kept around the activity in the preview, s. */
const MARGIN_S = 1;

/** ffmpeg's arguments for a preview of `seconds` of footage read from `input`. */
export function previewArgs(input: string, output: string, seconds: number): string[] {
  const speed = Math.max(1, seconds / PREVIEW_SECONDS);
  return [
    ...['-v', 'error', '-y', '-f', 'mp4', '-i', input, '-an'],
    ...['-vf', `setpts=PTS/${speed.toFixed(3)},fps=${PREVIEW_FPS},scale=${PREVIEW_WIDTH}:-2`],
    ...['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '32', '-pix_fmt', 'yuv420p'],
    ...['-t', String(PREVIEW_SECONDS), '-movflags', '+faststart', output],
  ];
}

export class Previews {
  private readonly turn = pLimit(1);
  private readonly timers = new Set<NodeJS.Timeout>();
  /** The preview being made, and its ffmpeg: a stop waits for it (killed), so nothing runs after. */
  private current: { done: Promise<void>; ffmpeg?: ChildProcess } | undefined;
  private stopped = false;

  constructor(
    private readonly broker: ServiceBroker,
    private readonly ffmpegPath: string,
    private readonly dir: string,
    /** Wait after an item closes: its last segment must be closed and indexed first. */
    private readonly delayMs: number,
    private readonly log: LoggerInstance,
  ) {}

  fileOf(item: Pick<ReviewItem, 'camera' | 'id'>): string {
    return path.join(this.dir, item.camera, `${item.id}.mp4`);
  }

  /** Makes the item's preview a while after it closed; `made` is told when there is one. */
  schedule(item: ReviewItem, made: (item: ReviewItem) => Promise<void>): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.turn(() => {
        if (this.stopped) return Promise.resolve();
        const current: NonNullable<typeof this.current> = { done: Promise.resolve() };
        this.current = current;
        current.done = (async () => {
          if ((await this.make(item, current)) && !this.stopped) await made(item);
        })()
          .catch((err: Error) => this.log.warn(`review item ${item.id}: preview not recorded: ${err.message}`))
          .finally(() => {
            if (this.current === current) this.current = undefined;
          });
        return current.done;
      });
    }, this.delayMs);
    this.timers.add(timer);
  }

  /** No new preview starts; the one being made is stopped and waited for. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.turn.clearQueue();
    this.current?.ffmpeg?.kill('SIGKILL');
    await this.current?.done;
  }

  async remove(item: Pick<ReviewItem, 'camera' | 'id'>): Promise<void> {
    await rm(this.fileOf(item), { force: true });
  }

  private async make(item: ReviewItem, current: { ffmpeg?: ChildProcess }): Promise<boolean> {
    const from = Date.parse(item.start) - MARGIN_S * 1000;
    const to = Date.parse(item.end ?? item.updatedAt) + MARGIN_S * 1000;
    let footage: Readable;
    try {
      const clip = await call(this.broker, 'recorder.clip', {
        camera: item.camera,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
      });
      footage = await call(this.broker, 'recorder.file', { kind: 'clip', name: clip.name });
    } catch (err) {
      this.log.info(`review item ${item.id}: no preview, no footage of it (${(err as Error).message})`);
      return false;
    }
    const file = this.fileOf(item);
    const partial = `${file}.partial.mp4`;
    await mkdir(path.dirname(file), { recursive: true });
    const args = previewArgs('pipe:0', partial, (to - from) / 1000);
    try {
      await new Promise<void>((resolve, reject) => {
        const ffmpeg = spawn(this.ffmpegPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
        current.ffmpeg = ffmpeg;
        let stderr = '';
        ffmpeg.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-1000)));
        ffmpeg.stdin.on('error', () => undefined); // it may stop reading once it has PREVIEW_SECONDS
        footage.on('error', (err) => ffmpeg.stdin.destroy(err));
        footage.pipe(ffmpeg.stdin);
        ffmpeg.on('error', reject);
        ffmpeg.on('close', (code) =>
          code === 0 ? resolve() : reject(new Error(`ffmpeg ${code}: ${stderr.trim().split('\n').pop() ?? ''}`)),
        );
      });
      await rename(partial, file);
      return true;
    } catch (err) {
      this.log.warn(`review item ${item.id}: preview not made: ${(err as Error).message}`);
      return false;
    } finally {
      footage.destroy();
      await rm(partial, { force: true });
    }
  }
}
