// events: what the detector found, kept (LevelDB, snapshots as files), queryable by time,
// camera, label and zone, and announced on the bus as event.started/updated/ended for
// the MQTT bridge, WebSocket clients and cloud sync; grouped into review items (alerts and
// detections, with previews) announced as review.opened/updated/closed.
import { broadcast, call, on } from '../../lib/bus.ts';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import pLimit from 'p-limit';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { KeyTurns } from '../../lib/key-turns.ts';
import { NotFoundError, NotReadyError } from '../../lib/errors.ts';
import { afterNodeStart } from '../../lib/after-start.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { ffmpegJpeg } from '../../lib/media/jpeg.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import { ReviewItems } from './review-items.ts';
import { Previews } from './previews.ts';
import {
  EventFields,
  EventId,
  EventRecord,
  IdInput,
  ListInput,
  MarkReviewedInput,
  ReviewIdInput,
  ReviewListInput,
  type ReviewItem,
  SnapshotInput,
  THUMBNAIL_WIDTH,
  type StoredEvent,
} from './events.schemas.ts';

const DAY = 86_400_000;

/** Draws the event's box on its snapshot (ffmpeg's drawbox), for the "with boxes" view. */
function drawBox(ffmpegPath: string, jpeg: Buffer, box: StoredEvent['box']): Promise<Buffer> {
  const [x1, y1, x2, y2] = box;
  const filter = `drawbox=x=iw*${x1}:y=ih*${y1}:w=iw*${x2 - x1}:h=ih*${y2 - y1}:color=red@0.9:t=3`;
  return ffmpegJpeg(ffmpegPath, jpeg, { format: 'jpeg_pipe', filter });
}

/** Newest first, from an index of `<start ISO>!<id>` keys: the records in [from, to) that `keep` takes, up to `limit`. */
async function newestFirst<T>(
  byStart: Collection<string>,
  records: Collection<T>,
  q: { from?: string | undefined; to?: string | undefined; limit: number },
  keep: (record: T) => boolean,
): Promise<T[]> {
  const out: T[] = [];
  const range = {
    reverse: true,
    ...(q.from ? { gte: new Date(q.from).toISOString() } : {}),
    ...(q.to ? { lt: new Date(q.to).toISOString() } : {}),
  };
  for await (const [, id] of byStart.entries(range)) {
    const record = await records.get(id);
    if (!record || !keep(record)) continue;
    out.push(record);
    if (out.length >= q.limit) break;
  }
  return out;
}

