// The camera's own motion events: what a camera's motion engine reports, as start and end.
// On this stand-in the engine is the box's motion detector run on small frames of the source;
// a camera with a hardware engine (or a PIR) feeds `moved()` from it instead.
import { EventEmitter } from 'node:events';
import { MotionDetector } from '../lib/vision/motion.ts';
import type { Box, Frame } from '../lib/vision/yolox.ts';

export interface MotionSensorOptions {
  /** Frames in a row with motion before an event starts (one frame can be noise). */
  startFrames: number;
  /** Seconds without motion that end an event. */
  quietSeconds: number;
  /** Grey-level change that counts (1..255) and the smallest region, % of the frame. */
  threshold: number;
  minAreaPercent: number;
}

export const MOTION_DEFAULTS: MotionSensorOptions = {
  startFrames: 2,
  quietSeconds: 10,
  threshold: 25,
  minAreaPercent: 0.3,
};

export interface MotionReport {
  /** Unique on this camera (the boot's time, then a count); with the camera's id it names the event at the box. */
  id: string;
  state: 'start' | 'end';
  /** Where it moved, relative to the frame [x1, y1, x2, y2]: the union of the moving regions so far. */
  box: Box;
  at: string;
}

export class MotionSensor extends EventEmitter<{ motion: [MotionReport] }> {
  private readonly detector: MotionDetector;
  private streak = 0;
  private lastMotionAt = 0;
  private current: { id: string; box: Box } | undefined;
  private count = 0;
  private readonly bootStamp = Date.now().toString(36);
  private quietTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: MotionSensorOptions) {
    super();
    // At 2 frames a second the background must follow faster than at the detector's 5.
    this.detector = new MotionDetector({
      threshold: options.threshold,
      minAreaPercent: options.minAreaPercent,
      masks: [],
      backgroundRate: 0.3,
    });
  }

  /** One frame of the source (RGB24). */
  frame(frame: Frame, now = Date.now()): void {
    const boxes = this.detector
      .detect(frame)
      .map((b) => b.map((v, i) => v / (i % 2 ? frame.height : frame.width)) as Box);
    this.moved(boxes, now);
  }

  /** What the engine saw in one look: the regions that moved (none: still). */
  moved(boxes: Box[], now = Date.now()): void {
    if (boxes.length === 0) {
      this.streak = 0;
      return;
    }
    this.lastMotionAt = now;
    const union = boxes.reduce(unite);
    if (this.current) {
      this.current.box = unite(this.current.box, union).map(round) as Box;
      this.armQuiet();
      return;
    }
    if (++this.streak < this.options.startFrames) return;
    this.current = { id: `${this.bootStamp}-${++this.count}`, box: union.map(round) as Box };
    this.emit('motion', {
      id: this.current.id,
      state: 'start',
      box: this.current.box,
      at: new Date(now).toISOString(),
    });
    this.armQuiet();
  }

  private armQuiet(): void {
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.end(this.lastMotionAt), this.options.quietSeconds * 1000);
    this.quietTimer.unref();
  }

  /** Ends the event in progress (quiet long enough, or the source stopped). */
  end(at = Date.now()): void {
    clearTimeout(this.quietTimer);
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    this.streak = 0;
    this.emit('motion', { id: c.id, state: 'end', box: c.box, at: new Date(at).toISOString() });
  }
}

const round = (v: number) => Math.round(v * 10000) / 10000;
/** The smallest box holding both. */
const unite = (a: Box, b: Box): Box => [
  Math.min(a[0], b[0]),
  Math.min(a[1], b[1]),
  Math.max(a[2], b[2]),
  Math.max(a[3], b[3]),
];
