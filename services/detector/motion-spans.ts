// Where a camera's picture moved, as spans of time: a span opens at the first moving frame and
// closes once the picture has been still for QUIET_MS (or its stream ended). A long one is cut
// every MAX_MS, so the timeline and retention hear of it within a minute. The recorder keeps
// them: the recordings timeline shows them, and footage with motion and nothing else is kept
// for the camera's motionRetainDays.
import { MOTION_SPAN_MAX_MS, type MotionSpan } from './detector.schemas.ts';

export const QUIET_MS = 5000;
export const MAX_MS = MOTION_SPAN_MAX_MS;
/** A span of one moving frame still covers this much of the timeline. */
const LEAST_MS = 1000;

export class MotionSpans {
  private open: { start: number; last: number } | undefined;

  constructor(
    private readonly camera: string,
    private readonly emit: (span: MotionSpan) => void,
  ) {}

  /** A frame the motion detector looked at, with its time (ms) and whether it moved. */
  frame(at: number, moved: boolean): void {
    if (this.open && at - this.open.last > QUIET_MS) this.close();
    if (!moved) return;
    if (!this.open) this.open = { start: at, last: at };
    this.open.last = at;
    if (at - this.open.start >= MAX_MS) {
      this.emit({ camera: this.camera, start: this.open.start, end: at });
      this.open = { start: at, last: at };
    }
  }

  /** The stream ended (or jumped in time): an open span ends at its last moving frame. */
  close(): void {
    if (!this.open) return;
    const { start, last } = this.open;
    this.open = undefined;
    this.emit({ camera: this.camera, start, end: Math.max(last, start + LEAST_MS) });
  }
}
