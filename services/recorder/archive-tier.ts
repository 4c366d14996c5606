// The archive tier: a second disk or a NAS mount that older segments move to, under the same
// relative paths as on the hot disk, still indexed and playable. A move is journaled: copy to a
// .partial file, flush it, rename it into place, flush the folder, index it as archived, then
// remove the hot file. A power cut at any step leaves the segment whole in one place: at the
// next start the journal's move is finished (the archive copy is complete once renamed) or
// undone (the partial copy goes).
import { constants } from 'node:fs';
import { access, copyFile, mkdir, open, rename, rm, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Collection } from '../../lib/store.ts';
import type { SegmentIndex } from './segment-index.ts';
import type { ArchiveStatus, Segment } from './recorder.schemas.ts';
import type { ArchivePolicy } from './retention.ts';

export interface ArchiveOptions {
  dir: string;
  /** The folder must be a filesystem of its own: an unmounted NAS leaves an empty folder on the box's disk. */
  requireMount: boolean;
  minFreeBytes: number;
  quotaBytes: number | null;
  /** Copy rate cap, bytes/s; null: none. */
  bytesPerSecond: number | null;
  /** Hot segments that ended this long ago move here, ms. */
  afterMs: number;
}

const CHUNK = 1024 * 1024;
const JOURNAL_KEY = 'moving';

export class ArchiveTier implements ArchivePolicy {
  private current: ArchiveStatus;

  constructor(
    readonly options: ArchiveOptions,
    private readonly hotDir: string,
    private readonly index: SegmentIndex,
    /** One entry at most: the segment being moved. */
    private readonly journal: Collection<Segment>,
    private readonly archivedBytes: () => Promise<number>,
  ) {
    this.current = {
      path: options.dir,
      state: 'missing',
      reason: 'not looked at yet',
      since: new Date().toISOString(),
      totalBytes: null,
      freeBytes: null,
    };
  }

  get status(): ArchiveStatus {
    return this.current;
  }

  /** Its files can be read and removed now. */
  get reachable(): boolean {
    return this.current.state === 'ok' || this.current.state === 'full';
  }

  get afterMs(): number {
    return this.options.afterMs;
  }

  pathOf(segment: Pick<Segment, 'path'>): string {
    return path.join(this.options.dir, segment.path);
  }

  /** Looks at the archive now; says whether its state changed. */
  async check(): Promise<boolean> {
    const { state, reason, totalBytes, freeBytes } = await this.look();
    const changed = state !== this.current.state;
    this.current = {
      path: this.options.dir,
      state,
      reason,
      since: changed ? new Date().toISOString() : this.current.since,
      totalBytes,
      freeBytes,
    };
    return changed;
  }

  private async look(): Promise<Omit<ArchiveStatus, 'path' | 'since'>> {
    const { dir, requireMount, minFreeBytes, quotaBytes } = this.options;
    const none = { totalBytes: null, freeBytes: null };
    const here = await stat(dir).catch(() => null);
    if (!here?.isDirectory()) return { state: 'missing', reason: `${dir} does not exist`, ...none };
    if (requireMount) {
      const parent = await stat(path.dirname(dir)).catch(() => null);
      if (parent && parent.dev === here.dev)
        return {
          state: 'unmounted',
          reason: `nothing is mounted on ${dir} (it is on the same filesystem as its parent)`,
          ...none,
        };
    }
    if (
      !(await access(dir, constants.W_OK).then(
        () => true,
        () => false,
      ))
    )
      return { state: 'unwritable', reason: `${dir} is not writable`, ...none };
    const disk = await statfs(dir);
    const sizes = { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize };
    if (sizes.freeBytes < minFreeBytes)
      return { state: 'full', reason: `${sizes.freeBytes} bytes free, under its floor of ${minFreeBytes}`, ...sizes };
    if (quotaBytes !== null && (await this.archivedBytes()) > quotaBytes)
      return { state: 'full', reason: `over its quota of ${quotaBytes} bytes`, ...sizes };
    return { state: 'ok', reason: null, ...sizes };
  }

  /** Whether a segment of this size fits without taking the archive under its floor or over its quota. */
  async hasRoomFor(bytes: number): Promise<boolean> {
    if (this.current.state !== 'ok') return false;
    const { minFreeBytes, quotaBytes } = this.options;
    const disk = await statfs(this.options.dir);
    if (disk.bavail * disk.bsize - bytes < minFreeBytes) return false;
    return quotaBytes === null || (await this.archivedBytes()) + bytes <= quotaBytes;
  }

