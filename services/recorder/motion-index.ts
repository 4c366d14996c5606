// Where each camera's picture moved (the detector's motion spans), kept beside the segment
// index: the recordings timeline shows it, and retention keeps footage with motion for the
// camera's motionRetainDays. Keyed <camera>/<start>; a span is at most a minute long.
import type { Collection } from '../../lib/store.ts';
import { MOTION_SPAN_MAX_MS, type MotionSpan } from '../detector/detector.schemas.ts';
import type { Range } from './recorder.schemas.ts';
import { cameraKey, camerasIn, mergedRanges } from './segment-index.ts';

export class MotionIndex {
  constructor(private readonly spans: Collection<MotionSpan>) {}

  /** Not flushed per span: a few seconds of motion lost with a power cut cost nothing stored. */
  add(span: MotionSpan): Promise<void> {
    return this.spans.put(cameraKey(span.camera, span.start), span, { sync: false });
  }

  /** Spans of a camera that overlap [from, to), oldest first. */
  async list(camera: string, from: number, to: number): Promise<MotionSpan[]> {
    const spans = await this.spans.values({
      gte: cameraKey(camera, Math.max(0, from - MOTION_SPAN_MAX_MS)),
      lt: cameraKey(camera, to),
    });
    return spans.filter((s) => s.end > from);
  }

  /** The same, as ranges with the short gaps between them closed. */
  async ranges(camera: string, from: number, to: number): Promise<Range[]> {
    return mergedRanges(await this.list(camera, from, to), from, to);
  }

  /** Drops a camera's spans that ended before `t` (its footage is gone). */
  async dropBefore(camera: string, t: number): Promise<number> {
    const old = (await this.spans.values({ gte: cameraKey(camera, 0), lt: cameraKey(camera, t) })).filter(
      (s) => s.end < t,
    );
    await this.spans.delMany(
      old.map((s) => cameraKey(s.camera, s.start)),
      { sync: false },
    );
    return old.length;
  }

  /** Cameras with spans, one seek each. */
  cameras(): Promise<string[]> {
    return camerasIn(this.spans);
  }
}
