// The recordings index: one LevelDB record per segment, keyed <camera>/<start>
// so a time range of one camera is one ordered scan.
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Collection } from '../../lib/store.ts';
import { probeDuration } from '../../lib/ffprobe.ts';
import { dayDir, startOfSegmentFile } from '../../appliance/data-dir.ts';
import { trimToLastFragment } from '../../lib/media/fragmented-mp4.ts';
import { tierOf, type Range, type Segment, type Tier } from './recorder.schemas.ts';

/** Segments closer than this are one continuous recording (file names have 1 s resolution). */
export const GAP_TOLERANCE_MS = 1500;
/** ffmpeg appends a fragment at every keyframe: a file quiet for this long is not being written. */
export const BUSY_MS = 15_000;

/** Stretches of time (sorted by start) cut to [from, to), those closer than GAP_TOLERANCE_MS joined. */
export function mergedRanges(sorted: Range[], from: number, to: number): Range[] {
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    const start = Math.max(r.start, from);
    const end = Math.min(r.end, to);
    if (last && start - last.end <= GAP_TOLERANCE_MS) last.end = Math.max(last.end, end);
    else out.push({ start, end });
  }
  return out;
}

/** A camera's record by its start (ms), so a time range of one camera is one ordered scan. */
export const cameraKey = (camera: string, start: number) => `${camera}/${String(Math.round(start)).padStart(15, '0')}`;

/** The cameras that have records in a collection keyed by cameraKey: one seek per camera. */
export async function camerasIn(records: Collection<{ camera: string }>): Promise<string[]> {
  const out: string[] = [];
  let from = '';
  for (;;) {
    const [next] = await records.values({ gte: from, limit: 1 });
    if (!next) return out;
    out.push(next.camera);
    from = `${next.camera}/~`;
  }
}

export interface CameraUsage {
  bytes: number;
  segments: number;
}

type Tally = Map<string, CameraUsage>;

export class SegmentIndex {
  /** Bytes and segments per tier and camera; counted in one scan when first asked, then kept up to date. */
  private readonly tallies: Partial<Record<Tier, Tally>> = {};
  private readonly collections: Record<Tier, Collection<Segment>>;

  /** Each tier has its own collection, so the oldest of a tier is one seek. */
  constructor(hot: Collection<Segment>, archived: Collection<Segment> = hot) {
    this.collections = { hot, archive: archived };
  }

  private get tiers(): Tier[] {
    return this.collections.archive === this.collections.hot ? ['hot'] : ['hot', 'archive'];
  }

  async add(segment: Segment): Promise<void> {
    const tier = tierOf(segment);
    const id = cameraKey(segment.camera, segment.start);
    const before = await this.collections[tier].get(id);
    // No disk sync per segment: an entry lost with a power cut is rebuilt from its file at start.
    await this.collections[tier].put(id, segment, { sync: false });
    this.count(tier, segment.camera, segment.bytes - (before?.bytes ?? 0), before ? 0 : 1);
  }

  async remove(segment: Segment): Promise<void> {
    const tier = tierOf(segment);
    await this.collections[tier].del(cameraKey(segment.camera, segment.start), { sync: false });
    this.count(tier, segment.camera, -segment.bytes, -1);
  }

  /** The entry of a segment whose file is now in the archive (written to the disk before it returns). */
  async archived(segment: Segment): Promise<Segment> {
    const moved: Segment = { ...segment, tier: 'archive' };
    const id = cameraKey(segment.camera, segment.start);
    const [before, hot] = await Promise.all([this.collections.archive.get(id), this.collections.hot.get(id)]);
    await this.collections.archive.put(id, moved, { sync: true });
    if (!before) this.count('archive', segment.camera, segment.bytes, 1);
    if (hot) {
      // Not flushed: a hot entry back after a power cut has no file, and the start's heal drops it.
      await this.collections.hot.del(id, { sync: false });
      this.count('hot', segment.camera, -hot.bytes, -1);
    }
    return moved;
  }

  /** Whether a segment with this camera and start is indexed, in either tier. */
  async has(camera: string, start: number): Promise<boolean> {
    for (const tier of this.tiers) if (await this.collections[tier].get(cameraKey(camera, start))) return true;
    return false;
  }

  private count(tier: Tier, camera: string, bytes: number, segments: number): void {
    const tally = this.tallies[tier];
    if (!tally) return;
    const u = tally.get(camera) ?? { bytes: 0, segments: 0 };
    u.bytes += bytes;
    u.segments += segments;
    if (u.segments > 0) tally.set(camera, u);
    else tally.delete(camera);
  }

  private async usageByCamera(tier: Tier): Promise<Tally> {
    let tally = this.tallies[tier];
    if (!tally) {
      tally = new Map();
      for await (const [, s] of this.collections[tier].entries()) {
        const u = tally.get(s.camera) ?? { bytes: 0, segments: 0 };
        u.bytes += s.bytes;
        u.segments += 1;
        tally.set(s.camera, u);
      }
      this.tallies[tier] = tally;
    }
    return tally;
  }

  /** Bytes of the segments in a tier (both tiers when none is named). */
  async totalBytes(tier?: Tier): Promise<number> {
    let sum = 0;
    for (const t of tier ? [tier] : this.tiers) for (const u of (await this.usageByCamera(t)).values()) sum += u.bytes;
    return sum;
  }

