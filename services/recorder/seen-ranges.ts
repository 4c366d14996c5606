// Footage is kept by what was seen in it: each event (with its pre- and post-roll) and each span
// of motion becomes a range with the days the camera keeps footage of its kind: alerts
// (objects of alert review items), detections, motion with no object (the camera's own motion
// events, the detector's motion spans).
import { CAMERA_MOTION, type ReviewItem, type StoredEvent } from '../events/events.schemas.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import type { MotionSpan } from '../detector/detector.schemas.ts';
import type { EventRange } from './retention.ts';

export interface SeenOnCamera {
  events: Array<Pick<StoredEvent, 'id' | 'label' | 'start' | 'end'>>;
  items: Array<Pick<ReviewItem, 'objects'>>;
  motion: MotionSpan[];
  /** The camera's recording settings; undefined for a camera no longer on the box. */
  recording: Camera['recording'] | undefined;
  preRollMs: number;
  postRollMs: number;
  now: number;
}

export function seenRanges(seen: SeenOnCamera): EventRange[] {
  const { recording: rec, preRollMs, postRollMs } = seen;
  const alerts = new Set(
    seen.items.flatMap((i) => i.objects.filter((o) => o.severity === 'alert').map((o) => o.event)),
  );
  const ofEvents = seen.events.map((e): EventRange => {
    const days =
      e.label === CAMERA_MOTION
        ? (rec?.motionRetainDays ?? rec?.retainDays)
        : alerts.has(e.id)
          ? (rec?.alertRetainDays ?? rec?.eventRetainDays)
          : rec?.eventRetainDays;
    const bounds: [number, number] = [
      Date.parse(e.start) - preRollMs,
      (e.end ? Date.parse(e.end) : seen.now) + postRollMs,
    ];
    return days === undefined ? bounds : [...bounds, days];
  });
  // Motion with no object keeps its footage longer than plain footage only when the camera says so.
  const motionDays = rec?.motionRetainDays;
  const ofMotion =
    motionDays == null ? [] : seen.motion.map((m): EventRange => [m.start, m.end + postRollMs, motionDays]);
  return [...ofEvents, ...ofMotion];
}
