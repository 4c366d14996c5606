// The offsite tier: recordings in the cloud, under <box>/<camera>/<day>/recordings/. The plan
// sends all footage, or only the footage of alert review items (each from its pre-roll to its
// post-roll: segments that closed before the alert opened are sent when it opens, the rest as
// they close); and it may keep them there for a number of days, past which a sweep deletes them
// from each target (the rest of the box's objects are left alone).
import type { ServiceBroker } from 'moleculer';
import { call } from '../../lib/bus.ts';
import { DAY_DIR, startOfSegmentFile } from '../../appliance/data-dir.ts';
import type { ReviewItem } from '../events/events.schemas.ts';
import type { Segment } from '../recorder/recorder.schemas.ts';
import type { SyncParts } from './intake.ts';
import type { UploadTarget } from './targets.ts';

const DAY = 86_400_000;
/** An alert's window is kept this long after it closed (its post-roll segments close meanwhile). */
const WINDOW_KEEP_MS = 3_600_000;

interface Window {
  from: number;
  /** null while the alert goes on. */
  to: number | null;
}

export interface SweepResult {
  removed: number;
  failed: string[];
}

export class OffsiteRecordings {
  /** Alert windows per camera, by review item. */
  private readonly windows = new Map<string, Map<string, Window>>();
  /** Segments already handed to the uploads (a segment in two alerts goes once). */
  private readonly sent = new Map<string, number>();

  constructor(
    private readonly s: SyncParts,
    private readonly boxId: string,
    private readonly upload: (segment: Segment) => Promise<void>,
    private readonly targets: () => Array<{ id: string; prefix: string; client: UploadTarget }>,
  ) {}

  private get rolls() {
    const { preRollSeconds, postRollSeconds } = this.s.config.detector;
    return { pre: preRollSeconds * 1000, post: postRollSeconds * 1000 };
  }

  private get alertsOnly(): boolean {
    return this.s.policy().recordingsScope === 'alerts';
  }

  /** A segment closed (or was healed into the index): it goes up if the plan wants it. */
  async segmentClosed(segment: Segment): Promise<void> {
    if (this.alertsOnly && !this.inAlert(segment)) return;
    await this.send(segment);
  }

  /** An alert opened, grew or closed: its window is kept, and the footage recorded before it goes up now. */
  async reviewChanged(bus: ServiceBroker, item: ReviewItem): Promise<void> {
    if (!this.alertsOnly || item.severity !== 'alert') return;
    const windows = this.windows.get(item.camera) ?? new Map<string, Window>();
    this.windows.set(item.camera, windows);
    const isNew = !windows.has(item.id);
    const from = Date.parse(item.start) - this.rolls.pre;
    windows.set(item.id, { from, to: item.end ? Date.parse(item.end) + this.rolls.post : null });
    this.forgetOld();
    if (!isNew) return;
    const closed = await call(bus, 'recorder.segments', {
      camera: item.camera,
      from: new Date(from).toISOString(),
      to: new Date().toISOString(),
    });
    for (const s of closed) {
      // Footage already in the archive stays there: the uploads read the hot disk.
      if (s.tier) continue;
      await this.send({ ...s, start: Date.parse(s.start), end: Date.parse(s.end) });
    }
  }

  /** At start: the alerts of the last hour, so footage closing now still finds its window. */
  async start(bus: ServiceBroker): Promise<void> {
    if (!this.alertsOnly) return;
    const items = await call(bus, 'events.reviewItems', {
      severity: 'alert',
      from: new Date(Date.now() - WINDOW_KEEP_MS).toISOString(),
      limit: 200,
    });
    for (const item of items) await this.reviewChanged(bus, item);
  }

  private inAlert(segment: Segment): boolean {
    for (const w of this.windows.get(segment.camera)?.values() ?? [])
      if (w.from < segment.end && (w.to === null || w.to > segment.start)) return true;
    return false;
  }

  private async send(segment: Segment): Promise<void> {
    if (this.sent.has(segment.path)) return;
    this.sent.set(segment.path, Date.now());
    await this.upload(segment);
  }

  private forgetOld(now = Date.now()): void {
    for (const windows of this.windows.values())
      for (const [id, w] of windows) if (w.to !== null && w.to < now - WINDOW_KEEP_MS) windows.delete(id);
    for (const [path, at] of this.sent) if (at < now - 2 * WINDOW_KEEP_MS) this.sent.delete(path);
  }

  /**
   * Deletes, from every enabled target, this box's recordings older than the plan's days. Only
   * names of the recordings layout are touched; a target that fails is named and the others go on.
   */
  async sweep(now = Date.now()): Promise<SweepResult> {
    const result: SweepResult = { removed: 0, failed: [] };
    const days = this.s.policy().recordingsRetainDays;
    if (days === null) return result;
    const cutoff = now - days * DAY;
    // A segment is kept while any of it is within the days: it started at most this long before it ended.
    const longest = this.s.config.video.segmentSeconds * 1000 * 2;
    const cutoffDay = new Date(cutoff).toISOString().slice(0, 10);
    for (const { id, prefix, client } of this.targets()) {
      const root = `${prefix ? `${prefix}/` : ''}${this.boxId}/`;
      try {
        for (const camera of await client.folders(root)) {
          for (const dayFolder of await client.folders(camera)) {
            const day = dayFolder.slice(camera.length, -1);
            if (!DAY_DIR.test(day) || day > cutoffDay) continue;
            for (const name of await client.names(`${dayFolder}recordings/`)) {
              const start = startOfSegmentFile(name);
              if (Number.isNaN(start) || start + longest >= cutoff) continue;
              await client.remove(name);
              result.removed++;
            }
          }
        }
      } catch (err) {
        result.failed.push(id);
        this.s.log.warn(`sync: recordings past ${days} days not deleted from "${id}": ${(err as Error).message}`);
      }
    }
    if (result.removed) this.s.log.info(`sync: ${result.removed} recordings past ${days} days deleted from the cloud`);
    return result;
  }
}
