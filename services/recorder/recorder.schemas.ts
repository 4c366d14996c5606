// What the recorder tells others: recorded segments (the recording.segment event, sync, playback)
// and clip files (cached exports, named by what they hold).
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { SLUG } from '../../lib/ids.ts';
import { CameraId } from '../cameras/cameras.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

/** One recorded file of a camera. */
export interface Segment {
  camera: string;
  path: string; // relative to the media folder
  start: number; // ms since epoch
  end: number;
  bytes: number;
  /** Where the file is: absent, the hot disk (media/); 'archive', the archive tier (same path under it). */
  tier?: 'archive';
}

export type Tier = 'hot' | 'archive';
export const tierOf = (s: Pick<Segment, 'tier'>): Tier => s.tier ?? 'hot';

/**
 * ok: moves go on. full: under its floor or over its quota (its oldest go; nothing moves in).
 * unmounted, missing, unwritable: nothing moves, its recordings cannot be played or removed
 * until it is back; recording goes on on the hot disk.
 */
export type ArchiveState = 'ok' | 'full' | 'unmounted' | 'missing' | 'unwritable';

/** The archive tier as the System page, health and the operator see it. */
export interface ArchiveStatus {
  path: string;
  state: ArchiveState;
  /** What is wrong, in words; null when ok. */
  reason: string | null;
  since: string;
  totalBytes: number | null;
  freeBytes: number | null;
}

export interface Range {
  start: number;
  end: number;
}

export interface ClipRequest {
  camera: string;
  from: number; // ms
  to: number;
}

/** Clip files are named by what they hold, so a repeated request reuses the file. */
export const clipName = (r: ClipRequest) => `${r.camera}-${r.from}-${r.to}.mp4`;
export const CLIP_NAME = new RegExp(`^${SLUG}-\\d{13}-\\d{13}\\.mp4$`);

/** Not zod's "expected date, received Date": say what a time looks like. */
const ISO_TIME = 'expected an ISO 8601 time, such as 2026-11-29T18:30:00Z';

export const TimeRangeInput = z
  .strictObject({
    camera: CameraId,
    from: z.coerce.date({ error: ISO_TIME }).describe('ISO 8601 time'),
    to: z.coerce.date({ error: ISO_TIME }).describe('ISO 8601 time'),
  })
  .refine((r) => r.to > r.from, { message: '"to" must be after "from"', path: ['to'] })
  .refine((r) => r.to.getTime() - r.from.getTime() <= 31 * 86_400_000, {
    message: 'at most 31 days at once',
    path: ['to'],
  });

/** A file the recorder serves: a segment by its path under media/, or a clip by its name. */
export const FileInput = z.strictObject({
  kind: z.enum(['segment', 'clip']),
  name: z.string().max(200),
  /** First and last byte (inclusive), for HTTP ranges. */
  start: z.number().int().min(0).optional(),
  end: z.number().int().min(0).optional(),
});

declare module '../../lib/bus.ts' {
  interface Events {
    /** A segment file closed by its ffmpeg (streams emits it; one recorder and one sync take it). */
    'recording.segment.closed': Segment;
    /** A segment found on disk at start that the index did not know (a crash cut it short). */
    'recording.segment.healed': Segment;
    /** The archive tier came, went, filled or is ok again. */
    'recording.archive.changed': ArchiveStatus;
    /** The hot disk went under its floor with nothing left to delete (full), or came back. */
    'recording.disk.changed': { full: boolean; freeBytes: number; minFreeBytes: number };
  }
  interface Actions {
    /** Makes (or finds) the clip of a time range on the recording node's disk. */
    'recorder.clip': { input: z.input<typeof TimeRangeInput>; answer: { name: string; bytes: number } };
    /** The segments of a camera between two times, oldest first (times as ISO strings). */
    'recorder.segments': {
      input: z.input<typeof TimeRangeInput>;
      answer: Array<Omit<Segment, 'start' | 'end'> & { start: string; end: string }>;
    };
    /** A segment or a clip as a byte stream over the bus, whole or a range. */
    'recorder.file': { input: z.input<typeof FileInput>; answer: Readable };
  }
}