export function eventsService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let events: Collection<StoredEvent>;
  /** `<start ISO>!<id>` -> id: events in time order. */
  let byStart: Collection<string>;
  /**
   * `<sequence>` -> id: events in the order they ended, so a consumer that was away (cloud sync
   * on a node that restarted) takes up where it stopped instead of relying on a broadcast.
   */
  let endedLog: Collection<string>;
  let lastEndSeq = 0;
  // One at a time: a reader that sees sequence n+1 has n in the store too.
  const endTurn = pLimit(1);
  const seqKey = (n: number) => String(n).padStart(12, '0');
  const logEnded = (id: string) =>
    endTurn(async () => {
      await endedLog.put(seqKey(lastEndSeq + 1), id);
      lastEndSeq++;
    });
  const snapshotsDir = dataPaths(config).snapshots;
  const snapshotFile = (e: Pick<StoredEvent, 'camera' | 'id'>) => path.join(snapshotsDir, e.camera, `${e.id}.jpg`);
  const thumbnailFile = (e: Pick<StoredEvent, 'camera' | 'id'>) =>
    path.join(snapshotsDir, e.camera, `${e.id}.thumb.jpg`);
  /** Events stored before pictures had versions: one picture, version 1. */
  const versionOf = (e: StoredEvent | undefined) => e?.snapshotVersion ?? (e?.hasSnapshot ? 1 : 0);

  let retentionTimer: NodeJS.Timeout | undefined;
  let reviewItems: ReviewItems | undefined;
  let previews: Previews | undefined;
  let items: Collection<ReviewItem>;
  /** `<start ISO>!<id>` -> id: review items in time order. */
  let itemsByStart: Collection<string>;
  /** Each camera's review rules, read once and dropped when a camera changes. */
  let rules: Promise<Map<string, Camera['review']>> | undefined;

  const removeEvent = async (e: StoredEvent) => {
    await rm(snapshotFile(e), { force: true });
    await rm(thumbnailFile(e), { force: true });
    await byStart.del(`${e.start}!${e.id}`);
    await events.del(e.id);
  };

  /** Events (and their snapshots) older than their camera's eventRetainDays go. */
  const applyRetention = async (broker: ServiceBroker, log: { info(msg: string): void }) => {
    const cameras = await call(broker, 'cameras.specs', {}).catch((err: Error) => {
      // Without the registry no camera's days are known: keep everything this round.
      log.info(`event retention skipped this round: the camera registry is not reachable (${err.message})`);
      return undefined;
    });
    if (!cameras) return;
    const days = new Map(cameras.map((c) => [c.id, c.recording.eventRetainDays]));
    const fallback = config.video.removedCameraRetainDays;
    const shortest = Math.min(fallback, ...days.values());
    const now = Date.now();
    let removed = 0;
    for await (const [, id] of byStart.entries({ lt: new Date(now - shortest * DAY).toISOString() })) {
      const e = await events.get(id);
      if (e && Date.parse(e.start) < now - (days.get(e.camera) ?? fallback) * DAY) {
        await removeEvent(e);
        removed++;
      }
    }
    if (removed) log.info(`retention: ${removed} events past their camera's eventRetainDays removed`);
    // Review items (and their previews) go with the events of their time.
    for await (const [key, id] of itemsByStart.entries({ lt: new Date(now - shortest * DAY).toISOString() })) {
      const item = await items.get(id);
      if (item && Date.parse(item.start) < now - (days.get(item.camera) ?? fallback) * DAY) {
        await previews?.remove(item);
        await itemsByStart.del(key);
        await items.del(id);
      }
    }
    // The ended log keeps no entry older than the oldest event still kept.
    const gone: string[] = [];
    for await (const [seq, id] of endedLog.entries({ limit: 10_000 })) {
      if (await events.get(id)) break;
      gone.push(seq);
    }
    await endedLog.delMany(gone, { sync: false });
  };

  /** The detector's start/update/end of an object, stored and announced. */
  const recordEvent = async (ctx: Ctx<EventRecord>) => {
    const msg = ctx.params;
    const current = await events.get(msg.id);
    const { snapshot, type, ...fields } = msg;
    const whole = EventFields.safeParse({ ...current, ...fields });
    // A partial update of an event this box never stored has nothing to complete.
    if (!whole.success) throw new NotFoundError('Event', msg.id);
    if (snapshot) {
      await mkdir(path.dirname(snapshotFile(msg)), { recursive: true });
      await writeFile(snapshotFile(msg), Buffer.from(snapshot, 'base64'));
      await rm(thumbnailFile(msg), { force: true }); // made again from the new picture when asked
    }
    const next: StoredEvent = {
      reviewed: false,
      ...current,
      ...whole.data,
      // An update from a detector that restarted must not reopen an ended event.
      end: fields.end ?? current?.end ?? null,
      hasSnapshot: Boolean(snapshot) || (current?.hasSnapshot ?? false),
      snapshotVersion: versionOf(current) + (snapshot ? 1 : 0),
      updatedAt: new Date().toISOString(),
    };
    await events.put(next.id, next);
    if (!current) await byStart.put(`${next.start}!${next.id}`, next.id);
    if (next.end !== null && (current?.end ?? null) === null) await logEnded(next.id);
    const name = type === 'start' && !current ? 'event.started' : type === 'end' ? 'event.ended' : 'event.updated';
    void broadcast(ctx, name, next);
    await reviewItems?.onEvent(next);
    return { ok: true };
  };

  const inflight = new Set<Promise<unknown>>();
  /** Records by event id: the next one waits for the last. */
  const recordTurns = new KeyTurns();

  const find = (id: string) => events.require(id, 'Event');
  const findItem = (id: string) => items.require(id, 'Review item');

  const rulesOf = async (camera: string, broker: ServiceBroker) => {
    rules ??= call(broker, 'cameras.specs', {}).then((cameras) => new Map(cameras.map((c) => [c.id, c.review])));
    const known = await rules.catch(() => undefined);
    if (!known) rules = undefined; // not reachable now: ask again next time
    return known?.get(camera);
  };

  /**
   * The event's thumbnail, made from its picture the first time it is asked for. In the event's
   * turn, so a new picture stored meanwhile cannot be followed by a thumbnail of the old one.
   */
  const thumbnailOf = (e: StoredEvent) =>
    recordTurns.run(e.id, async () => {
      const made = await readFile(thumbnailFile(e)).catch(() => undefined);
      if (made) return made;
      const jpeg = await readFile(snapshotFile(e));
      const small = await ffmpegJpeg(config.video.ffmpegPath, jpeg, {
        format: 'jpeg_pipe',
        filter: `scale=${THUMBNAIL_WIDTH}:-2`,
      });
      await writeFile(thumbnailFile(e), small);
      return small;
    });

  return {
    name: 'events',

    actions: {
      // Internal: the detector's start/update/end of an object.
      // Internal. Tracked, so a box that stops still stores the ends its detector sends as it stops.
      record: action({
        input: EventRecord,
        handler(ctx) {
          // One event's records are stored one after another, in the order they came: an update
          // still writing its snapshot must not put back the open event an end just closed.
          const work = recordTurns.run(ctx.params.id, () => recordEvent(ctx));
          inflight.add(work);
          return work.finally(() => inflight.delete(work));
        },
      }),
      list: action({
        input: ListInput,
        permission: 'events.view',
        async handler(ctx) {
          const q = ctx.params;
          return newestFirst(
            byStart,
            events,
            q,
            (e) =>
              (!q.camera || e.camera === q.camera) &&
              (!q.label || e.label === q.label) &&
              (!q.zone || e.zones.includes(q.zone)) &&
              (q.reviewed === undefined || e.reviewed === q.reviewed),
          );
        },
      }),
      get: action({
        input: IdInput,
        permission: 'events.view',
        handler: (ctx) => find(ctx.params.id),
      }),
      snapshot: action({
        input: SnapshotInput,
        permission: 'events.view',
        async handler(ctx) {
          const e = await find(ctx.params.id);
          const jpeg = e.hasSnapshot ? await readFile(snapshotFile(e)).catch(() => undefined) : undefined;
          if (!jpeg) throw new NotReadyError(`Event "${e.id}" has no snapshot`, 'NO_SNAPSHOT');
          const version = versionOf(e);
          if (ctx.params.thumbnail) return { jpegBase64: (await thumbnailOf(e)).toString('base64'), version };
          const out = ctx.params.boxes ? await drawBox(config.video.ffmpegPath, jpeg, e.box) : jpeg;
          return { jpegBase64: out.toString('base64'), version };
        },
      }),
      /**
       * Internal: events that ended after sequence `after`, in the order they ended; `after: -1`
       * asks only for the last sequence (where a new consumer starts).
       */
      endedAfter: action({
        input: z.strictObject({
          after: z.number().int().min(-1),
          limit: z.number().int().min(1).max(1000).default(100),
        }),
        async handler(ctx) {
          const ended: Array<{ seq: number; event: StoredEvent }> = [];
          let through = ctx.params.after;
          if (through >= 0) {
            for await (const [key, id] of endedLog.entries({ gte: seqKey(through + 1), limit: ctx.params.limit })) {
              through = Number(key);
              const event = await events.get(id);
              if (event) ended.push({ seq: through, event }); // one removed since is stepped over
            }
          }
          return { last: lastEndSeq, ended, through };
        },
      }),
      /** The recordings range of an event clip: pre- and post-roll around the object. */
      clipRange: action({
        input: IdInput,
        permission: 'events.view',
        async handler(ctx) {
          const e = await find(ctx.params.id);
          const end = e.end ? Date.parse(e.end) : Date.now();
          return {
            camera: e.camera,
            from: new Date(Date.parse(e.start) - config.detector.preRollSeconds * 1000).toISOString(),
            to: new Date(end + config.detector.postRollSeconds * 1000).toISOString(),
          };
        },
      }),
      review: action({
        input: z.strictObject({ id: EventId, reviewed: z.boolean().default(true) }),
        permission: 'events.review',
        async handler(ctx) {
          const e = { ...(await find(ctx.params.id)), reviewed: ctx.params.reviewed };
          await events.put(e.id, e);
          return e;
        },
      }),
      reviewItems: action({
        input: ReviewListInput,
        permission: 'events.view',
        async handler(ctx) {
          const q = ctx.params;
          return newestFirst(
            itemsByStart,
            items,
            q,
            (i) =>
              (!q.camera || i.camera === q.camera) &&
              (!q.severity || i.severity === q.severity) &&
              (q.reviewed === undefined || i.reviewed === q.reviewed),
          );
        },
      }),
      reviewItem: action({
        input: ReviewIdInput,
        permission: 'events.view',
        handler: (ctx) => findItem(ctx.params.id),
      }),
      reviewPreview: action({
        input: ReviewIdInput,
        permission: 'events.view',
        async handler(ctx) {
          const item = await findItem(ctx.params.id);
          const mp4 = item.hasPreview ? await readFile(previews!.fileOf(item)).catch(() => undefined) : undefined;
          if (!mp4) throw new NotReadyError(`Review item "${item.id}" has no preview`, 'NO_PREVIEW');
          return { mp4Base64: mp4.toString('base64') };
        },
      }),
      markReviewed: action({
        input: MarkReviewedInput,
        permission: 'events.review',
        async handler(ctx) {
          const p = ctx.params;
          const ids: string[] = [];
          if ('ids' in p) ids.push(...p.ids);
          else for await (const [, id] of itemsByStart.entries({ lt: new Date(p.before).toISOString() })) ids.push(id);
          let marked = 0;
          for (const id of ids) {
            const item = await items.get(id);
            if (!item || item.reviewed === p.reviewed) continue;
            if (
              'before' in p &&
              ((p.camera && item.camera !== p.camera) || (p.severity && item.severity !== p.severity))
            )
              continue;
            const next = { ...item, reviewed: p.reviewed };
            await items.put(id, next);
            void broadcast(ctx, 'review.updated', next);
            marked++;
          }
          return { marked };
        },
      }),
      remove: action({
        input: z.strictObject({ id: EventId }),
        permission: 'events.review',
        async handler(ctx) {
          const e = await find(ctx.params.id);
          await removeEvent(e);
          for (const item of (await reviewItems?.removeEvent(e)) ?? []) await previews?.remove(item);
          void broadcast(ctx, 'event.removed', { id: e.id, camera: e.camera, by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true };
        },
      }),
    },

    events: {
      ...on('camera.added', () => (rules = undefined)),
      ...on('camera.updated', () => (rules = undefined)),
      ...on('camera.removed', () => (rules = undefined)),
    },

    async started() {
      store = await Store.open(dataPaths(config).db('events'));
      events = store.collection<StoredEvent>('events');
      byStart = store.collection<string>('byStart');
      endedLog = store.collection<string>('ended');
      items = store.collection<ReviewItem>('review');
      itemsByStart = store.collection<string>('reviewByStart');
      const broker = this.broker;
      previews = new Previews(
        broker,
        config.video.ffmpegPath,
        dataPaths(config).previews,
        (config.video.segmentSeconds + 3) * 1000,
        this.logger,
      );
      const previewMade = async (item: ReviewItem) => {
        if (!store) return; // stopped meanwhile
        const current = await items.get(item.id);
        if (!current) return;
        const next = { ...current, hasPreview: true, updatedAt: new Date().toISOString() };
        await items.put(next.id, next);
        void broadcast(broker, 'review.updated', next);
      };
      reviewItems = new ReviewItems(
        { items, byStart: itemsByStart },
        (camera) => rulesOf(camera, broker),
        (name, item) => void broadcast(broker, name, item),
        (item) => previews?.schedule(item, previewMade),
        { idleMs: config.detector.reviewIdleSeconds * 1000, maxMs: config.detector.reviewMaxSeconds * 1000 },
        this.logger,
      );
      const leftOpen = await reviewItems.closeLeftOpen();
      afterNodeStart(broker, () =>
        leftOpen.forEach((item) => {
          void broadcast(broker, 'review.closed', item);
          previews?.schedule(item, previewMade);
        }),
      );
      for await (const [seq] of endedLog.entries({ reverse: true, limit: 1 })) lastEndSeq = Number(seq);
      // Events left open by a stop or crash end where they were last seen, as any end does: none
      // stays open for ever, and what follows an end (cloud sync, MQTT, the operator) happens.
      const closed: StoredEvent[] = [];
      for (const e of await events.values()) {
        if (e.end !== null) continue;
        const ended = { ...e, end: e.updatedAt, updatedAt: new Date().toISOString() };
        await events.put(e.id, ended);
        await logEnded(e.id);
        closed.push(ended);
      }
      if (closed.length) this.logger.info(`${closed.length} events left open by the last stop are ended`);
      afterNodeStart(this.broker, () => closed.forEach((e) => void broadcast(this.broker, 'event.ended', e)));
      const retain = () =>
        applyRetention(this.broker, this.logger).catch((err: Error) =>
          this.logger.error(`event retention failed: ${err.message}`),
        );
      retentionTimer = setInterval(retain, config.video.retentionIntervalSeconds * 1000).unref();
      void retain();
    },

    async stopped() {
      clearInterval(retentionTimer);
      // Services stop together: let the detector's last calls arrive, and finish them.
      await new Promise((r) => setTimeout(r, 50));
      await Promise.allSettled([...inflight]);
      // Then nothing more is grouped or made: open items are closed at the next start.
      await Promise.all([reviewItems?.stop(), previews?.stop()]);
      await store?.close();
      store = undefined;
    },
  };
}
