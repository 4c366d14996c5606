// The recordings index: one LevelDB record per segment, keyed <camera>/<start>
// so a time range of one camera is one ordered scan.
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Collection } from '../../lib/store.ts';
import { probeDuration } from '../../lib/ffprobe.ts';
import { dayDir, startOfSegmentFile } from '../../appliance/data-dir.ts';
import { trimToLastFragment } from '../../lib/media/fragmented-mp4.ts';
import type { Range, Segment } from './recorder.schemas.ts';

/** Segments closer than this are one continuous recording (file names have 1 s resolution). */
export const GAP_TOLERANCE_MS = 1500;
/** ffmpeg appends a fragment at every keyframe: a file quiet for this long is not being written. */
export const BUSY_MS = 15_000;

const key = (camera: string, start: number) => `${camera}/${String(Math.round(start)).padStart(15, '0')}`;

export interface CameraUsage {
  bytes: number;
  segments: number;
}

export class SegmentIndex {
  /** Bytes and segments per camera; counted in one scan when first asked, then kept up to date. */
  private tally: Map<string, CameraUsage> | undefined;

  constructor(private readonly segments: Collection<Segment>) {}

  async add(segment: Segment): Promise<void> {
    const id = key(segment.camera, segment.start);
    const before = await this.segments.get(id);
    // No disk sync per segment: an entry lost with a power cut is rebuilt from its file at start.
    await this.segments.put(id, segment, { sync: false });
    this.count(segment.camera, segment.bytes - (before?.bytes ?? 0), before ? 0 : 1);
  }

  async remove(segment: Segment): Promise<void> {
    await this.segments.del(key(segment.camera, segment.start), { sync: false });
    this.count(segment.camera, -segment.bytes, -1);
  }

  private count(camera: string, bytes: number, segments: number): void {
    if (!this.tally) return;
    const u = this.tally.get(camera) ?? { bytes: 0, segments: 0 };
    u.bytes += bytes;
    u.segments += segments;
    if (u.segments > 0) this.tally.set(camera, u);
    else this.tally.delete(camera);
  }

  private async usageByCamera(): Promise<Map<string, CameraUsage>> {
    if (!this.tally) {
      const tally = new Map<string, CameraUsage>();
      for await (const [, s] of this.segments.entries()) {
        const u = tally.get(s.camera) ?? { bytes: 0, segments: 0 };
        u.bytes += s.bytes;
        u.segments += 1;
        tally.set(s.camera, u);
      }
      this.tally = tally;
    }
    return this.tally;
  }

  async totalBytes(): Promise<number> {
    let sum = 0;
    for (const u of (await this.usageByCamera()).values()) sum += u.bytes;
    return sum;
  }

  /** Bytes, segment count and oldest start per camera (one seek each for the oldest). */
  async usage(): Promise<Record<string, CameraUsage & { oldest: number }>> {
    const out: Record<string, CameraUsage & { oldest: number }> = {};
    for (const [camera, u] of await this.usageByCamera()) {
      const oldest = await this.oldest(camera);
      if (oldest) out[camera] = { ...u, oldest: oldest.start };
    }
    return out;
  }

  /** The oldest segment of a camera, if any. */
  async oldest(camera: string): Promise<Segment | undefined> {
    return (await this.segments.values({ gte: key(camera, 0), lt: `${camera}/~`, limit: 1 }))[0];
  }

  /** Cameras that have segments, from the key order: one seek per camera. */
  async cameras(): Promise<string[]> {
    const out: string[] = [];
    let from = '';
    for (;;) {
      const [next] = await this.segments.values({ gte: from, limit: 1 });
      if (!next) return out;
      out.push(next.camera);
      from = `${next.camera}/~`;
    }
  }

  /** Segments of a camera that overlap [from, to), oldest first. */
  async list(camera: string, from: number, to: number): Promise<Segment[]> {
    const before = await this.segments.values({ lt: key(camera, from), gte: key(camera, 0), reverse: true, limit: 1 });
    const inside = await this.segments.values({ gte: key(camera, from), lt: key(camera, to) });
    return [...before.filter((s) => s.end > from), ...inside];
  }

  /** Recorded ranges and the gaps between them, within [from, to). */
  async timeline(camera: string, from: number, to: number): Promise<{ ranges: Range[]; gaps: Range[] }> {
    const ranges: Range[] = [];
    for (const s of await this.list(camera, from, to)) {
      const last = ranges[ranges.length - 1];
      const start = Math.max(s.start, from);
      const end = Math.min(s.end, to);
      if (last && start - last.end <= GAP_TOLERANCE_MS) last.end = Math.max(last.end, end);
      else ranges.push({ start, end });
    }
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

  /** Drops entries whose file is gone (removed by hand, lost with a disk). */
  async dropMissing(mediaDir: string): Promise<number> {
    let dropped = 0;
    for await (const [, s] of this.segments.entries()) {
      if (!(await stat(path.join(mediaDir, s.path)).catch(() => null))) {
        await this.remove(s);
        dropped++;
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
          if (Number.isNaN(start) || start < since || (await this.segments.get(key(cam.name, start)))) continue;
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
