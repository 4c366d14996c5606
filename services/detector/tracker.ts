// Ties detections across frames into tracked objects (greedy IoU matching per label, as
// in SORT without the Kalman filter: at 5 fps a walking person's boxes overlap from one
// frame to the next), so one person walking through makes one event. Objects that stop
// moving become stationary: their event ends, and no new one starts while they stay.
import { randomBytes } from 'node:crypto';
import { footOf, insidePolygon, type Polygon } from '../../lib/vision/geometry.ts';
import { iouOf, type Box, type Detection } from '../../lib/vision/yolox.ts';

export interface Zone {
  name: string;
  points: Polygon;
}

export interface TrackerOptions {
  /** Frames with inference an object may be missed before it has left. */
  maxMisses: number;
  /** Seen this many times before it counts (one-frame false positives make no event). */
  minHits: number;
  /** Moving less than this (share of the frame) over the last observations: stationary. */
  stationaryMove: number;
  /** Stationary this long: its event ends. */
  stationaryEndMs: number;
  zones: Zone[];
}

export interface Track {
  id: string;
  label: string;
  box: Box;
  score: number;
  topScore: number;
  /** Frame with the top score: the event's snapshot. */
  bestFrame: { seq: number; box: Box };
  /** Size of the frames it was seen in (boxes are in their pixels). */
  frameSize: { width: number; height: number };
  firstSeen: number;
  lastSeen: number;
  hits: number;
  misses: number;
  /** Recent foot points, relative to the frame. */
  path: Array<[number, number]>;
  stationarySince: number | undefined;
  zones: string[];
  /** The event of this object, while it has one open. */
  eventOpen: boolean;
  /** Box centre speed, pixels per ms (smoothed): where to look for it in the next frame. */
  velocity: [number, number];
}

export interface TrackChanges {
  /** Confirmed (or moving again): an event starts. */
  started: Track[];
  /** Better score or new zones. */
  updated: Track[];
  /** Gone, or stationary long enough. */
  ended: Track[];
}

const MATCH_IOU = 0.1;
/** Centre distance, in box sizes, within which a detection may still be the same object. */
const MATCH_DISTANCE = 0.8;

const centre = (b: Box): [number, number] => [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];

/** The track's box moved on by its speed to the time of this frame. */
function predict(t: Track, at: number): Box {
  const dt = Math.min(at - t.lastSeen, 2000);
  const [vx, vy] = t.velocity;
  return [t.box[0] + vx * dt, t.box[1] + vy * dt, t.box[2] + vx * dt, t.box[3] + vy * dt];
}

/** > 0 when the detection may be the predicted object; higher is a better match. */
function matchScore(predicted: Box, box: Box): number {
  const iou = iouOf(predicted, box);
  const [px, py] = centre(predicted);
  const [bx, by] = centre(box);
  const size = Math.max(predicted[2] - predicted[0], predicted[3] - predicted[1], 1);
  const distance = Math.hypot(px - bx, py - by) / size;
  if (iou < MATCH_IOU && distance > MATCH_DISTANCE) return 0;
  return iou + Math.max(0, 1 - distance / MATCH_DISTANCE) * 0.5;
}
const PATH_KEPT = 10;

export class Tracker {
  readonly tracks: Track[] = [];

  constructor(private readonly options: TrackerOptions) {}

  /** Whether any object is moving: then inference runs even without motion. */
  get hasMoving(): boolean {
    return this.tracks.some((t) => t.stationarySince === undefined);
  }

