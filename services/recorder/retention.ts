// What keeps the disks from filling: segments past their camera's retention go first (from
// either tier); with an archive tier, hot segments past its age move there. Then, while what the
// box stores exceeds the quota or the hot disk has less free space than the minimum, caches
// (clips) are given up, then the oldest hot segment moves to the archive (when it has room) or
// goes. The archive keeps its own floor and quota: past them its oldest go.
import { statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { SegmentIndex } from './segment-index.ts';
import type { Segment, Tier } from './recorder.schemas.ts';

export interface RetentionPolicy {
  /** Days to keep a camera's recordings (cameras removed from the box get a default). */
  retainDays(camera: string): number;
  /** Days to keep footage around events, when longer than retainDays. */
  eventRetainDays?(camera: string): number;
  /** Events mode: footage away from any event goes as soon as no event can still claim it. */
  eventsOnly?(camera: string): boolean;
  /** How long after it ends footage may still be claimed by an event (its pre-roll, detection lag), ms. */
  eventClaimMs?: number;
  /**
   * The camera's events as time ranges with their pre- and post-roll, for events that start
   * in [from, to), each with the days footage of its kind is kept (alert, detection, motion; none
   * given: eventRetainDays); undefined when they cannot be had now (then footage is kept as if it
   * had events).
   */
  eventRanges?(camera: string, from: number, to: number): Promise<EventRange[] | undefined>;
  /** Segments (paths under media/) still waiting to go up to the cloud: kept by age and quota, not below the free-space floor. */
  pinned?(): Promise<Set<string>>;
  /** Most bytes everything the box stores may take (recordings and otherBytes); null: no quota. */
  quotaBytes: number | null;
  /** Bytes the box stores besides recordings (clips, snapshots, stores, outbox). */
  otherBytes?(): Promise<number>;
  /** Gives up what can be made again (cached clips) before any recording goes; returns bytes freed. */
  reclaim?(): Promise<number>;
  /** Free space the disk must keep, bytes. */
  minFreeBytes: number;
  /** The archive tier, when the box has one. */
  archive?: ArchivePolicy;
  /** Segments (paths under media/) the cloud sync still reads from the hot disk: they move only for space. */
  queued?(): Promise<Set<string>>;
  /** Moves by age stop after this long in one run (the next run goes on), ms. */
  moveBudgetMs?: number;
}

export interface ArchivePolicy {
  /** Its files can be read and removed now (mounted; full is reachable). */
  readonly reachable: boolean;
  pathOf(segment: Segment): string;
  /** Hot segments that ended this long ago move there, ms. */
  readonly afterMs: number;
  /** Under its floor or over its quota. */
  overBudget(): Promise<boolean>;
  /** Moves a hot segment there if it is reachable and has room; whether it did. */
  spill(segment: Segment): Promise<boolean>;
}

/** [from, to] in ms, and the days footage in it is kept (by the kind of what was seen). */
export type EventRange = [number, number] | [number, number, number];

export interface RetentionResult {
  byAge: number;
  bySpace: number;
  /** Hot segments moved to the archive (by age, or for space). */
  moved: number;
  bytesFreed: number;
  /** Bytes of caches given up for space. */
  reclaimedBytes: number;
  /** Still under the free-space floor with nothing of ours left to free: the disk is full. */
  diskFull: boolean;
}

const DAY = 86_400_000;
/** Events are looked up this far before the oldest footage in question (an event spans it). */
const HOUR = 3_600_000;
const EVENT_WINDOW_MS = 6 * HOUR;

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
    const result: RetentionResult = {
      byAge: 0,
      bySpace: 0,
      moved: 0,
      bytesFreed: 0,
      reclaimedBytes: 0,
      diskFull: false,
    };
    const { archive } = this.policy;
    /** Removes a segment's file and entry; false while its tier cannot be reached (an unmounted archive). */
    const drop = async (segment: Segment): Promise<boolean> => {
      if (segment.tier === 'archive' && !archive?.reachable) return false;
      const file = segment.tier === 'archive' ? archive!.pathOf(segment) : path.join(this.mediaDir, segment.path);
      await unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await this.index.remove(segment);
      result.bytesFreed += segment.bytes;
      return true;
    };

    const { eventRanges, eventsOnly, eventRetainDays, eventClaimMs = 0 } = this.policy;
    const pinned = (await this.policy.pinned?.()) ?? new Set<string>();
    for (const camera of await this.index.cameras()) {
      const days = this.policy.retainDays(camera);
      const plainCutoff = eventsOnly?.(camera) ? now - eventClaimMs : now - days * DAY;
      // Footage around events may be kept longer (and in events mode, only that is kept), each
      // for the days of the kind of what was seen there.
      const eventDays = eventRetainDays?.(camera) ?? 0;
      const keptUntil = (range: EventRange) => Math.max(days, range[2] ?? eventDays) * DAY;
      const candidates = (await this.index.list(camera, 0, plainCutoff)).filter((s) => s.end < plainCutoff);
      // Events are asked for a window at a time, so a busy camera's list stays short.
      let window: { until: number; ranges: EventRange[] | undefined } | undefined;
      for (const s of candidates) {
        if (!window || s.start >= window.until) {
          const until = Math.min(s.start + EVENT_WINDOW_MS, plainCutoff);
          window = { until, ranges: eventRanges ? await eventRanges(camera, s.start - HOUR, until + HOUR) : [] };
        }
        const ranges = window.ranges;
        const kept =
          ranges === undefined
            ? s.end >= now - Math.max(days, eventDays) * DAY
            : ranges.some((r) => r[0] < s.end && r[1] > s.start && s.end >= now - keptUntil(r));
        if (kept || pinned.has(s.path) || !(await drop(s))) continue;
        result.byAge++;
      }
    }
    if (archive?.reachable) await this.moveByAge(archive, now, result);

    // What else the box stores counts only against a quota: without one, the data root is not walked.
    const otherBytes = async () => (this.policy.quotaBytes === null ? 0 : ((await this.policy.otherBytes?.()) ?? 0));
    let other = await otherBytes();
    let reclaimed = false;
    for (let reason = await this.overBudget(other); reason; reason = await this.overBudget(other)) {
      if (!reclaimed && this.policy.reclaim) {
        // What can be made again goes before anything that cannot.
        reclaimed = true;
        result.reclaimedBytes = await this.policy.reclaim();
        other = await otherBytes();
        continue;
      }
      const oldest = await this.oldestOfAll('hot');
      if (!oldest) break; // nothing left of ours to free
      // Over the quota only: the oldest waits for its upload. Below the floor the disk comes first.
      if (reason === 'quota' && pinned.has(oldest.path)) break;
      if (archive && (await archive.spill(oldest))) result.moved++;
      else if (await drop(oldest)) result.bySpace++;
    }
    // The archive's own budget: its oldest go.
    while (archive && (await archive.overBudget())) {
      const oldest = await this.oldestOfAll('archive');
      if (!oldest || !(await drop(oldest))) break;
      result.bySpace++;
    }
    result.diskFull = (await this.freeBytes()) < Math.max(1, this.policy.minFreeBytes);
    return result;
  }

  private async overBudget(otherBytes: number): Promise<'quota' | 'space' | undefined> {
    const { quotaBytes, minFreeBytes } = this.policy;
    if ((await this.freeBytes()) < minFreeBytes) return 'space';
    if (quotaBytes !== null && (await this.index.totalBytes('hot')) + otherBytes > quotaBytes) return 'quota';
    return undefined;
  }

  /** Hot segments that ended longer ago than the archive's age move there, oldest first, within the run's budget. */
  private async moveByAge(archive: ArchivePolicy, now: number, result: RetentionResult): Promise<void> {
    const until = performance.now() + (this.policy.moveBudgetMs ?? 20_000);
    const cutoff = now - archive.afterMs;
    const queued = (await this.policy.queued?.()) ?? new Set<string>();
    for (const camera of await this.index.cameras('hot')) {
      for (const s of await this.index.list(camera, 0, cutoff, 'hot')) {
        if (s.end >= cutoff || queued.has(s.path)) continue;
        if (performance.now() > until || !(await archive.spill(s))) return;
        result.moved++;
      }
    }
  }

  private async oldestOfAll(tier: Tier): Promise<Segment | undefined> {
    let oldest: Segment | undefined;
    for (const camera of await this.index.cameras(tier)) {
      const s = await this.index.oldest(camera, tier);
      if (s && (!oldest || s.start < oldest.start)) oldest = s;
    }
    return oldest;
  }
}
