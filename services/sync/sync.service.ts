// sync: sends the part of the box's data that the plan chooses (event JSON, snapshots, event
// clips, recordings, audit) to S3-compatible and Azure Blob targets, from a durable outbox that
// survives crashes, backs off when a target is down, and keeps to a bandwidth cap and schedule.
import { writeDurably } from '../../lib/durable-files.ts';
import { call, type Caller, on } from '../../lib/bus.ts';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Transform } from 'node:stream';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import pLimit from 'p-limit';
import { ThrottleGroup } from 'stream-throttle';
import { z } from 'zod';
import { action, validationError } from '../../lib/actions.ts';
import { AUDITED_EVENTS } from '../../lib/audit.ts';
import { backoffMs } from '../../lib/backoff.ts';
import { ConflictError, ForbiddenError, isUnreachable } from '../../lib/errors.ts';
import { localMinutes, withinHours } from '../../lib/hours.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths, dayDir } from '../../appliance/data-dir.ts';
import type { StoredEvent } from '../events/events.schemas.ts';
import type { Segment } from '../recorder/recorder.schemas.ts';
import { Outbox, type Item, type Progress } from './outbox.ts';
import { Policy, publicTarget, RESOURCES, Target, TargetId, widening, type Resource } from './sync.schemas.ts';
import { classify, openTarget, type FailureCode, type UploadTarget } from './targets.ts';
import { uploadItem } from './uploader.ts';

interface TargetState {
  lastSuccessAt: string | null;
  lastError: { at: string; code: FailureCode; message: string } | null;
  /** Failures in a row that were the target's (down, refused credentials): its backoff. */
  failures: number;
  retryAt: number;
  sentItems: number;
  sentBytes: number;
}

interface ClipJob {
  event: string;
  camera: string;
  from: string;
  to: string;
  metadata: Record<string, string>;
  /** When the footage up to `to` is recorded and indexed (ms). */
  readyAt: number;
  attempts: number;
}

interface Counters {
  dropped: number;
  overBudget: number;
  refused: number;
}

interface Running {
  spec: Target;
  client: UploadTarget;
  state: TargetState;
  /** Sleeping workers; a new item or a policy change wakes them all. */
  waiters: Set<() => void>;
  /** The rate this target's uploads have gone at lately (one upload's share), bytes/s; unknown at start. */
  bytesPerSecond: number | undefined;
  stopped: boolean;
  workers: Promise<void>[];
}

/** What a new item is made of; the outbox adds its id, hashes and targets. */
interface NewItem {
  resource: Resource;
  camera: string | null;
  name: string;
  file: string;
  ownsFile: boolean;
  contentType: string;
  metadata: Record<string, string>;
}

const NEW_STATE: TargetState = {
  lastSuccessAt: null,
  lastError: null,
  failures: 0,
  retryAt: 0,
  sentItems: 0,
  sentBytes: 0,
};
const STATUS_EVERY_MS = 1000;
/** Larger items always go in parts (minio's own part size); it also bounds what a retry sends again. */
const WHOLE_MAX_BYTES = 64 * 1024 * 1024;
/** Uploads smaller than this say more about latency than about the link's rate. */
const RATE_SAMPLE_MIN_BYTES = 1024 * 1024;

async function hashFile(file: string): Promise<{ bytes: number; sha256: string; md5: string }> {
  const sha256 = createHash('sha256');
  const md5 = createHash('md5');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    sha256.update(chunk);
    md5.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: sha256.digest('hex'), md5: md5.digest('base64') };
}