  /**
   * One frame's detections. `minNewScore` says which are sure enough to start an object;
   * weaker ones only keep a known object alive (as ByteTrack does), so an object whose
   * score dips for a frame stays one object.
   */
  update(
    detections: Detection[],
    frame: { seq: number; at: number; width: number; height: number },
    minNewScore: (label: string) => number = () => 0,
  ): TrackChanges {
    const changes: TrackChanges = { started: [], updated: [], ended: [] };
    const pairs: Array<{ t: Track; d: Detection; cost: number }> = [];
    for (const t of this.tracks) {
      const predicted = predict(t, frame.at);
      for (const d of detections) {
        if (d.label !== t.label) continue;
        const cost = matchScore(predicted, d.box);
        if (cost > 0) pairs.push({ t, d, cost });
      }
    }
    const usedTracks = new Set<Track>();
    const usedDetections = new Set<Detection>();
    for (const { t, d } of pairs.sort((a, b) => b.cost - a.cost)) {
      if (usedTracks.has(t) || usedDetections.has(d)) continue;
      usedTracks.add(t);
      usedDetections.add(d);
      this.observe(t, d, frame, changes);
    }
    for (const d of detections) {
      if (usedDetections.has(d) || d.score < minNewScore(d.label)) continue;
      const t: Track = {
        id: `${frame.at.toString(36)}-${randomBytes(3).toString('hex')}`,
        label: d.label,
        box: d.box,
        score: d.score,
        topScore: 0,
        bestFrame: { seq: frame.seq, box: d.box },
        frameSize: { width: frame.width, height: frame.height },
        firstSeen: frame.at,
        lastSeen: frame.at,
        hits: 0,
        misses: 0,
        path: [],
        stationarySince: undefined,
        zones: [],
        eventOpen: false,
        velocity: [0, 0],
      };
      this.tracks.push(t);
      this.observe(t, d, frame, changes);
    }
    for (const t of [...this.tracks]) {
      if (usedTracks.has(t) || t.lastSeen === frame.at) continue;
      t.misses++;
      if (t.misses > this.options.maxMisses) {
        this.tracks.splice(this.tracks.indexOf(t), 1);
        if (t.eventOpen) {
          t.eventOpen = false;
          changes.ended.push(t);
        }
      }
    }
    return changes;
  }

  /** Every open event ends (the stream stopped). */
  endAll(): Track[] {
    const open = this.tracks.filter((t) => t.eventOpen);
    for (const t of open) t.eventOpen = false;
    this.tracks.length = 0;
    return open;
  }

  private observe(
    t: Track,
    d: Detection,
    frame: { seq: number; at: number; width: number; height: number },
    changes: TrackChanges,
  ): void {
    const dt = frame.at - t.lastSeen;
    if (dt > 0 && t.hits > 0) {
      const [ox, oy] = centre(t.box);
      const [nx, ny] = centre(d.box);
      t.velocity = [t.velocity[0] * 0.5 + ((nx - ox) / dt) * 0.5, t.velocity[1] * 0.5 + ((ny - oy) / dt) * 0.5];
    }
    t.box = d.box;
    t.score = d.score;
    t.lastSeen = frame.at;
    t.misses = 0;
    t.hits++;
    t.frameSize = { width: frame.width, height: frame.height };
    const foot = footOf(d.box, frame.width, frame.height);
    t.path.push(foot);
    if (t.path.length > PATH_KEPT) t.path.shift();
    let better = false;
    if (d.score > t.topScore) {
      better = d.score > t.topScore + 0.05;
      t.topScore = d.score;
      t.bestFrame = { seq: frame.seq, box: d.box };
    }
    const zonesBefore = t.zones.length;
    for (const zone of this.options.zones)
      if (!t.zones.includes(zone.name) && insidePolygon(foot, zone.points)) t.zones.push(zone.name);

    // Stationary: the feet have stayed within a small circle over the last observations.
    const [x0, y0] = t.path[0]!;
    const still =
      t.path.length >= PATH_KEPT && t.path.every(([x, y]) => Math.hypot(x - x0, y - y0) < this.options.stationaryMove);
    if (!still) t.stationarySince = undefined;
    else t.stationarySince ??= frame.at;

    const stationaryLong =
      t.stationarySince !== undefined && frame.at - t.stationarySince >= this.options.stationaryEndMs;
    if (
      !t.eventOpen &&
      t.hits >= this.options.minHits &&
      !stationaryLong &&
      (t.hits === this.options.minHits || t.stationarySince === undefined)
    ) {
      t.eventOpen = true;
      changes.started.push(t);
    } else if (t.eventOpen && stationaryLong) {
      t.eventOpen = false;
      changes.ended.push(t);
    } else if (t.eventOpen && (better || t.zones.length !== zonesBefore)) {
      changes.updated.push(t);
    }
  }
}
