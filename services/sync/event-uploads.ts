// What an event sends up, once it has ended: its snapshot, its JSON, and its clip, made once the
// footage after the event is recorded; and each closed recording segment, when the plan sends
// recordings. Ended events are read from the events service's log by a cursor kept here, so a
// stop, a crash or that service being away loses none.
import path from 'node:path';
import type { ServiceBroker } from 'moleculer';
import pLimit from 'p-limit';
import { backoffMs } from '../../lib/backoff.ts';
import { call, type Caller } from '../../lib/bus.ts';
import { isUnreachable } from '../../lib/errors.ts';
import type { Collection } from '../../lib/store.ts';
import { dayDir } from '../../appliance/data-dir.ts';
import type { StoredEvent } from '../events/events.schemas.ts';
import type { Segment } from '../recorder/recorder.schemas.ts';
import type { Intake, SyncParts } from './intake.ts';

export interface ClipJob {
  event: string;
  camera: string;
  from: string;
  to: string;
  metadata: Record<string, string>;
  /** When the footage up to `to` is recorded and indexed (ms). */
  readyAt: number;
  attempts: number;
}

/** How long work that waits for an absent service waits before it looks again (ms). */
const WAIT_RETRY_MS = 5000;

export class EventUploads {
  /** Services that work waits for now (their node is away, or not started yet): shown in status. */
  readonly waitingFor = new Set<string>();
  private bus: ServiceBroker | undefined;
  private stopping = false;
  private clipTimer: NodeJS.Timeout | undefined;
  /** When the next clip-job check is set for. */
  private clipCheckAt: number | undefined;
  private readonly clipTurn = pLimit(1);
  /** Ended events are taken from the events service's log, in order, one pass at a time. */
  private readonly eventTurn = pLimit(1);
  private eventRetryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly s: SyncParts,
    private readonly intake: Intake,
    private readonly enabledTargets: () => string[],
    private readonly clipJobs: Collection<ClipJob>,
  ) {}

  private get o() {
    return this.s.config.sync;
  }

  /** Clip jobs from before the restart, and events that ended while this service was down. */
  start(bus: ServiceBroker): void {
    this.bus = bus;
    this.checkClipsAt(Date.now());
    this.lookForEndedEvents();
  }

  /** Lets a pass over ended events that is under way finish its item. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.clipTimer);
    clearTimeout(this.eventRetryTimer);
    this.clipCheckAt = undefined;
    await Promise.race([this.eventTurn(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
  }

  /** A service came or went: work that waited for it may go now. */
  servicesChanged(): void {
    if (this.waitingFor.has('events')) this.lookForEndedEvents();
    if (this.waitingFor.has('recorder')) this.checkClipsAt(Date.now());
  }

  lookForEndedEvents(): void {
    void this.takeEndedEvents().catch((err: Error) => this.s.log.error(`sync: events: ${err.message}`));
  }

  async onSegment(seg: Segment): Promise<void> {
    const { paths, log } = this.s;
    const policy = this.s.policy();
    if (!policy.resources.includes('recordings') || !this.matches(seg.camera) || this.enabledTargets().length === 0)
      return;
    const file = path.join(path.relative(paths.root, paths.media), seg.path);
    await this.intake
      .enqueue({
        resource: 'recordings',
        camera: seg.camera,
        name: `${this.o.boxId}/${seg.camera}/${dayDir(seg.start)}/recordings/${path.basename(seg.path)}`,
        file,
        ownsFile: false,
        contentType: 'video/mp4',
        metadata: {
          box: this.o.boxId,
          camera: seg.camera,
          start: new Date(seg.start).toISOString(),
          end: new Date(seg.end).toISOString(),
        },
      })
      .catch((err: Error) => log.error(`sync: segment ${seg.path} not enqueued: ${err.message}`));
  }

  private waitFor(service: string, work: string, err: unknown) {
    if (!this.waitingFor.has(service)) this.s.log.warn(`sync: ${work} wait for ${service}: ${(err as Error).message}`);
    this.waitingFor.add(service);
    this.s.changed();
  }

  private stopWaitingFor(service: string) {
    if (this.waitingFor.delete(service)) this.s.changed();
  }

  private eventPrefix(e: Pick<StoredEvent, 'camera' | 'start' | 'id'>) {
    return `${this.o.boxId}/${e.camera}/${e.start.slice(0, 10)}/${e.id}`;
  }

  private matches(camera: string, label?: string, zones?: string[]) {
    const policy = this.s.policy();
    return (
      (policy.cameras.length === 0 || policy.cameras.includes(camera)) &&
      (label === undefined || policy.labels.length === 0 || policy.labels.includes(label)) &&
      (zones === undefined || policy.zones.length === 0 || policy.zones.some((z) => zones.includes(z)))
    );
  }

  /** Clip jobs are looked at when the first one is due, not on a beat: a box with none never wakes for them. */
  private checkClipsAt(at: number) {
    if (this.stopping || (this.clipCheckAt !== undefined && this.clipCheckAt <= at)) return;
    clearTimeout(this.clipTimer);
    this.clipCheckAt = at;
    this.clipTimer = setTimeout(
      () => {
        this.clipCheckAt = undefined;
        void this.clipTurn(() => this.runClipJobs()).catch((err: Error) =>
          this.s.log.error(`sync: clips: ${err.message}`),
        );
      },
      Math.max(0, at - Date.now()),
    );
  }

  private async runClipJobs() {
    let next = Infinity;
    for (const job of await this.clipJobs.values()) {
      if (this.stopping || !this.bus) return;
      if (job.readyAt > Date.now()) {
        next = Math.min(next, job.readyAt);
        continue;
      }
      try {
        const clip = await call(this.bus, 'recorder.clip', { camera: job.camera, from: job.from, to: job.to });
        const stream = await call(this.bus, 'recorder.file', { kind: 'clip', name: clip.name });
        await this.intake.enqueueBytes(
          {
            resource: 'clips',
            camera: job.camera,
            name: `${this.eventPrefix({ camera: job.camera, start: job.metadata['start']!, id: job.event })}/clip.mp4`,
            contentType: 'video/mp4',
            metadata: { ...job.metadata, from: job.from, to: job.to },
          },
          stream,
        );
        await this.clipJobs.del(job.event);
        this.waitingFor.delete('recorder');
      } catch (err) {
        if (isUnreachable(err)) {
          // Not "no footage": the recorder is not there yet. The job waits, its tries untouched.
          this.waitFor('recorder', 'clips', err);
          next = Math.min(next, Date.now() + WAIT_RETRY_MS);
          break;
        }
        const e = err as { code?: number; message: string };
        if (e.code === 404 || job.attempts >= 10) {
          this.s.log.warn(`sync: no clip for event ${job.event}: ${e.message}`);
          await this.clipJobs.del(job.event);
        } else {
          const readyAt = Date.now() + backoffMs(job.attempts + 1, this.o.retryMinMs, this.o.retryMaxMs);
          await this.clipJobs.put(job.event, { ...job, attempts: job.attempts + 1, readyAt });
          next = Math.min(next, readyAt);
        }
      }
    }
    if (next < Infinity) this.checkClipsAt(next);
  }

  /**
   * Takes the events that ended since the last one handled (the cursor, kept in this store): a
   * broadcast missed while this service was down is made up here.
   */
  private takeEndedEvents() {
    return this.eventTurn(async () => {
      const { bus, s } = this;
      if (!bus || this.stopping) return;
      clearTimeout(this.eventRetryTimer);
      try {
        let cursor = (await s.meta.get('eventsCursor')) as number | undefined;
        for (;;) {
          const page = await call(bus, 'events.endedAfter', { after: cursor ?? -1, limit: 100 });
          // A new cloud sync (or an events store that was reset) starts with what ends from now on.
          if (cursor === undefined || cursor > page.last) {
            await s.meta.put('eventsCursor', (cursor = page.last));
            continue;
          }
          for (const { seq, event } of page.ended) {
            if (this.stopping) return;
            await this.onEventEnded(event, bus).catch((err: Error) => {
              if (isUnreachable(err)) throw err;
              s.log.error(`sync: event ${event.id} not enqueued: ${err.message}`);
            });
            await s.meta.put('eventsCursor', (cursor = seq));
          }
          if (cursor !== page.through) await s.meta.put('eventsCursor', (cursor = page.through));
          if (page.through >= page.last) break;
        }
        this.stopWaitingFor('events');
      } catch (err) {
        if (!isUnreachable(err)) throw err;
        this.waitFor('events', 'ended events', err);
        this.eventRetryTimer = setTimeout(() => this.lookForEndedEvents(), WAIT_RETRY_MS);
      }
    });
  }

  private async onEventEnded(e: StoredEvent, broker: Caller) {
    if (this.enabledTargets().length === 0 || !this.matches(e.camera, e.label, e.zones)) return;
    const want = new Set(this.s.policy().resources);
    const base = this.eventPrefix(e);
    const metadata: Record<string, string> = {
      box: this.o.boxId,
      camera: e.camera,
      event: e.id,
      label: e.label,
      score: e.topScore.toFixed(3),
      start: e.start,
      end: e.end ?? '',
      zones: e.zones.join(','),
    };
    const objects: Record<string, string> = {};
    if (want.has('snapshots') && e.hasSnapshot) {
      const { jpegBase64 } = await call(broker, 'events.snapshot', { id: e.id });
      const item = await this.intake.enqueueBytes(
        { resource: 'snapshots', camera: e.camera, name: `${base}/snapshot.jpg`, contentType: 'image/jpeg', metadata },
        Buffer.from(jpegBase64, 'base64'),
      );
      if (item) objects['snapshot'] = item.name;
    }
    if (want.has('clips')) {
      const range = await call(broker, 'events.clipRange', { id: e.id });
      // The segment holding `to` closes up to a segment later, then it is indexed.
      const readyAt = Date.parse(range.to) + 2 * this.s.config.video.segmentSeconds * 1000 + 2000;
      await this.clipJobs.put(e.id, {
        event: e.id,
        camera: e.camera,
        from: range.from,
        to: range.to,
        metadata,
        readyAt,
        attempts: 0,
      });
      this.checkClipsAt(readyAt);
      objects['clip'] = `${base}/clip.mp4`;
    }
    if (want.has('events')) {
      const index = { ...e, boxId: this.o.boxId, objects };
      await this.intake.enqueueBytes(
        { resource: 'events', camera: e.camera, name: `${base}/event.json`, contentType: 'application/json', metadata },
        Buffer.from(JSON.stringify(index, null, 2)),
      );
    }
  }
}
