// Clip export: the segments of a time range joined into one MP4 by ffmpeg's concat demuxer,
// stream copy (no transcoding), cut to the range at keyframes. Clips are a cache: made once per
// range (a second request waits for the first), kept within a size and an age, the first thing
// given up when the disk runs short, and never a reason to delete a recording.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { InsufficientStorageError } from '../../lib/errors.ts';
import { CLIP_NAME, clipName, type ClipRequest, type Segment } from './recorder.schemas.ts';

const run = promisify(execFile);

/** A clip being made: `<clip name>.<random>.partial.mp4` and its list `.txt`. */
const WORK_FILE = /\.[0-9a-f]{12}\.(partial\.mp4|txt)$/;
/** Work files older than this belong to a process that died (a clip takes at most 2 minutes). */
const STALE_WORK_MS = 10 * 60_000;

export interface ClipCacheLimits {
  /** Most bytes all cached clips may take. */
  maxBytes: number;
  /** A clip not asked for in this long goes, ms. */
  maxAgeMs: number;
  /** Bytes the disk may still give to a new clip (free space above the floor). */
  roomOnDisk(): Promise<number>;
}

/** The bytes of the range in these segments, by the share of each segment the range covers. */
export function estimateBytes(request: ClipRequest, segments: Segment[]): number {
  return Math.round(
    segments.reduce((sum, s) => {
      const covered = Math.max(0, Math.min(request.to, s.end) - Math.max(request.from, s.start));
      return sum + (s.end > s.start ? (s.bytes * covered) / (s.end - s.start) : s.bytes);
    }, 0),
  );
}

export class ClipCache {
  /** Clips being made now, by name: a second request for one waits for it. */
  private readonly making = new Map<string, Promise<{ file: string; bytes: number }>>();

  constructor(
    readonly dir: string,
    private readonly ffmpegPath: string,
    /** Where a segment's file is (the hot disk or the archive). */
    private readonly locate: (segment: Segment) => string,
    private readonly limits: ClipCacheLimits,
  ) {}

  get(request: ClipRequest, segments: Segment[]): Promise<{ file: string; bytes: number }> {
    const name = clipName(request);
    const pending = this.making.get(name);
    if (pending) return pending;
    const work = this.make(name, request, segments).finally(() => this.making.delete(name));
    this.making.set(name, work);
    return work;
  }

  private async make(
    name: string,
    request: ClipRequest,
    segments: Segment[],
  ): Promise<{ file: string; bytes: number }> {
    await mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, name);
    const existing = await stat(file).catch(() => null);
    if (existing) {
      const now = new Date();
      await utimes(file, now, now).catch(() => undefined); // recently used: kept longest
      return { file, bytes: existing.size };
    }
    const estimate = estimateBytes(request, segments);
    if (estimate > this.limits.maxBytes) {
      throw new InsufficientStorageError(
        `This clip would take about ${mib(estimate)} MiB, more than the clip cache holds (video.clipCacheBytes: ${mib(this.limits.maxBytes)} MiB); ask for a shorter range, or play the recordings`,
        'CLIP_TOO_LARGE',
        { estimateBytes: estimate, clipCacheBytes: this.limits.maxBytes },
      );
    }
    await this.trim(this.limits.maxBytes - estimate);
    if ((await this.limits.roomOnDisk()) < estimate) await this.trim(0);
    const room = await this.limits.roomOnDisk();
    if (room < estimate) {
      throw new InsufficientStorageError(
        `The disk has no room for this clip (about ${mib(estimate)} MiB, ${mib(Math.max(0, room))} MiB free above the floor); recordings are not deleted for clips`,
        'DISK_FULL',
        { estimateBytes: estimate, roomBytes: Math.max(0, room) },
      );
    }
    // ffconcat: each segment with the part of it that falls in the range.
    const lines = ['ffconcat version 1.0'];
    for (const s of segments) {
      lines.push(`file '${this.locate(s).replace(/'/g, "'\\''")}'`);
      if (request.from > s.start) lines.push(`inpoint ${((request.from - s.start) / 1000).toFixed(3)}`);
      if (request.to < s.end) lines.push(`outpoint ${((request.to - s.start) / 1000).toFixed(3)}`);
    }
    // Names of their own: two processes (or a crash's leftovers) never share a work file.
    const work = `${file}.${randomBytes(6).toString('hex')}`;
    const list = `${work}.txt`;
    const partial = `${work}.partial.mp4`;
    await writeFile(list, lines.join('\n') + '\n');
    try {
      await run(
        this.ffmpegPath,
        [
          '-v',
          'error',
          '-y',
          '-f',
          'concat',
          '-safe',
          '0',
          '-i',
          list,
          '-map',
          '0:v:0',
          '-map',
          '0:a:0?', // the camera's sound, when it was recorded
          '-c',
          'copy',
          '-movflags',
          '+faststart',
          partial,
        ],
        { timeout: 120_000 },
      );
      // Only a finished file gets the real name, at once: no reader ever sees half a clip.
      await rename(partial, file);
    } finally {
      await rm(list, { force: true });
      await rm(partial, { force: true });
    }
    return { file, bytes: (await stat(file)).size };
  }

  /** Bytes the cached clips take now. */
  async bytes(): Promise<number> {
    return (await this.files()).reduce((sum, f) => sum + f.bytes, 0);
  }

  /**
   * Clips older than the age limit go, then the least recently used until the cache takes at
   * most `budget` bytes; clips being made are left alone. Returns the bytes freed.
   */
  async trim(budget = this.limits.maxBytes, now = Date.now()): Promise<number> {
    let freed = 0;
    const files = (await this.files()).sort((a, b) => a.usedAt - b.usedAt);
    let total = files.reduce((sum, f) => sum + f.bytes, 0);
    for (const f of files) {
      const keep = f.work ? now - f.usedAt < STALE_WORK_MS : total <= budget && now - f.usedAt < this.limits.maxAgeMs;
      if (keep) continue;
      await rm(path.join(this.dir, f.name), { force: true });
      total -= f.bytes;
      freed += f.bytes;
    }
    return freed;
  }

  private async files(): Promise<Array<{ name: string; bytes: number; usedAt: number; work: boolean }>> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: Array<{ name: string; bytes: number; usedAt: number; work: boolean }> = [];
    for (const name of names) {
      const work = WORK_FILE.test(name);
      if (!work && !CLIP_NAME.test(name)) continue;
      const info = await stat(path.join(this.dir, name)).catch(() => null);
      if (info?.isFile()) out.push({ name, bytes: info.size, usedAt: info.mtimeMs, work });
    }
    return out;
  }
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
