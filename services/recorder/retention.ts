// What keeps the disk from filling: segments past their camera's retention go first, then,
// while the recordings exceed the quota or the disk has less free space than the minimum,
// the oldest segment of any camera goes.
import { statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Segment, SegmentIndex } from './segment-index.ts';

export interface RetentionPolicy {
  /** Days to keep a camera's recordings (cameras removed from the box get a default). */
  retainDays(camera: string): number;
  /** Most bytes all recordings may take; null: no quota. */
  quotaBytes: number | null;
  /** Free space the disk must keep, bytes. */
  minFreeBytes: number;
}

export interface RetentionResult {
  byAge: number;
  bySpace: number;
  bytesFreed: number;
}

const freeBytesOf = async (dir: string) => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

export class Retention {
  constructor(
    private readonly index: SegmentIndex,
    private readonly mediaDir: string,
    private readonly policy: RetentionPolicy,
    /** Injected by tests that cannot fill a real disk. */
    private readonly freeBytes: () => Promise<number> = () => freeBytesOf(mediaDir),
  ) {}

  async run(now = Date.now()): Promise<RetentionResult> {
    const result: RetentionResult = { byAge: 0, bySpace: 0, bytesFreed: 0 };
    const drop = async (segment: Segment) => {
      await unlink(path.join(this.mediaDir, segment.path)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await this.index.remove(segment);
      result.bytesFreed += segment.bytes;
    };

    for (const camera of await this.index.cameras()) {
      const cutoff = now - this.policy.retainDays(camera) * 86_400_000;
      for (let s = await this.index.oldest(camera); s && s.end < cutoff; s = await this.index.oldest(camera)) {
        await drop(s);
        result.byAge++;
      }
    }

    while (await this.overBudget()) {
      const oldest = await this.oldestOfAll();
      if (!oldest) break; // nothing left of ours to free
      await drop(oldest);
      result.bySpace++;
    }
    return result;
  }

  private async overBudget(): Promise<boolean> {
    const { quotaBytes, minFreeBytes } = this.policy;
    if (quotaBytes !== null && (await this.index.totalBytes()) > quotaBytes) return true;
    return (await this.freeBytes()) < minFreeBytes;
  }

  private async oldestOfAll(): Promise<Segment | undefined> {
    let oldest: Segment | undefined;
    for (const camera of await this.index.cameras()) {
      const s = await this.index.oldest(camera);
      if (s && (!oldest || s.start < oldest.start)) oldest = s;
    }
    return oldest;
  }
}
