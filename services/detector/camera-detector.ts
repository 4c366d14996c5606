// Detection for one camera: frames from its live stream, motion first, the model only
// where there is motion or a moving object, tracks into events. The newest frame wins:
// a frame that comes while the model is busy replaces the one waiting, and is counted.
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { LoggerInstance } from 'moleculer';
import { FrameSource, type DecodedFrame } from './frames.ts';
import { MotionDetector } from '../../lib/vision/motion.ts';
import { Tracker, type BestFrame, type Track } from './tracker.ts';
import { footOf, insidePolygon } from '../../lib/vision/geometry.ts';
import type { Box, YoloxModel } from '../../lib/vision/yolox.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import type { ObjectEvent } from '../events/events.schemas.ts';
import type { DetectorStats, MotionSpan } from './detector.schemas.ts';
import { MotionSpans } from './motion-spans.ts';
import type { InferenceQueue } from './inference-queue.ts';

export interface DetectorOptions {
  ffmpegPath: string;
  /** Hardware decoding for the frame decoder (see hardware-decoding.ts), before its input. */
  decoderInputArgs?: string[];
  snapshotWidth: number;
  minScore: number;
  /** Re-check stationary objects this often even without motion, ms. */
  stationaryCheckMs: number;
  stationaryEndMs: number;
}

const REOPEN_MS = 2000;
/** No frame for this long (the camera dropped or stalled): open events end where last seen. */
const NO_FRAMES_END_MS = 10_000;
/** Frames this far apart in time are not one scene: what was tracked before has gone. */
const TIME_JUMP_MS = 3000;
const TRACK_SCORE_FACTOR = 0.6;
/** No inference on this camera for this long: its motion is new, and goes to the model first. */
const FRESH_LOOK_MS = 1000;
/** The model this sure of an object in a moving part of the picture: its event starts a frame sooner. */
const SURE_SCORE = 0.75;

export class CameraDetector extends EventEmitter<{ event: [ObjectEvent]; motion: [MotionSpan] }> {
  private source: FrameSource | undefined;
  private motion: MotionDetector;
  private tracker: Tracker;
  private busy = false;
  private pending: DecodedFrame | undefined;
  private lastInferenceAt = 0;
  private lastDropAt = 0;
  private inferenceTotalMs = 0;
  private stopped = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private lastFrameAt = 0;
  private lastProcessedAt: number | undefined;
  /** Changes when the stream ends: a frame of an earlier stream still in the model is dropped. */
  private generation = 0;
  /** Per open object, the frame whose picture was sent: the event's box is always that frame's. */
  private shown = new Map<string, BestFrame>();
  /** Tracks whose event has started (and not ended). */
  private announced = new Set<string>();
  private readonly motionSpans: MotionSpans;
  readonly counts = { frames: 0, motionFrames: 0, inferences: 0, dropped: 0 };

  constructor(
    readonly camera: Camera,
    private readonly model: YoloxModel,
    /** Shared by every camera of this node: the model runs for them in turn. */
    private readonly inferences: InferenceQueue,
    private readonly options: DetectorOptions,
    private readonly openFeed: () => Promise<Readable>,
    private readonly log: LoggerInstance,
  ) {
    super();
    const d = camera.detection;
    this.motion = new MotionDetector({ threshold: d.motionThreshold, minAreaPercent: 0.05, masks: d.motionMasks });
    this.motionSpans = new MotionSpans(camera.id, (span) => this.emit('motion', span));
    this.tracker = new Tracker({
      maxMisses: Math.max(3, Math.round(d.fps * 2)),
      minHits: 2,
      sureScore: SURE_SCORE,
      stationaryMove: 0.02,
      stationaryEndMs: options.stationaryEndMs,
      zones: d.zones,
    });
  }

  get stats(): DetectorStats {
    return {
      ...this.counts,
      inferenceMs: this.counts.inferences
        ? Math.round((this.inferenceTotalMs / this.counts.inferences) * 10) / 10
        : null,
      inferenceSeconds: Math.round(this.inferenceTotalMs) / 1000,
      behind: Date.now() - this.lastDropAt < 10_000,
      activeObjects: this.tracker.tracks.filter((t) => t.eventOpen).length,
    };
  }

