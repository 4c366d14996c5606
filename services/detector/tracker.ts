// Ties detections across frames into tracked objects (greedy IoU matching per kind of
// object, as in SORT without the Kalman filter: at 5 fps a walking person's boxes overlap
// from one frame to the next), so one person walking through makes one event. Objects that
// stop moving become stationary: their event ends, and no new one starts while they stay.
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
  /** A detection this sure counts at its first sighting (a frame sooner; default: never). */
  sureScore?: number;
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
  /** The frame that shows it best (its snapshot) with its box in that frame's pixels. */
  bestFrame: BestFrame;
  /** Score summed per label seen for it (a van is seen as car and truck): the most is its label. */
  labelScores: Record<string, number>;
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

export interface BestFrame {
  seq: number;
  box: Box;
  score: number;
  width: number;
  height: number;
}

export interface TrackChanges {
  /** Confirmed (or moving again): an event starts. */
  started: Track[];
  /** A better frame (its snapshot changes) or new zones. */
  updated: Track[];
  /** Gone, or stationary long enough. */
  ended: Track[];
}

const MATCH_IOU = 0.1;
/** Centre distance, in sizes of the smaller box, within which a detection may still be the same object. */
const MATCH_DISTANCE = 0.8;
/** Boxes whose areas differ more than this are not one object a frame apart (unless they overlap well). */
const MATCH_AREA_RATIO = 2.5;
/** A frame's score must beat the best so far by this to become the snapshot (each move is an update). */
const BETTER_SCORE = 0.03;
/** Labels the model confuses for one object (a van is a car in one frame and a truck in the next). */
const KINDS: string[][] = [
  ['car', 'truck', 'bus'],
  ['bicycle', 'motorcycle'],
];
/** Boxes of one kind overlapping more than this in one frame are one object. */
const SAME_OBJECT_IOU = 0.6;

const kindOf = (label: string) => KINDS.find((k) => k.includes(label)) ?? label;
const sameKind = (a: string, b: string) => a === b || kindOf(a) === kindOf(b);
const centre = (b: Box): [number, number] => [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
const area = (b: Box) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

/** The track's box moved on by its speed to the time of this frame. */
function predict(t: Track, at: number): Box {
  const dt = Math.min(at - t.lastSeen, 2000);
  const [vx, vy] = t.velocity;
  return [t.box[0] + vx * dt, t.box[1] + vy * dt, t.box[2] + vx * dt, t.box[3] + vy * dt];
}

/**
 * > 0 when the detection may be the predicted object; higher is a better match. Distance is
 * measured in sizes of the smaller box, so a big box (a van, a group) cannot reach out and
 * take a person walking past it.
 */
function matchScore(predicted: Box, box: Box): number {
  const iou = iouOf(predicted, box);
  const [pa, ba] = [area(predicted), area(box)];
  if (Math.max(pa, ba) > MATCH_AREA_RATIO * Math.max(1, Math.min(pa, ba)) && iou < 0.5) return 0;
  const [px, py] = centre(predicted);
  const [bx, by] = centre(box);
  const size = Math.max(
    Math.min(
      Math.max(predicted[2] - predicted[0], predicted[3] - predicted[1]),
      Math.max(box[2] - box[0], box[3] - box[1]),
    ),
    1,
  );
  const distance = Math.hypot(px - bx, py - by) / size;
  if (iou < MATCH_IOU && distance > MATCH_DISTANCE) return 0;
  return iou + Math.max(0, 1 - distance / MATCH_DISTANCE) * 0.5;
}

/** One object seen as two labels of a kind in one frame (car and truck on one van): the surer one stays. */
function mergeSameObject(detections: Detection[]): Detection[] {
  const kept: Detection[] = [];
  for (const d of [...detections].sort((a, b) => b.score - a.score)) {
    const same = kept.some(
      (k) => k.label !== d.label && sameKind(k.label, d.label) && iouOf(k.box, d.box) > SAME_OBJECT_IOU,
    );
    if (!same) kept.push(d);
  }
  return kept;
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
    detections = mergeSameObject(detections);
    const pairs: Array<{ t: Track; d: Detection; cost: number }> = [];
    for (const t of this.tracks) {
      const predicted = predict(t, frame.at);
      for (const d of detections) {
        if (!sameKind(d.label, t.label)) continue;
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
        bestFrame: { seq: frame.seq, box: d.box, score: 0, width: frame.width, height: frame.height },
        labelScores: {},
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
    t.labelScores[d.label] = (t.labelScores[d.label] ?? 0) + d.score;
    t.label = Object.entries(t.labelScores).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    const foot = footOf(d.box, frame.width, frame.height);
    t.path.push(foot);
    if (t.path.length > PATH_KEPT) t.path.shift();
    t.topScore = Math.max(t.topScore, d.score);
    // The snapshot and its box move together, and only by a clear margin: each move is an update.
    const better = t.hits === 1 || d.score > t.bestFrame.score + BETTER_SCORE;
    if (better) t.bestFrame = { seq: frame.seq, box: d.box, score: d.score, width: frame.width, height: frame.height };
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
    const sureAtOnce = t.hits === 1 && d.score >= (this.options.sureScore ?? Infinity);
    const justConfirmed = t.hits === this.options.minHits || sureAtOnce;
    if (
      !t.eventOpen &&
      (t.hits >= this.options.minHits || sureAtOnce) &&
      !stationaryLong &&
      (justConfirmed || t.stationarySince === undefined)
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