  /** Over its floor or quota: its oldest segments should go. */
  async overBudget(): Promise<boolean> {
    if (!this.reachable) return false;
    const { minFreeBytes, quotaBytes } = this.options;
    const disk = await statfs(this.options.dir);
    if (disk.bavail * disk.bsize < minFreeBytes) return true;
    return quotaBytes !== null && (await this.archivedBytes()) > quotaBytes;
  }

  /**
   * Finishes or undoes the move a power cut or a crash interrupted. Left for later while the
   * archive is not there (the hot copy stays the one played).
   */
  async settle(): Promise<'none' | 'finished' | 'undone' | 'waiting'> {
    const segment = await this.journal.get(JOURNAL_KEY);
    if (!segment) return 'none';
    if (!this.reachable) return 'waiting';
    const target = this.pathOf(segment);
    if (await stat(target).catch(() => null)) {
      await this.finish(segment);
      return 'finished';
    }
    await rm(`${target}.partial`, { force: true });
    await this.journal.del(JOURNAL_KEY);
    return 'undone';
  }

  /**
   * Moves a hot segment here when the archive is ok and has room for it. A failed move (the NAS
   * went away mid-copy) leaves the segment on the hot disk and the archive looked at again.
   */
  async spill(segment: Segment): Promise<boolean> {
    try {
      return (await this.hasRoomFor(segment.bytes)) && (await this.move(segment));
    } catch (err) {
      await this.check().catch(() => undefined);
      if (this.current.state === 'ok')
        this.current = { ...this.current, reason: `a move failed: ${(err as Error).message}` };
      return false;
    }
  }

  /** Moves one hot segment to the archive; false when it is not there to move (gone meanwhile). */
  async move(segment: Segment): Promise<boolean> {
    if ((await this.settle()) === 'waiting') return false;
    const source = path.join(this.hotDir, segment.path);
    const target = this.pathOf(segment);
    const partial = `${target}.partial`;
    await this.journal.put(JOURNAL_KEY, segment);
    try {
      await mkdir(path.dirname(target), { recursive: true });
      if (!(await this.copy(source, partial))) {
        await rm(partial, { force: true });
        await this.journal.del(JOURNAL_KEY);
        return false;
      }
      await rename(partial, target);
      await syncFolder(path.dirname(target));
    } catch (err) {
      // Nothing is in the archive's name yet: the hot copy stays the only one.
      await rm(partial, { force: true }).catch(() => undefined);
      await this.journal.del(JOURNAL_KEY).catch(() => undefined);
      throw err;
    }
    await this.finish(segment);
    return true;
  }

  private async finish(segment: Segment): Promise<void> {
    await this.index.archived(segment);
    await unlink(path.join(this.hotDir, segment.path)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    // Not flushed: a journal entry that comes back after a power cut finds the move done, and finishes nothing.
    await this.journal.del(JOURNAL_KEY, { sync: false });
  }

  /** Copies and flushes a file at the rate cap; false when the source is gone. */
  private async copy(source: string, target: string): Promise<boolean> {
    const input = await open(source, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!input) return false;
    const rate = this.options.bytesPerSecond;
    if (!rate) {
      // Uncapped: the kernel copies (copy_file_range), then the copy is flushed.
      await input.close();
      await copyFile(source, target);
      const copied = await open(target, 'r+');
      try {
        await copied.sync();
      } finally {
        await copied.close();
      }
      return true;
    }
    const output = await open(target, 'w');
    try {
      const buffer = Buffer.allocUnsafe(CHUNK);
      const t0 = performance.now();
      let done = 0;
      for (;;) {
        const { bytesRead } = await input.read(buffer, 0, CHUNK, done);
        if (bytesRead === 0) break;
        await output.write(buffer, 0, bytesRead, done);
        done += bytesRead;
        if (rate) {
          const ahead = (done / rate) * 1000 - (performance.now() - t0);
          if (ahead > 0) await sleep(ahead);
        }
      }
      await output.sync();
      return true;
    } finally {
      await input.close();
      await output.close();
    }
  }
}

/** A rename is on the disk only once its folder is flushed. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
