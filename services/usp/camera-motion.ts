// A camera agent's own motion events (agent/motion) made events of its camera, beside the
// detector's: label "motion", the box's clock (a camera's may be off), the live snapshot at the
// start, the camera's zones by where it moved. One open motion event per camera.
import { call } from '../../lib/bus.ts';
import { unlessRefused } from '../../lib/refusals.ts';
import type { ServiceBroker } from 'moleculer';
import { z } from 'zod';
import type { Camera } from '../cameras/cameras.schemas.ts';
import { footOf, insidePolygon } from '../../lib/vision/geometry.ts';
import { CAMERA_MOTION, EventFields, type ObjectEvent } from '../events/events.schemas.ts';

const Unit = z.number().min(0).max(1);
export const MotionReport = z.looseObject({
  id: z.string().regex(/^[a-z0-9-]{1,40}$/, '1-40 lower-case letters, digits or dashes'),
  state: z.enum(['start', 'end']),
  box: z.tuple([Unit, Unit, Unit, Unit]),
});
export type MotionReport = z.infer<typeof MotionReport>;

/** Starts closer together than this from one camera are a flapping sensor: dropped. */
const MIN_START_GAP_MS = 1000;
/** Seconds a motion event waits for its camera's first picture. */
const LATE_SNAPSHOT_TRIES = 10;

export class CameraMotion {
  /** camera -> its open motion event, and when the last start came. */
  private readonly open = new Map<string, string>();
  private readonly lastStart = new Map<string, number>();

  constructor(
    private readonly broker: ServiceBroker,
    private readonly log: { warn(m: string): void; info(m: string): void; debug(m: string): void },
  ) {}

  async receive(device: string, payload: Buffer): Promise<void> {
    let report: MotionReport;
    try {
      const parsed = MotionReport.safeParse(JSON.parse(payload.toString('utf8')));
      if (!parsed.success)
        return this.log.warn(
          `camera motion from ${device} refused: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'message'}: ${i.message}`).join('; ')}`,
        );
      report = parsed.data;
    } catch {
      return this.log.warn(`camera motion from ${device} refused: not JSON`);
    }
    // The agent's camera has the device's id (it was made at its first hello).
    const [camera] = await call(this.broker, 'cameras.specs', { id: device }).catch((err: Error) => {
      this.log.warn(`camera motion from ${device} not recorded: the camera registry is not reachable (${err.message})`);
      return [] as Camera[];
    });
    if (!camera) return this.log.warn(`camera motion from ${device} refused: no camera "${device}"`);
    if (!camera.enabled) return;
    const id = `${camera.id}-m-${report.id}`;
    const now = Date.now();
    if (report.state === 'start') {
      if (now - (this.lastStart.get(camera.id) ?? 0) < MIN_START_GAP_MS) return;
      this.lastStart.set(camera.id, now);
      const previous = this.open.get(camera.id);
      if (previous && previous !== id) await this.end(previous, now, camera);
      this.open.set(camera.id, id);
      const snapshot = await this.snapshot(camera.id);
      const event: ObjectEvent = {
        type: 'start',
        id,
        camera: camera.id,
        label: CAMERA_MOTION,
        topScore: 1,
        box: report.box,
        zones: zonesOf(camera, report.box),
        start: new Date(now).toISOString(),
        end: null,
        stationary: false,
        ...(snapshot ? { snapshot } : {}),
      };
      await call(this.broker, 'events.record', event);
      // A camera that has just come online may have no picture yet: one follows when it has.
      if (!snapshot) void this.lateSnapshot(event);
      return;
    }
    if (this.open.get(camera.id) === id) this.open.delete(camera.id);
    await this.end(id, now, camera, report.box);
  }

  private snapshot(camera: string): Promise<string | undefined> {
    return call(this.broker, 'streams.snapshot', { id: camera })
      .then((s) => s.jpegBase64)
      .catch((err: Error) => {
        // A camera just online may have no picture yet: tried again (lateSnapshot), so not a warning.
        this.log.debug(`motion on ${camera}: no snapshot yet: ${err.message}`);
        return undefined;
      });
  }

  private async lateSnapshot(event: ObjectEvent): Promise<void> {
    for (let i = 0; i < LATE_SNAPSHOT_TRIES; i++) {
      await new Promise((r) => setTimeout(r, 1000).unref());
      const snapshot = await this.snapshot(event.camera);
      if (!snapshot) continue;
      await call(this.broker, 'events.record', { type: 'update', id: event.id, camera: event.camera, snapshot }).catch(
        (err: Error) => this.log.warn(`motion event ${event.id}: snapshot not stored: ${err.message}`),
      );
      return;
    }
  }

  /** Ends a motion event the box knows (one from before a restart of the box was ended then). */
  private async end(id: string, now: number, camera: Camera, box?: MotionReport['box']): Promise<void> {
    const e = await unlessRefused(call(this.broker, 'events.get', { id }));
    if (!e || e.end) return;
    const fields = EventFields.parse(e);
    const zones = box ? [...new Set([...e.zones, ...zonesOf(camera, box)])] : e.zones;
    await call(this.broker, 'events.record', {
      ...fields,
      type: 'end',
      box: box ?? e.box,
      zones,
      end: new Date(now).toISOString(),
    } satisfies ObjectEvent);
  }
}

/** The camera's zones that hold the bottom centre of where it moved (as the detector places objects). */
const zonesOf = (camera: Camera, box: MotionReport['box']) =>
  camera.detection.zones.filter((z) => insidePolygon(footOf(box, 1, 1), z.points)).map((z) => z.name);