  start(): void {
    this.stopped = false;
    void this.open();
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastFrameAt <= NO_FRAMES_END_MS) return;
      if (this.tracker.tracks.length > 0) this.streamEnded();
      else this.motionSpans.close();
    }, 1000).unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reopenTimer);
    clearInterval(this.watchdog);
    this.source?.close();
    this.source = undefined;
    this.streamEnded();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    let feed: Readable;
    try {
      feed = await this.openFeed();
    } catch (err) {
      this.log.debug(`${this.camera.id}: no live stream for detection yet (${(err as Error).message}); retrying`);
      this.reopenTimer = setTimeout(() => void this.open(), REOPEN_MS);
      return;
    }
    if (this.stopped) {
      feed.destroy();
      return;
    }
    const source = new FrameSource(feed, {
      ffmpegPath: this.options.ffmpegPath,
      camera: this.camera.id,
      inputArgs: this.options.decoderInputArgs,
      fps: this.camera.detection.fps,
      modelSize: this.model.size,
      snapshotWidth: this.options.snapshotWidth,
    });
    this.source = source;
    // Frames a closed source still had on its way belong to a stream that has ended.
    source.on('frame', (frame) => this.source === source && this.onFrame(frame));
    source.on('error', (err) => this.log.warn(`${this.camera.id}: detection frames: ${err.message}`));
    // The stream ended (camera stopped, or its streams node went away): events end, then try again.
    feed.once('close', () => {
      if (this.source !== source) return;
      source.close();
      this.source = undefined;
      this.streamEnded();
      if (!this.stopped) this.reopenTimer = setTimeout(() => void this.open(), REOPEN_MS);
    });
  }

  private onFrame(frame: DecodedFrame): void {
    this.counts.frames++;
    this.lastFrameAt = Date.now();
    if (this.busy) {
      if (this.pending) {
        this.counts.dropped++;
        this.lastDropAt = Date.now();
      }
      this.pending = frame;
      return;
    }
    void this.process(frame);
  }

  private async process(frame: DecodedFrame): Promise<void> {
    this.busy = true;
    try {
      const image = { data: frame.rgb, width: frame.width, height: frame.height };
      const moved = this.motion.detect(image).length > 0;
      // A scene cut (the camera moved to a preset, a stream switched) or a jump in time ends
      // every track here: nobody in the new picture is who was tracked in the old one.
      const jumped = this.lastProcessedAt !== undefined && frame.at - this.lastProcessedAt > TIME_JUMP_MS;
      this.lastProcessedAt = frame.at;
      if (this.motion.sceneChanged || jumped) this.endAll();
      if (jumped) this.motionSpans.close();
      // A scene cut is the camera moving, not something in front of it.
      this.motionSpans.frame(frame.at, moved && !this.motion.sceneChanged);
      if (moved) this.counts.motionFrames++;
      const recheck =
        this.tracker.tracks.length > 0 && frame.at - this.lastInferenceAt >= this.options.stationaryCheckMs;
      if (!moved && !this.tracker.hasMoving && !recheck) return;
      this.source?.hold(frame.seq);
      const generation = this.generation;
      const d = this.camera.detection;
      const minScores: Record<string, number> & { default: number } = {
        default: this.options.minScore,
        ...d.minScores,
      };
      // Weaker detections are asked for too: they keep known objects alive, never start one.
      const trackScores = Object.fromEntries(
        Object.entries(minScores).map(([k, v]) => [k, v * TRACK_SCORE_FACTOR]),
      ) as typeof minScores;
      // Urgent: following objects, or motion that has just begun (what starts an event); motion
      // that goes on with nothing found in it waits behind them.
      const freshLook = frame.at - this.lastInferenceAt >= FRESH_LOOK_MS;
      const detected = await this.inferences.run(
        this.camera.id,
        () => freshLook || this.tracker.tracks.length > 0,
        async () => {
          const spent = { ms: 0 };
          const result = await this.model.detect(image, trackScores, undefined, spent);
          this.inferenceTotalMs += spent.ms;
          return result;
        },
      );
      const found = detected.filter((det) => {
        if (!d.labels.includes(det.label)) return false;
        const foot = footOf(det.box, frame.width, frame.height);
        return !d.objectMasks.some((mask) => insidePolygon(foot, mask));
      });
      this.counts.inferences++;
      if (generation !== this.generation) return; // its stream ended meanwhile
      this.lastInferenceAt = frame.at;
      const changes = this.tracker.update(found, frame, (label) => minScores[label] ?? minScores.default);
      const pictures = await this.newPictures([...changes.started, ...changes.updated]);
      // The stream ended while the pictures were made: its events have ended without these.
      if (generation !== this.generation) return;
      for (const t of changes.started) this.emitEvent('start', t, pictures.get(t.id));
      for (const t of changes.updated) this.emitEvent('update', t, pictures.get(t.id));
      for (const t of changes.ended) this.emitEvent('end', t);
    } catch (err) {
      this.log.warn(`${this.camera.id}: detection failed on a frame: ${(err as Error).message}`);
    } finally {
      this.busy = false;
      const next = this.pending;
      this.pending = undefined;
      if (next && !this.stopped) void this.process(next);
    }
  }

  /**
   * The stream is gone: open events end, and a frame waiting or still in the model is given up
   * (its objects would start events after their end).
   */
  private streamEnded(): void {
    this.pending = undefined;
    this.generation++;
    this.endAll();
    this.motionSpans.close();
  }

  private endAll(): void {
    for (const t of this.tracker.endAll()) this.emitEvent('end', t);
  }

  /** JPEGs of the tracks' best frames, where that is not the picture already sent. */
  private async newPictures(tracks: Track[]): Promise<Map<string, Buffer>> {
    const pictures = new Map<string, Buffer>();
    for (const t of tracks) {
      if (this.shown.get(t.id)?.seq === t.bestFrame.seq) continue;
      const jpeg = await this.source?.jpeg(t.bestFrame.seq);
      if (jpeg) pictures.set(t.id, jpeg);
    }
    return pictures;
  }

  private emitEvent(type: ObjectEvent['type'], t: Track, jpeg?: Buffer): void {
    // Only an event that was announced ends (one whose stream ended while its picture was made was not).
    if (type === 'start') this.announced.add(t.id);
    else if (!this.announced.has(t.id)) return;
    if (type === 'end') this.announced.delete(t.id);
    // A picture is sent with the frame's own box, or the box stays with the picture already sent.
    if (jpeg) this.shown.set(t.id, t.bestFrame);
    const frame = this.shown.get(t.id) ?? t.bestFrame;
    if (type === 'end') this.shown.delete(t.id);
    const box = frame.box.map((v, i) => Math.round((v / (i % 2 ? frame.height : frame.width)) * 10000) / 10000) as Box;
    this.emit('event', {
      type,
      id: `${this.camera.id}-${t.id}`,
      camera: this.camera.id,
      label: t.label,
      topScore: Math.round(t.topScore * 1000) / 1000,
      box,
      zones: [...t.zones],
      start: new Date(t.firstSeen).toISOString(),
      end: type === 'end' ? new Date(t.lastSeen).toISOString() : null,
      stationary: t.stationarySince !== undefined,
      ...(jpeg ? { snapshot: jpeg.toString('base64') } : {}),
    });
  }
}
