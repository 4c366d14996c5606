// The archive tier: a second disk or a NAS mount that older segments move to, under the same
// relative paths as on the hot disk, still indexed and playable. A move is journaled: copy to a
// .partial file, flush it, rename it into place, flush the folder, index it as archived, then
// remove the hot file. A power cut at any step leaves the segment whole in one place: at the
// next start the journal's move is finished (the archive copy is complete once renamed) or
// undone (the partial copy goes).
import { constants } from 'node:fs';
import { access, copyFile, mkdir, open, rm, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { commitFile } from '../../lib/durable-files.ts';
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
    /** Told of each change of state, whoever looked (a check, a move that failed). */
    private readonly changed: (status: ArchiveStatus) => void = () => undefined,
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
    if (changed) this.changed(this.current);
    return changed;
  }

  private async look(): Promise<Omit<ArchiveStatus, 'path' | 'since'>> {
    const { dir } = this.options;
    const none = { totalBytes: null, freeBytes: null };
    const here = await stat(dir).catch(() => null);
    if (!here?.isDirectory()) return { state: 'missing', reason: `${dir} does not exist`, ...none };
    if (!(await this.mounted(here.dev)))
      return {
        state: 'unmounted',
        reason: `nothing is mounted on ${dir} (it is on the same filesystem as its parent)`,
        ...none,
      };
    if (
      !(await access(dir, constants.W_OK).then(
        () => true,
        () => false,
      ))
    )
      return { state: 'unwritable', reason: `${dir} is not writable`, ...none };
    const disk = await statfs(dir);
    const sizes = { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize };
    const problem = await this.spaceProblem();
    return problem ? { state: 'full', reason: problem, ...sizes } : { state: 'ok', reason: null, ...sizes };
  }

  /** Whether the archive's filesystem is mounted (always, when it need not be a mount of its own). */
  private async mounted(dev?: number): Promise<boolean> {
    const { dir, requireMount } = this.options;
    if (!requireMount) return true;
    const [here, parent] = await Promise.all([
      dev === undefined ? stat(dir).catch(() => null) : { dev },
      stat(path.dirname(dir)).catch(() => null),
    ]);
    return Boolean(here && parent && parent.dev !== here.dev);
  }

  /** What `bytes` more would leave wrong with its space: under its floor, over its quota; null: nothing. */
  private async spaceProblem(bytes = 0): Promise<string | null> {
    const { dir, minFreeBytes, quotaBytes } = this.options;
    const disk = await statfs(dir);
    const free = disk.bavail * disk.bsize - bytes;
    if (free < minFreeBytes) return `${free} bytes free, under its floor of ${minFreeBytes}`;
    if (quotaBytes !== null && (await this.archivedBytes()) + bytes > quotaBytes)
      return `over its quota of ${quotaBytes} bytes`;
    return null;
  }

  /** Whether a segment of this size fits without taking the archive under its floor or over its quota. */
  async hasRoomFor(bytes: number): Promise<boolean> {
    return this.current.state === 'ok' && (await this.spaceProblem(bytes)) === null;
  }

  /** Over its floor or quota: its oldest segments should go. */
  async overBudget(): Promise<boolean> {
    return this.reachable && (await this.spaceProblem()) !== null;
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
    // Looked at again now, not at the last check: a NAS unmounted since leaves its bare folder on
    // the box's own disk, and nothing may be written there.
    if (!(await this.mounted())) return false;
    await this.journal.put(JOURNAL_KEY, segment);
    try {
      await mkdir(path.dirname(target), { recursive: true });
      if (!(await this.copy(source, partial))) {
        await rm(partial, { force: true });
        await this.journal.del(JOURNAL_KEY);
        return false;
      }
      await commitFile(partial, target);
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

  /** Copies a file (at the rate cap, when there is one); false when the source is gone. */
  private async copy(source: string, target: string): Promise<boolean> {
    const rate = this.options.bytesPerSecond;
    try {
      // Uncapped, the kernel copies (copy_file_range).
      if (rate) await copyAtRate(source, target, rate);
      else await copyFile(source, target);
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT' && e.path === source) return false;
      throw err;
    }
  }
}

/** Copies a file in chunks, sleeping as needed to stay within `rate` bytes/s. */
async function copyAtRate(source: string, target: string, rate: number): Promise<void> {
  const input = await open(source, 'r');
  try {
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
        const ahead = (done / rate) * 1000 - (performance.now() - t0);
        if (ahead > 0) await sleep(ahead);
      }
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}