  /** Bytes, segment count and oldest start per camera over both tiers, and the archive's share. */
  async usage(): Promise<Record<string, CameraUsage & { oldest: number; archivedBytes: number }>> {
    const out: Record<string, CameraUsage & { oldest: number; archivedBytes: number }> = {};
    for (const tier of this.tiers) {
      for (const [camera, u] of await this.usageByCamera(tier)) {
        const o = (out[camera] ??= { bytes: 0, segments: 0, oldest: Infinity, archivedBytes: 0 });
        o.bytes += u.bytes;
        o.segments += u.segments;
        if (tier === 'archive') o.archivedBytes += u.bytes;
      }
    }
    for (const camera of Object.keys(out)) {
      const oldest = await this.oldest(camera);
      if (oldest) out[camera]!.oldest = oldest.start;
      else delete out[camera];
    }
    return out;
  }

  /** The oldest segment of a camera, in a tier or in either. */
  async oldest(camera: string, tier?: Tier): Promise<Segment | undefined> {
    let oldest: Segment | undefined;
    for (const t of tier ? [tier] : this.tiers) {
      const [s] = await this.collections[t].values({ gte: cameraKey(camera, 0), lt: `${camera}/~`, limit: 1 });
      if (s && (!oldest || s.start < oldest.start)) oldest = s;
    }
    return oldest;
  }

  /** Cameras that have segments (in a tier, or in either), from the key order: one seek per camera. */
  async cameras(tier?: Tier): Promise<string[]> {
    const out = new Set<string>();
    for (const t of tier ? [tier] : this.tiers)
      for (const camera of await camerasIn(this.collections[t])) out.add(camera);
    return [...out].sort();
  }

  /** Segments of a camera that overlap [from, to), oldest first, from one tier or both. */
  async list(camera: string, from: number, to: number, tier?: Tier): Promise<Segment[]> {
    const byStart = new Map<number, Segment>();
    // The archive's entry wins: a move writes it before it drops the hot one.
    for (const t of tier ? [tier] : this.tiers) {
      const c = this.collections[t];
      const before = await c.values({
        lt: cameraKey(camera, from),
        gte: cameraKey(camera, 0),
        reverse: true,
        limit: 1,
      });
      const inside = await c.values({ gte: cameraKey(camera, from), lt: cameraKey(camera, to) });
      for (const s of [...before.filter((s) => s.end > from), ...inside]) byStart.set(s.start, s);
    }
    return [...byStart.values()].sort((a, b) => a.start - b.start);
  }

  /** Recorded ranges and the gaps between them, within [from, to). */
  async timeline(camera: string, from: number, to: number): Promise<{ ranges: Range[]; gaps: Range[] }> {
    const ranges = mergedRanges(await this.list(camera, from, to), from, to);
    const gaps: Range[] = [];
    let cursor = from;
    for (const r of ranges) {
      if (r.start - cursor > GAP_TOLERANCE_MS) gaps.push({ start: cursor, end: r.start });
      cursor = r.end;
    }
    if (to - cursor > GAP_TOLERANCE_MS && cursor < Date.now())
      gaps.push({ start: cursor, end: Math.min(to, Date.now()) });
    return { ranges, gaps };
  }

  /**
   * Drops entries whose file is gone (removed by hand, lost with a disk). Entries of a tier
   * whose folder is not there now (an unmounted archive) are left alone.
   */
  async dropMissing(dirs: Partial<Record<Tier, string>>): Promise<number> {
    let dropped = 0;
    for (const tier of this.tiers) {
      const dir = dirs[tier];
      if (!dir) continue;
      for await (const [, s] of this.collections[tier].entries()) {
        if (!(await stat(path.join(dir, s.path)).catch(() => null))) {
          await this.remove(s);
          dropped++;
        }
      }
    }
    return dropped;
  }

  /**
   * Adds the files the index lacks: the segment being written when the box or its ffmpeg died,
   * or one whose "closed" event was lost. Only files that started at `since` (ms) or later are
   * looked at (their names say when). A file written to in the last BUSY_MS belongs to a
   * running recorder and is left alone. A file with no whole fragment (ffmpeg died before its
   * first, or the disk was full) holds nothing to play and is removed. Returns what it added.
   */
  async addMissing(mediaDir: string, ffprobePath: string, since = 0): Promise<Segment[]> {
    const added: Segment[] = [];
    const sinceDay = since > 0 ? dayDir(since) : '';
    const cameras = await readdir(mediaDir, { withFileTypes: true }).catch(() => []);
    for (const cam of cameras.filter((d) => d.isDirectory())) {
      const days = await readdir(path.join(mediaDir, cam.name), { withFileTypes: true });
      for (const day of days.filter((d) => d.isDirectory() && d.name >= sinceDay)) {
        for (const file of await readdir(path.join(mediaDir, cam.name, day.name))) {
          const start = startOfSegmentFile(file);
          if (Number.isNaN(start) || start < since || (await this.has(cam.name, start))) continue;
          const rel = path.join(cam.name, day.name, file);
          const info = await stat(path.join(mediaDir, rel));
          if (Date.now() - info.mtimeMs < BUSY_MS) continue;
          const bytes = await trimToLastFragment(path.join(mediaDir, rel));
          if (bytes === 0) {
            await rm(path.join(mediaDir, rel), { force: true });
            continue;
          }
          const seconds = await probeDuration(ffprobePath, path.join(mediaDir, rel));
          if (seconds <= 0) continue;
          const segment = { camera: cam.name, path: rel, start, end: start + Math.round(seconds * 1000), bytes };
          await this.add(segment);
          added.push(segment);
        }
      }
    }
    return added;
  }
}