export function syncService(config: Config): ServiceSchema {
  const paths = dataPaths(config);
  const o = config.sync;
  let store: Store | undefined;
  let outbox: Outbox;
  let targetSpecs: Collection<Target>;
  let targetStates: Collection<TargetState>;
  let clipJobs: Collection<ClipJob>;
  let auditBuffer: Collection<Record<string, unknown>>;
  let meta: Collection<unknown>;
  let policy: Policy = Policy.parse({});
  let counters: Counters = { dropped: 0, overBudget: 0, refused: 0 };
  let throttle: (() => Transform) | undefined;
  const running = new Map<string, Running>();
  /** `<item>|<target>` being uploaded now. */
  const busy = new Set<string>();
  /** `<item>|<target>` tried by this process without success: it may be there all the same. */
  const tried = new Set<string>();
  /** Items enqueued before this start may have been sent by the process that crashed. */
  let startedAt = Date.now();
  let clipTimer: NodeJS.Timeout | undefined;
  let auditTimer: NodeJS.Timeout | undefined;
  let statusTimer: NodeJS.Timeout | undefined;
  /** The service's broker, once started: for the timers' work. */
  let bus: ServiceBroker | undefined;
  /** When the next clip-job check is set for. */
  let clipCheckAt: number | undefined;
  const clipTurn = pLimit(1);
  /** Ended events are taken from the events service's log, in order, one pass at a time. */
  const eventTurn = pLimit(1);
  let eventRetryTimer: NodeJS.Timeout | undefined;
  /** Services that work waits for now (their node is away, or not started yet): shown in status. */
  const waitingFor = new Set<string>();
  const WAIT_RETRY_MS = 5000;
  let stopping = false;
  let log: { info(m: string): void; warn(m: string): void; error(m: string): void };

  const backoff = (failures: number) => backoffMs(failures, o.retryMinMs, o.retryMaxMs);

  /** One status broadcast at most every STATUS_EVERY_MS, and none while nothing changes. */
  const statusChanged = () => {
    if (stopping || statusTimer) return;
    statusTimer = setTimeout(() => {
      statusTimer = undefined;
      void bus?.broadcast('sync.status.changed', status());
    }, STATUS_EVERY_MS);
  };

  /** Clip jobs are looked at when the first one is due, not on a beat: a box with none never wakes for them. */
  const checkClipsAt = (at: number) => {
    if (stopping || (clipCheckAt !== undefined && clipCheckAt <= at)) return;
    clearTimeout(clipTimer);
    clipCheckAt = at;
    clipTimer = setTimeout(
      () => {
        clipCheckAt = undefined;
        void clipTurn(runClipJobs).catch((err: Error) => log.error(`sync: clips: ${err.message}`));
      },
      Math.max(0, at - Date.now()),
    );
  };

  const wake = (r: Running) => [...r.waiters].forEach((w) => w());
  const wakeAll = () => running.forEach(wake);

  const enabledTargets = () => [...running.values()].filter((r) => r.spec.enabled).map((r) => r.spec.id);

  const mayGoNow = (resource: Resource) => {
    const w = policy.windows[resource];
    return !w || withinHours(localMinutes(new Date()), w.from, w.to);
  };

  const setThrottle = () => {
    const rate = policy.bandwidthBytesPerSecond;
    if (!rate) {
      throttle = undefined;
      return;
    }
    // One bucket for every upload: the cap is the household's link, not each connection's.
    const group = new ThrottleGroup({ rate, chunksize: Math.max(1024, Math.round(rate / 20)) });
    throttle = () => group.throttle();
  };

  // ---- enqueueing ----

  const saveCounters = () => meta.put('counters', counters, { sync: false });
  const budgetKey = () => `budget-${dayDir(Date.now())}`;

  /**
   * One enqueue at a time: the daily budget and the byte bound are read, then written, and two
   * events ending together must not both find the same room.
   */
  const inTurn = pLimit(1);
  const enqueue = (n: NewItem): Promise<Item | undefined> => inTurn(() => admit(n));

  const admit = async (n: NewItem): Promise<Item | undefined> => {
    const absolute = path.join(paths.root, n.file);
    const forget = async (why: string) => {
      if (n.ownsFile) await rm(absolute, { force: true });
      log.warn(`sync: ${n.resource} ${n.name} stays only on the box: ${why}`);
      return undefined;
    };
    const targets = enabledTargets();
    if (targets.length === 0) return forget('no cloud target is enabled');
    const hashes = await hashFile(absolute);
    if (policy.maxBytesPerDay !== null) {
      const used = ((await meta.get(budgetKey())) as number | undefined) ?? 0;
      if (used + hashes.bytes > policy.maxBytesPerDay) {
        counters.overBudget++;
        await saveCounters();
        return forget(`today's budget of ${policy.maxBytesPerDay} bytes is used (${used} enqueued)`);
      }
      await meta.put(budgetKey(), used + hashes.bytes);
    }
    const admission = outbox.admit({ resource: n.resource, bytes: hashes.bytes }, (id) =>
      [...busy].some((k) => k.startsWith(`${id}|`)),
    );
    if (!admission.admitted) {
      counters.refused++;
      await saveCounters();
      return forget(admission.reason);
    }
    for (const d of admission.dropped) {
      await removeItem(d);
      counters.dropped++;
      log.warn(
        `sync: queue full: dropped ${d.resource} ${d.name} (${d.bytes} bytes, queued ${new Date(d.enqueuedAt).toISOString()}) for a newer ${n.resource}`,
      );
    }
    if (admission.dropped.length) await saveCounters();
    const item: Item = {
      ...n,
      ...hashes,
      id: outbox.nextId(),
      enqueuedAt: Date.now(),
      pending: Object.fromEntries(targets.map((t) => [t, { attempts: 0, nextAt: 0 } satisfies Progress])),
    };
    await outbox.put(item);
    statusChanged();
    wakeAll();
    return item;
  };

  /** A document made here (event JSON, snapshot, audit batch): the outbox keeps its own copy. */
  const enqueueBytes = async (n: Omit<NewItem, 'file' | 'ownsFile'>, data: Buffer | Readable) => {
    // Kept relative to the data root, as every item's file is.
    const file = path.relative(paths.root, path.join(paths.outbox, `${outbox.nextId()}${path.extname(n.name)}`));
    await writeDurably(path.join(paths.root, file), data);
    return enqueue({ ...n, file, ownsFile: true });
  };

  const removeItem = async (item: Item) => {
    await outbox.remove(item.id);
    if (item.ownsFile) await rm(path.join(paths.root, item.file), { force: true });
    statusChanged();
  };

  const eventPrefix = (e: Pick<StoredEvent, 'camera' | 'start' | 'id'>) =>
    `${o.boxId}/${e.camera}/${e.start.slice(0, 10)}/${e.id}`;

  const matches = (camera: string, label?: string, zones?: string[]) =>
    (policy.cameras.length === 0 || policy.cameras.includes(camera)) &&
    (label === undefined || policy.labels.length === 0 || policy.labels.includes(label)) &&
    (zones === undefined || policy.zones.length === 0 || policy.zones.some((z) => zones.includes(z)));

  const eventMetadata = (e: StoredEvent): Record<string, string> => ({
    box: o.boxId,
    camera: e.camera,
    event: e.id,
    label: e.label,
    score: e.topScore.toFixed(3),
    start: e.start,
    end: e.end ?? '',
    zones: e.zones.join(','),
  });

  // ---- sending ----

  const saveState = (r: Running) => {
    statusChanged();
    return targetStates.put(r.spec.id, r.state, { sync: false });
  };

  const finish = async (item: Item, target: string) => {
    delete item.pending[target];
    if (Object.keys(item.pending).length === 0) await removeItem(item);
    else await outbox.put(item);
  };

  /**
   * Parts cost two more requests and the server's assembly; what they buy is a resume. So an item
   * over the threshold still goes whole when this target sends it within wholeUploadSeconds.
   */
  const sendWhole = (r: Running, item: Item, progress: Progress) => {
    if (progress.upload) return false;
    if (item.bytes <= o.multipartThresholdBytes) return true;
    if (item.bytes > WHOLE_MAX_BYTES || !r.bytesPerSecond) return false;
    const cap = policy.bandwidthBytesPerSecond;
    return item.bytes / (cap ? Math.min(cap, r.bytesPerSecond) : r.bytesPerSecond) <= o.wholeUploadSeconds;
  };

  const sendOne = async (r: Running, item: Item) => {
    const progress = item.pending[r.spec.id]!;
    const file = path.join(paths.root, item.file);
    if (progress.upload?.parts.length) {
      log.info(
        `sync: resuming ${item.name} to "${r.spec.id}" after ${progress.upload.parts.length} of ${Math.ceil(item.bytes / (progress.upload.partBytes ?? o.partBytes))} parts`,
      );
    }
    const key = `${item.id}|${r.spec.id}`;
    try {
      const mayBeThere = item.enqueuedAt < startedAt || tried.has(key);
      tried.add(key);
      const resumed = Boolean(progress.upload?.parts.length);
      const t0 = performance.now();
      const outcome = await uploadItem(r.client, r.spec.prefix, item, file, progress, {
        multipartThresholdBytes: o.multipartThresholdBytes,
        whole: sendWhole(r, item, progress),
        partBytes: o.partBytes,
        throttle,
        mayBeThere,
        save: () => (outbox.get(item.id) ? outbox.put(item) : Promise.resolve()),
      });
      tried.delete(key);
      if (outcome === 'sent' && !resumed && item.bytes >= RATE_SAMPLE_MIN_BYTES) {
        const sample = item.bytes / Math.max(0.001, (performance.now() - t0) / 1000);
        r.bytesPerSecond = r.bytesPerSecond === undefined ? sample : 0.7 * r.bytesPerSecond + 0.3 * sample;
      }
      r.state = {
        ...r.state,
        lastSuccessAt: new Date().toISOString(),
        failures: 0,
        retryAt: 0,
        sentItems: r.state.sentItems + 1,
        sentBytes: r.state.sentBytes + item.bytes,
      };
      if (outbox.get(item.id)) await finish(item, r.spec.id);
      await saveState(r);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as NodeJS.ErrnoException).path === file) {
        log.error(`sync: ${item.name}: its file ${item.file} is gone; the item is dropped`);
        if (outbox.get(item.id)) await removeItem(item);
        return;
      }
      const e = classify(err, `target "${r.spec.id}"`);
      const at = new Date().toISOString();
      if (e.targetWide) {
        r.state = { ...r.state, failures: r.state.failures + 1, lastError: { at, code: e.code, message: e.message } };
        r.state.retryAt = Date.now() + backoff(r.state.failures);
        if (r.state.failures === 1 || r.state.failures % 10 === 0) {
          log.warn(
            `sync: ${e.message}; ${outbox.pendingFor(r.spec.id).items} items wait; next try in ${Math.round((r.state.retryAt - Date.now()) / 1000)} s`,
          );
        }
      } else {
        progress.attempts++;
        progress.nextAt = Date.now() + backoff(progress.attempts);
        progress.lastError = e.message;
        if (e.code === 'UPLOAD_EXPIRED') delete progress.upload;
        r.state = { ...r.state, lastError: { at, code: e.code, message: `${item.name}: ${e.message}` } };
        log.warn(`sync: ${item.name} to "${r.spec.id}" failed (attempt ${progress.attempts}): ${e.message}`);
        if (outbox.get(item.id)) await outbox.put(item);
      }
      await saveState(r);
    }
  };

  const worker = async (r: Running) => {
    while (!r.stopped && !stopping) {
      const now = Date.now();
      let wait = 60_000;
      if (r.state.retryAt > now) wait = r.state.retryAt - now;
      else {
        const item = outbox.next(r.spec.id, now, (i) => !busy.has(`${i.id}|${r.spec.id}`) && mayGoNow(i.resource));
        if (item) {
          const key = `${item.id}|${r.spec.id}`;
          busy.add(key);
          await sendOne(r, item).finally(() => busy.delete(key));
          continue;
        }
        const retry = outbox.earliestRetry(r.spec.id);
        if (retry !== undefined) wait = Math.max(50, Math.min(wait, retry - now));
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          r.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(wait, 60_000));
        r.waiters.add(done);
      });
    }
  };

  const start = async (spec: Target) => {
    const state = (await targetStates.get(spec.id)) ?? { ...NEW_STATE };
    const r: Running = {
      spec,
      client: openTarget(spec),
      state: { ...state, retryAt: 0 },
      waiters: new Set(),
      bytesPerSecond: undefined,
      stopped: false,
      workers: [],
    };
    running.set(spec.id, r);
    if (spec.enabled) for (let i = 0; i < o.concurrency; i++) r.workers.push(worker(r));
  };

  const stop = async (id: string) => {
    const r = running.get(id);
    if (!r) return;
    r.stopped = true;
    wake(r);
    running.delete(id);
    // An upload under way is not waited for long: it resumes from its parts at the next start.
    await Promise.race([Promise.allSettled(r.workers), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    r.client.close();
  };

  // ---- clips, made once the footage after the event is recorded ----

  const runClipJobs = async () => {
    let next = Infinity;
    for (const job of await clipJobs.values()) {
      if (stopping || !bus) return;
      if (job.readyAt > Date.now()) {
        next = Math.min(next, job.readyAt);
        continue;
      }
      try {
        const clip = await call(bus, 'recorder.clip', {
          camera: job.camera,
          from: job.from,
          to: job.to,
        });
        const stream = await call(bus, 'recorder.file', { kind: 'clip', name: clip.name });
        await enqueueBytes(
          {
            resource: 'clips',
            camera: job.camera,
            name: `${eventPrefix({ camera: job.camera, start: job.metadata['start']!, id: job.event })}/clip.mp4`,
            contentType: 'video/mp4',
            metadata: { ...job.metadata, from: job.from, to: job.to },
          },
          stream,
        );
        await clipJobs.del(job.event);
        waitingFor.delete('recorder');
      } catch (err) {
        if (isUnreachable(err)) {
          // Not "no footage": the recorder is not there yet. The job waits, its tries untouched.
          if (!waitingFor.has('recorder')) log.warn(`sync: clips wait for the recorder: ${(err as Error).message}`);
          waitingFor.add('recorder');
          statusChanged();
          next = Math.min(next, Date.now() + WAIT_RETRY_MS);
          break;
        }
        const e = err as { code?: number; message: string };
        if (e.code === 404 || job.attempts >= 10) {
          log.warn(`sync: no clip for event ${job.event}: ${e.message}`);
          await clipJobs.del(job.event);
        } else {
          const readyAt = Date.now() + backoff(job.attempts + 1);
          await clipJobs.put(job.event, { ...job, attempts: job.attempts + 1, readyAt });
          next = Math.min(next, readyAt);
        }
      }
    }
    if (next < Infinity) checkClipsAt(next);
  };

  /**
   * Takes the events that ended since the last one handled (the cursor, kept in this store): a
   * stop, a crash or the events service's node being away loses none, and a broadcast missed
   * while this service was down is made up here.
   */
  const takeEndedEvents = () =>
    eventTurn(async () => {
      if (!bus || stopping) return;
      clearTimeout(eventRetryTimer);
      try {
        let cursor = (await meta.get('eventsCursor')) as number | undefined;
        for (;;) {
          const page = await call(bus, 'events.endedAfter', { after: cursor ?? -1, limit: 100 });
          // A new cloud sync (or an events store that was reset) starts with what ends from now on.
          if (cursor === undefined || cursor > page.last) {
            await meta.put('eventsCursor', (cursor = page.last));
            continue;
          }
          for (const { seq, event } of page.ended) {
            if (stopping) return;
            await onEventEnded(event, bus).catch((err: Error) => {
              if (isUnreachable(err)) throw err;
              log.error(`sync: event ${event.id} not enqueued: ${err.message}`);
            });
            await meta.put('eventsCursor', (cursor = seq));
          }
          if (cursor !== page.through) await meta.put('eventsCursor', (cursor = page.through));
          if (page.through >= page.last) break;
        }
        if (waitingFor.delete('events')) statusChanged();
      } catch (err) {
        if (!isUnreachable(err)) throw err;
        if (!waitingFor.has('events')) log.warn(`sync: ended events wait: ${(err as Error).message}`);
        waitingFor.add('events');
        statusChanged();
        eventRetryTimer = setTimeout(lookForEndedEvents, WAIT_RETRY_MS);
      }
    });
  const lookForEndedEvents = () =>
    void takeEndedEvents().catch((err: Error) => log.error(`sync: events: ${err.message}`));

  const onEventEnded = async (e: StoredEvent, broker: Caller) => {
    if (enabledTargets().length === 0 || !matches(e.camera, e.label, e.zones)) return;
    const want = new Set(policy.resources);
    const base = eventPrefix(e);
    const metadata = eventMetadata(e);
    const objects: Record<string, string> = {};
    if (want.has('snapshots') && e.hasSnapshot) {
      const { jpegBase64 } = await call(broker, 'events.snapshot', { id: e.id });
      const item = await enqueueBytes(
        { resource: 'snapshots', camera: e.camera, name: `${base}/snapshot.jpg`, contentType: 'image/jpeg', metadata },
        Buffer.from(jpegBase64, 'base64'),
      );
      if (item) objects['snapshot'] = item.name;
    }
    if (want.has('clips')) {
      const range = await call(broker, 'events.clipRange', { id: e.id });
      // The segment holding `to` closes up to a segment later, then it is indexed.
      const readyAt = Date.parse(range.to) + 2 * config.video.segmentSeconds * 1000 + 2000;
      await clipJobs.put(e.id, {
        event: e.id,
        camera: e.camera,
        from: range.from,
        to: range.to,
        metadata,
        readyAt,
        attempts: 0,
      });
      checkClipsAt(readyAt);
      objects['clip'] = `${base}/clip.mp4`;
    }
    if (want.has('events')) {
      const index = { ...e, boxId: o.boxId, objects };
      await enqueueBytes(
        { resource: 'events', camera: e.camera, name: `${base}/event.json`, contentType: 'application/json', metadata },
        Buffer.from(JSON.stringify(index, null, 2)),
      );
    }
  };

  const onSegment = async (s: Segment) => {
    if (!store || !policy.resources.includes('recordings') || !matches(s.camera) || enabledTargets().length === 0)
      return;
    const file = path.join(path.relative(paths.root, paths.media), s.path);
    await enqueue({
      resource: 'recordings',
      camera: s.camera,
      name: `${o.boxId}/${s.camera}/${dayDir(s.start)}/recordings/${path.basename(s.path)}`,
      file,
      ownsFile: false,
      contentType: 'video/mp4',
      metadata: {
        box: o.boxId,
        camera: s.camera,
        start: new Date(s.start).toISOString(),
        end: new Date(s.end).toISOString(),
      },
    }).catch((err: Error) => log.error(`sync: segment ${s.path} not enqueued: ${err.message}`));
  };

  // ---- audit, in batches ----

  const flushAudit = async () => {
    const entries: Array<[string, Record<string, unknown>]> = [];
    for await (const entry of auditBuffer.entries()) entries.push(entry);
    if (entries.length === 0) return;
    if (enabledTargets().length && policy.resources.includes('audit')) {
      const first = String(entries[0]![1]['at'] ?? new Date().toISOString());
      const lines = entries.map(([, v]) => JSON.stringify(v)).join('\n') + '\n';
      await enqueueBytes(
        {
          resource: 'audit',
          camera: null,
          name: `${o.boxId}/audit/${first.slice(0, 10)}/${first.replace(/[:.]/g, '-')}-${entries.length}.jsonl`,
          contentType: 'application/x-ndjson',
          metadata: { box: o.boxId, entries: String(entries.length) },
        },
        Buffer.from(lines),
      );
    }
    for (const [key] of entries) await auditBuffer.del(key, { sync: false });
  };

  // ---- status ----

  const status = () => {
    const now = Date.now();
    const { items, bytes, oldest } = outbox.size;
    return {
      queue: {
        items,
        bytes,
        maxBytes: o.maxQueueBytes,
        oldestAgeSeconds: oldest === null ? null : Math.round((now - oldest) / 1000),
      },
      counters,
      /** Services whose absence holds work back now (clips wait for the recorder, ended events for events). */
      waitingFor: [...waitingFor].sort(),
      targets: [...running.values()].map((r) => {
        const p = r.spec.enabled ? outbox.pendingFor(r.spec.id) : { items: 0, bytes: 0, oldest: null };
        return {
          id: r.spec.id,
          type: r.spec.type,
          enabled: r.spec.enabled,
          state: !r.spec.enabled ? 'disabled' : r.state.retryAt > now ? 'backing-off' : p.items ? 'sending' : 'idle',
          pendingItems: p.items,
          pendingBytes: p.bytes,
          oldestAgeSeconds: p.oldest === null ? null : Math.round((now - p.oldest) / 1000),
          lastSuccessAt: r.state.lastSuccessAt,
          lastError: r.state.lastError,
          nextTryAt: r.state.retryAt > now ? new Date(r.state.retryAt).toISOString() : null,
          failures: r.state.failures,
          sentItems: r.state.sentItems,
          sentBytes: r.state.sentBytes,
          bytesPerSecond: r.bytesPerSecond === undefined ? null : Math.round(r.bytesPerSecond),
        };
      }),
    };
  };

  return {
    name: 'sync',

    actions: {
      status: action({ input: z.strictObject({}), permission: 'system.view', handler: () => status() }),

      /** What waits, oldest first: the first `limit` items. */
      queue: action({
        input: z.strictObject({ limit: z.number().int().min(1).max(1000).default(100) }),
        permission: 'system.view',
        handler(ctx) {
          return [...outbox.all()].slice(0, ctx.params.limit).map((i) => ({
            id: i.id,
            resource: i.resource,
            camera: i.camera,
            name: i.name,
            bytes: i.bytes,
            enqueuedAt: new Date(i.enqueuedAt).toISOString(),
            targets: Object.fromEntries(
              Object.entries(i.pending).map(([t, p]) => [
                t,
                { attempts: p.attempts, lastError: p.lastError ?? null, partsSent: p.upload?.parts.length ?? 0 },
              ]),
            ),
          }));
        },
      }),

      targets: action({
        input: z.strictObject({}),
        permission: 'settings.manage',
        handler: async () => (await targetSpecs.values()).map(publicTarget),
      }),

      addTarget: action({
        input: Target,
        permission: 'cloud.manage',
        async handler(ctx) {
          const spec = ctx.params;
          if (await targetSpecs.get(spec.id))
            throw new ConflictError(`Target "${spec.id}" exists`, 'TARGET_EXISTS', { id: spec.id });
          await targetSpecs.put(spec.id, spec);
          await start(spec);
          statusChanged();
          ctx.broadcast('sync.target.changed', {
            id: spec.id,
            change: 'added',
            by: ctx.meta.caller?.username ?? 'box',
          });
          return publicTarget(spec);
        },
      }),

      updateTarget: action({
        // Secrets left out keep their stored value.
        input: z.looseObject({ id: TargetId }),
        permission: 'cloud.manage',
        async handler(ctx) {
          const current = await targetSpecs.require(ctx.params.id, 'Target');
          const merged = Target.safeParse({ ...current, ...ctx.params, type: current.type });
          if (!merged.success) throw validationError(merged.error);
          await stop(current.id);
          await targetSpecs.put(current.id, merged.data);
          await start(merged.data);
          statusChanged();
          ctx.broadcast('sync.target.changed', {
            id: current.id,
            change: 'updated',
            fields: Object.keys(ctx.params).filter((k) => k !== 'id'),
            by: ctx.meta.caller?.username ?? 'box',
          });
          return publicTarget(merged.data);
        },
      }),

      removeTarget: action({
        input: z.strictObject({ id: TargetId }),
        permission: 'cloud.manage',
        async handler(ctx) {
          const { id } = ctx.params;
          await targetSpecs.require(id, 'Target');
          await stop(id);
          await targetSpecs.del(id);
          await targetStates.del(id);
          for (const item of [...outbox.all()]) if (item.pending[id]) await finish(item, id);
          statusChanged();
          ctx.broadcast('sync.target.changed', { id, change: 'removed', by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true };
        },
      }),

      /** Tries a target (a stored one by id, or one not yet saved) and says what is wrong. */
      testTarget: action({
        input: z.union([z.strictObject({ id: TargetId }), Target]),
        permission: 'cloud.manage',
        timeout: 60_000,
        async handler(ctx) {
          const spec = 'type' in ctx.params ? ctx.params : await targetSpecs.require(ctx.params.id, 'Target');
          const client = openTarget(spec);
          try {
            await client.check(`${spec.prefix ? `${spec.prefix}/` : ''}${o.boxId}/.fogedge-probe`);
            return { ok: true as const };
          } catch (err) {
            const e = classify(err, `target "${spec.id}"`);
            return { ok: false as const, code: e.code, message: e.message };
          } finally {
            client.close();
          }
        },
      }),

      policy: action({ input: z.strictObject({}), permission: 'settings.manage', handler: () => policy }),

      setPolicy: action({
        input: Policy,
        permission: 'settings.manage',
        async handler(ctx) {
          const role = ctx.meta.caller?.role;
          const wider = widening(policy, ctx.params);
          if (role && role !== 'admin' && wider.length) {
            throw new ForbiddenError(
              `Only an admin lets more of the household's data go to the cloud (this plan widens ${wider.join(', ')}); the ${role} may narrow the plan or set its limits`,
              { needs: 'cloud.manage', widens: wider },
            );
          }
          policy = ctx.params;
          await meta.put('policy', policy);
          setThrottle();
          wakeAll();
          ctx.broadcast('sync.policy.changed', { policy, by: ctx.meta.caller?.username ?? 'box' });
          return policy;
        },
      }),

      /** Internal: a document another service wants sent (as the plan allows its resource). */
      enqueue: action({
        input: z.strictObject({
          resource: z.enum(RESOURCES),
          camera: z.string().nullable().default(null),
          name: z
            .string()
            .regex(/^[\w.-]+(\/[\w.-]+)*$/)
            .max(400),
          contentType: z.string().max(100),
          metadata: z.record(z.string(), z.string()).default({}),
          base64: z.string(),
        }),
        async handler(ctx) {
          const { base64, ...n } = ctx.params;
          if (!policy.resources.includes(n.resource)) return { queued: false };
          const item = await enqueueBytes(n, Buffer.from(base64, 'base64'));
          return { queued: Boolean(item), id: item?.id ?? null };
        },
      }),

      /** Internal: recordings still to go up, which retention keeps while it may. */
      pinned: action({
        input: z.strictObject({}),
        handler: () => {
          if (!o.retentionWaitsForUpload) return [];
          const media = path.relative(paths.root, paths.media);
          return [...outbox.all()].filter((i) => i.resource === 'recordings').map((i) => path.relative(media, i.file));
        },
      }),
    },

    events: {
      // The broadcast only says "look": what ended is read from the events service's log, in order.
      ...on('event.ended', () => {
        if (store) lookForEndedEvents();
      }),
      // A service came or went: work that waited for it may go now.
      '$services.changed'() {
        if (!store || waitingFor.size === 0) return;
        if (waitingFor.has('events')) lookForEndedEvents();
        if (waitingFor.has('recorder')) checkClipsAt(Date.now());
      },
      // Closed as ffmpeg cut it, or healed into the index after a crash cut it short.
      ...on('recording.segment.closed', onSegment),
      ...on('recording.segment.healed', onSegment),
      ...Object.fromEntries(
        AUDITED_EVENTS.map((name) => [
          name,
          {
            async handler(ctx: { params: Record<string, unknown> }) {
              if (!store) return;
              const at = new Date().toISOString();
              await auditBuffer.put(`${at}-${outbox.nextId()}`, { at, action: name, ...ctx.params });
            },
          },
        ]),
      ),
    },

    async started() {
      log = this.logger;
      stopping = false;
      startedAt = Date.now();
      await mkdir(paths.outbox, { recursive: true });
      store = await Store.open(paths.db('sync'));
      outbox = new Outbox(store.collection<Item>('items'), o.maxQueueBytes);
      targetSpecs = store.collection<Target>('targets');
      targetStates = store.collection<TargetState>('targetState');
      clipJobs = store.collection<ClipJob>('clipJobs');
      auditBuffer = store.collection<Record<string, unknown>>('audit');
      meta = store.collection<unknown>('meta');
      await outbox.load();
      const saved = await meta.get('policy');
      if (saved) policy = Policy.parse(saved);
      counters = { ...counters, ...((await meta.get('counters')) as Counters | undefined) };
      setThrottle();
      for (const spec of await targetSpecs.values()) await start(spec);
      const { items, bytes } = outbox.size;
      if (items) this.logger.info(`sync: ${items} items (${bytes} bytes) from before the restart wait to go up`);

      bus = this.broker;
      checkClipsAt(Date.now()); // jobs from before the restart
      lookForEndedEvents();
      auditTimer = setInterval(
        () => void flushAudit().catch((err: Error) => log.error(`sync: audit: ${err.message}`)),
        o.auditBatchSeconds * 1000,
      );
    },

    async stopped() {
      stopping = true;
      clearTimeout(clipTimer);
      clearInterval(auditTimer);
      clearTimeout(statusTimer);
      clearTimeout(eventRetryTimer);
      clipCheckAt = statusTimer = undefined;
      // Let a pass over ended events that is under way finish its item.
      await Promise.race([eventTurn(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
      await Promise.allSettled([...running.keys()].map(stop));
      await store?.close();
      store = undefined;
    },
  };
}
