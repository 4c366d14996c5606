// sync: sends the part of the box's data that the plan chooses (event JSON, snapshots, event
// clips, recordings, audit) to S3-compatible and Azure Blob targets, from a durable outbox that
// survives crashes, backs off when a target is down, and keeps to a bandwidth cap and schedule.
// The work is in its parts: intake (what is admitted), senders (the targets' workers),
// event-uploads (what an ended event or a segment sends), audit-batches; this file wires them.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Service, ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action, validationError } from '../../lib/actions.ts';
import { AUDITED_EVENTS } from '../../lib/audit.ts';
import { on } from '../../lib/bus.ts';
import { ConflictError, ForbiddenError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { AuditBatches } from './audit-batches.ts';
import { OffsiteRecordings } from './offsite-recordings.ts';
import type { ReviewItem } from '../events/events.schemas.ts';
import { EventUploads, type ClipJob } from './event-uploads.ts';
import { Intake, type SyncParts } from './intake.ts';
import { Outbox, type Item } from './outbox.ts';
import { Senders, type TargetState } from './senders.ts';
import {
  Policy,
  publicTarget,
  RESOURCES,
  Target,
  TargetId,
  widening,
  type QueuedItem,
  type SyncStatus,
} from './sync.schemas.ts';
import { classify, openTarget } from './targets.ts';

const STATUS_EVERY_MS = 1000;

/** The parts, while the service runs. */
interface Running {
  store: Store;
  parts: SyncParts;
  targetSpecs: Collection<Target>;
  intake: Intake;
  senders: Senders;
  uploads: EventUploads;
  audit: AuditBatches;
  offsite: OffsiteRecordings;
  sweepTimer: NodeJS.Timeout | undefined;
}

export function syncService(config: Config): ServiceSchema {
  const paths = dataPaths(config);
  const o = config.sync;
  let policy: Policy = Policy.parse({});
  let run: Running | undefined;
  let statusTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  const running = () => {
    if (!run) throw new Error('sync is not started');
    return run;
  };
  /** Alerts-only plans: an alert's footage goes up as it opens, grows and closes. */
  function alertFootage(this: Service, item: ReviewItem) {
    return run?.offsite
      .reviewChanged(this.broker, item)
      .catch((err: Error) => this.logger.warn(`sync: alert footage: ${err.message}`));
  }
  /** Recordings (paths under media/) in the outbox: the uploads read them from the hot disk. */
  const queuedRecordings = () => {
    const media = path.relative(paths.root, paths.media);
    return [...running().parts.outbox.all()]
      .filter((i) => i.resource === 'recordings')
      .map((i) => path.relative(media, i.file));
  };

  const status = (): SyncStatus => {
    const { parts, intake, senders, uploads } = running();
    const now = Date.now();
    const { items, bytes, oldest } = parts.outbox.size;
    return {
      queue: {
        items,
        bytes,
        maxBytes: o.maxQueueBytes,
        oldestAgeSeconds: oldest === null ? null : Math.round((now - oldest) / 1000),
      },
      counters: intake.counters,
      /** Services whose absence holds work back now (clips wait for the recorder, ended events for events). */
      waitingFor: [...uploads.waitingFor].sort(),
      targets: senders.status(now),
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
        handler(ctx): QueuedItem[] {
          return [...running().parts.outbox.all()].slice(0, ctx.params.limit).map((i) => ({
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
        handler: async () => (await running().targetSpecs.values()).map(publicTarget),
      }),

      addTarget: action({
        input: Target,
        permission: 'cloud.manage',
        async handler(ctx) {
          const spec = ctx.params;
          if (await running().targetSpecs.get(spec.id))
            throw new ConflictError(`Target "${spec.id}" exists`, 'TARGET_EXISTS', { id: spec.id });
          await running().targetSpecs.put(spec.id, spec);
          await running().senders.start(spec);
          running().parts.changed();
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
          const { targetSpecs, senders, parts } = running();
          const current = await targetSpecs.require(ctx.params.id, 'Target');
          const merged = Target.safeParse({ ...current, ...ctx.params, type: current.type });
          if (!merged.success) throw validationError(merged.error);
          await senders.stop(current.id);
          await targetSpecs.put(current.id, merged.data);
          await senders.start(merged.data);
          parts.changed();
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
          const { store, targetSpecs, senders, parts } = running();
          await targetSpecs.require(id, 'Target');
          await senders.stop(id);
          await targetSpecs.del(id);
          await store.collection<TargetState>('targetState').del(id);
          for (const item of [...parts.outbox.all()]) if (item.pending[id]) await senders.finish(item, id);
          parts.changed();
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
          const spec = 'type' in ctx.params ? ctx.params : await running().targetSpecs.require(ctx.params.id, 'Target');
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
          await running().parts.meta.put('policy', policy);
          running().senders.policyChanged();
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
          const item = await running().intake.enqueueBytes(n, Buffer.from(base64, 'base64'));
          return { queued: Boolean(item), id: item?.id ?? null };
        },
      }),

      /** Internal: recordings still to go up, which retention keeps while it may. */
      pinned: action({
        input: z.strictObject({}),
        handler: () => (o.retentionWaitsForUpload ? queuedRecordings() : []),
      }),
      /** Internal: recordings the uploads will read from the hot disk, which the archive tier leaves there. */
      queuedRecordings: action({
        input: z.strictObject({}),
        handler: () => queuedRecordings(),
      }),
    },

    events: {
      // The broadcast only says "look": what ended is read from the events service's log, in order.
      ...on('event.ended', () => run?.uploads.lookForEndedEvents()),
      '$services.changed'() {
        run?.uploads.servicesChanged();
      },
      // Closed as ffmpeg cut it, or healed into the index after a crash cut it short.
      ...on('recording.segment.closed', (seg) => run?.offsite.segmentClosed(seg)),
      ...on('recording.segment.healed', (seg) => run?.offsite.segmentClosed(seg)),
      // Alerts-only plans: an alert's footage, from its pre-roll to its post-roll.
      ...on('review.opened', alertFootage),
      ...on('review.updated', alertFootage),
      ...on('review.closed', alertFootage),
      ...Object.fromEntries(
        AUDITED_EVENTS.map((name) => [
          name,
          {
            async handler(ctx: { params: Record<string, unknown> }) {
              await run?.audit.add(name, ctx.params);
            },
          },
        ]),
      ),
    },

    async started() {
      const broker = this.broker;
      await mkdir(paths.outbox, { recursive: true });
      const store = await Store.open(paths.db('sync'));
      const meta = store.collection<unknown>('meta');
      const saved = await meta.get('policy');
      if (saved) policy = Policy.parse(saved);
      stopping = false;
      const parts: SyncParts = {
        config,
        paths,
        outbox: new Outbox(store.collection<Item>('items'), o.maxQueueBytes),
        meta,
        policy: () => policy,
        // One status broadcast at most every STATUS_EVERY_MS, and none while nothing changes.
        changed: () => {
          if (stopping || statusTimer) return;
          statusTimer = setTimeout(() => {
            statusTimer = undefined;
            void broker.broadcast('sync.status.changed', status());
          }, STATUS_EVERY_MS);
        },
        log: this.logger,
      };
      await parts.outbox.load();
      const senders = new Senders(parts, store.collection<TargetState>('targetState'));
      const intake = new Intake(parts, senders);
      senders.intake = intake;
      await intake.load();
      const enabled = () => senders.enabled();
      const uploads = new EventUploads(parts, intake, enabled, store.collection<ClipJob>('clipJobs'));
      const audit = new AuditBatches(parts, intake, enabled, store.collection<Record<string, unknown>>('audit'));
      const targetSpecs = store.collection<Target>('targets');
      const offsite = new OffsiteRecordings(
        parts,
        o.boxId,
        (segment) => uploads.onSegment(segment),
        () => senders.clients(),
      );
      run = { store, parts, targetSpecs, intake, senders, uploads, audit, offsite, sweepTimer: undefined };
      senders.policyChanged();
      for (const spec of await targetSpecs.values()) await senders.start(spec);
      const { items, bytes } = parts.outbox.size;
      if (items) this.logger.info(`sync: ${items} items (${bytes} bytes) from before the restart wait to go up`);
      uploads.start(broker);
      audit.start();
      void offsite.start(broker).catch((err: Error) => this.logger.warn(`sync: alert windows: ${err.message}`));
      const sweep = () => void offsite.sweep().catch((err: Error) => this.logger.error(`sync: sweep: ${err.message}`));
      run.sweepTimer = setInterval(sweep, o.offsiteSweepSeconds * 1000).unref();
    },

    async stopped() {
      if (!run) return;
      const { store, uploads, audit, senders } = run;
      stopping = true;
      clearInterval(run.sweepTimer);
      audit.stop();
      clearTimeout(statusTimer);
      statusTimer = undefined;
      await uploads.stop();
      await senders.stopAll();
      await store.close();
      run = undefined;
    },
  };
}
