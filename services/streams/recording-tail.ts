// Live view from the recording itself: ffmpeg writes each segment as fragmented MP4 and
// flushes every fragment (a quarter second), so the open segment file is the live stream.
// It is read only while someone watches, so nobody watching costs nothing; a second live
// output on a pipe, read all the time, cost the box nearly as much CPU as recording itself.
import { watch, type FSWatcher } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { startOfSegmentFile } from '../../appliance/data-dir.ts';
import { FragmentReader, fragmentTiming, timescaleOf } from '../../lib/media/fragmented-mp4.ts';
import type { Fragment, LiveFeed } from './live-feed.ts';

/** A fallback for a missed file-change event (inotify is not everywhere). */
const POLL_MS = 1000;

export class RecordingTail {
  private active = false;
  private file: string | undefined;
  private handle: FileHandle | undefined;
  private pos = 0;
  private reader: FragmentReader | undefined;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  /** The file ffmpeg opened after the current one: read once the current one is read out. */
  private next: string | undefined;
  /** First read after start: only the newest GOP of what the file already holds is sent. */
  private priming: { init?: Buffer; gop: Fragment[] } | undefined;
  private pumping = false;
  private again = false;

  constructor(
    private readonly feed: LiveFeed,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Someone watches: read from the newest keyframe of `file` (the open segment), then follow. */
  start(file: string | undefined): void {
    if (this.active) return;
    this.active = true;
    this.feed.reset();
    this.priming = { gop: [] };
    this.poll = setInterval(() => this.pump(), POLL_MS);
    if (file) this.follow(file);
  }

  /** Nobody watches any more. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    clearInterval(this.poll);
    this.next = undefined;
    this.close();
    this.feed.reset();
  }

  /** ffmpeg opened a new segment file: finish the current one (it is complete), then go on there. */
  follow(file: string): void {
    if (!this.active) return;
    if (this.file) this.next = file;
    else this.openFile(file);
    this.pump();
  }

  private openFile(file: string): void {
    this.close();
    this.file = file;
    this.pos = 0;
    this.reader = new FragmentReader({
      init: (init) => {
        if (this.priming) this.priming.init = init;
        else this.feed.addInit(init);
      },
      fragment: (moof, mdat, keyframe, track) => {
        const fragment = { parts: [moof, mdat], keyframe, track, at: Date.now() };
        if (!this.priming) this.feed.addFragment(fragment);
        else if (keyframe) this.priming.gop = [fragment];
        else if (this.priming.gop.length) this.priming.gop.push(fragment);
      },
    });
    try {
      this.watcher = watch(file, { persistent: false }, () => this.pump());
      this.watcher.on('error', () => undefined); // the poll goes on
    } catch {
      // not there yet, or no inotify: the poll reads it
    }
  }

  private close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    void this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    this.file = undefined;
    this.reader = undefined;
  }

  /** Reads what is new; one read at a time, again if something came meanwhile. */
  private pump(): void {
    if (!this.active) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      do {
        this.again = false;
        await this.readNew();
        if (this.priming && this.file) this.endPriming();
        if (this.next && this.active) {
          const next = this.next;
          this.next = undefined;
          this.openFile(next);
          this.again = true;
        }
      } while (this.again && this.active);
    })()
      .catch((err: Error) => {
        if (this.active) this.onError(err); // else: stopped mid-read, its handle closed under it
      })
      .finally(() => (this.pumping = false));
  }

  private async readNew(): Promise<void> {
    const file = this.file;
    if (!file) return;
    try {
      this.handle ??= await open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // not created yet
      throw err;
    }
    const handle = this.handle;
    for (;;) {
      const { size } = await handle.stat();
      if (size <= this.pos || file !== this.file) return;
      const chunk = Buffer.allocUnsafe(size - this.pos);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, this.pos);
      if (bytesRead === 0 || file !== this.file) return;
      this.pos += bytesRead;
      this.reader!.push(chunk.subarray(0, bytesRead));
    }
  }

  private endPriming(): void {
    const { init, gop } = this.priming!;
    this.priming = undefined;
    if (init) this.feed.addInit(init);
    for (const fragment of gop) this.feed.addFragment(fragment);
  }
}

/**
 * The newest keyframe fragment already written to a recording file, with its init segment
 * and when it was filmed (the file's start, from its name, plus the fragment's time).
 */
export async function lastKeyframe(file: string): Promise<{ init: Buffer; parts: Buffer[]; at: number } | undefined> {
  const bytes = await readFile(file).catch(() => undefined);
  if (!bytes) return undefined;
  let init: Buffer | undefined;
  let found: Buffer[] | undefined;
  new FragmentReader({
    init: (i) => (init = i),
    fragment: (moof, mdat, keyframe) => {
      if (keyframe) found = [moof, mdat];
    },
  }).push(bytes);
  if (!init || !found) return undefined;
  const timing = fragmentTiming(found[0]!, init);
  const timescale = timescaleOf(init);
  const offsetMs = timing && timescale ? (timing.start / timescale) * 1000 : 0;
  return { init, parts: found, at: startOfSegmentFile(path.basename(file)) + Math.round(offsetMs) };
}
