// automations: the site's rules. Facts come from the bus (events, device messages and
// connections, camera status, the mode, the disk) and the clock (schedules, the sun); the engine
// runs what they fire, as each automation's owner. What an automation names is checked at save;
// when a camera, device or mode it names is removed, it is stopped with the reason.
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { afterNodeStart } from '../../lib/after-start.ts';
import { broadcast, call, callIfRunning, on } from '../../lib/bus.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../../lib/errors.ts';
import type { Role } from '../../lib/permissions.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import type { DeviceStates } from '../devices/devices.schemas.ts';
import { AutomationInput, IdInput, TracesInput, type Automation, type Trace } from './automations.schemas.ts';
import { AutomationClock } from './clock.ts';
import { Engine, type RunRecord } from './engine.ts';
import { Holds } from './holds.ts';
import { missingName, namesOf, type SiteNames } from './references.ts';
import { Scene } from './scene.ts';
import type { Fact } from './triggers.ts';

const NoInput = z.strictObject({});
/** How old the oldest queued upload may be before the sync queue counts as stuck, s. */
const SYNC_STUCK_SECONDS = 3600;

/** What the site has now, for checking what an automation names. */
async function siteNames(ctx: Ctx<unknown>, config: Config): Promise<SiteNames> {
  const [cameras, devices, modes, users] = await Promise.all([
    call(ctx.broker, 'cameras.specs', {}),
    call(ctx.broker, 'devices.list', {}),
    call(ctx.broker, 'modes.list', {}),
    call(ctx.broker, 'accounts.listUsers', {}),
  ]);
  return {
    cameras: new Map(cameras.map((c) => [c.id, c.detection.zones.map((z) => z.name)])),
    devices: new Set(devices.devices.map((d) => d.id)),
    modes: new Set(modes.modes.map((m) => m.id)),
    users: new Set(users.map((u) => u.username)),
    webhookAllow: config.automations.webhookAllow,
    hasPlace: config.site !== null,
  };
}

export function automationsService(config: Config): ServiceSchema {
  const options = config.automations;
  let store: Store | undefined;
  let saved: Collection<Automation> | undefined;
  let engine: Engine | undefined;
  let holds: Holds | undefined;
  let clock: AutomationClock | undefined;
  let loiterTimer: NodeJS.Timeout | undefined;
  const scene = new Scene();
  let mode = 'home';
  const deviceStates = new Map<string, DeviceStates>();
  const cameraStates = new Map<string, string>();
  /** Users' roles, read again when accounts change. */
  let roles: Promise<Map<string, Role>> | undefined;
  let diskFull = false;
  let syncStuck = false;

  const ready = () => {
    if (!engine || !saved) throw new NotFoundError('Automations', 'the automations service is starting');
    return { engine, saved };
  };
  const find = (id: string) => {
    const a = ready().engine.get(id);
    if (!a) throw new NotFoundError('Automation', id);
    return a;
  };
  /** Only its owner changes an automation (an admin too: it still runs as its owner, so with no more rights). */
  const mayChange = (ctx: Ctx<unknown>, a: Automation) => {
    const caller = ctx.meta.caller;
    if (caller && caller.role !== 'admin' && caller.username !== a.owner)
      throw new ForbiddenError(`Automation "${a.id}" is ${a.owner}'s`, { action: 'automations.save', needs: 'owner' });
  };

  return {
    name: 'automations',

    actions: {
      list: action({
        input: NoInput,
        permission: 'automations.manage',
        handler: () =>
          ready()
            .engine.all()
            .sort((a, b) => a.id.localeCompare(b.id)),
      }),
      get: action({ input: IdInput, permission: 'automations.manage', handler: (ctx) => find(ctx.params.id) }),

      save: action({
        input: AutomationInput,
        permission: 'automations.manage',
        async handler(ctx) {
          const { engine: e, saved: s } = ready();
          const before = e.get(ctx.params.id);
          if (before) mayChange(ctx, before);
          else if (e.all().length >= options.maxAutomations)
            throw new ConflictError(
              `The box has ${options.maxAutomations} automations (automations.maxAutomations)`,
              'TOO_MANY_AUTOMATIONS',
            );
          const missing = missingName(ctx.params, await siteNames(ctx, config));
          if (missing) throw new BadRequestError(missing.message, 'UNKNOWN_NAME', [missing] as never);
          const automation: Automation = {
            ...ctx.params,
            owner: before?.owner ?? ctx.meta.caller?.username ?? 'box',
            disabledReason: null, // saved again: someone looked at it
            updatedAt: new Date().toISOString(),
          };
          await s.put(automation.id, automation);
          e.set(automation);
          void broadcast(ctx, 'automation.saved', { id: automation.id, by: ctx.meta.caller?.username ?? 'box' });
          return automation;
        },
      }),

      remove: action({
        input: IdInput,
        permission: 'automations.manage',
        async handler(ctx) {
          const a = find(ctx.params.id);
          mayChange(ctx, a);
          await ready().saved.del(a.id);
          ready().engine.remove(a.id);
          void broadcast(ctx, 'automation.removed', { id: a.id, by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true as const };
        },
      }),

      traces: action({
        input: TracesInput,
        permission: 'automations.manage',
        async handler(ctx) {
          find(ctx.params.id);
          return ready().engine.traces(ctx.params.id, ctx.params.limit);
        },
      }),

      run: action({
        input: IdInput,
        permission: 'automations.manage',
        timeout: 30_000,
        async handler(ctx) {
          const a = find(ctx.params.id);
          mayChange(ctx, a);
          return ready().engine.runNow(a, { kind: 'manual', by: ctx.meta.caller?.username ?? 'box' });
        },
      }),
    },

    events: {
      ...on('event.started', function (e) {
        this.tell({ kind: 'event', on: 'start', event: e });
        this.sceneChanged(e);
      }),
      ...on('event.updated', function (e) {
        this.sceneChanged(e);
      }),
      ...on('event.ended', function (e) {
        this.tell({ kind: 'event', on: 'end', event: e });
        this.sceneChanged(e);
      }),
      // Devices' messages, as the devices service read them (their states now, for conditions too).
      ...on('device.reported', function ({ reports }) {
        for (const { device, topic, state } of reports) {
          deviceStates.set(device, { ...deviceStates.get(device), [topic]: state });
          this.tell({ kind: 'device.message', device, topic, payload: state.payload, value: state.value });
        }
      }),
      ...on('mqtt.device.connected', function ({ device }) {
        this.tell({ kind: 'device.connection', device, state: 'online' });
      }),
      ...on('mqtt.device.disconnected', function ({ device }) {
        this.tell({ kind: 'device.connection', device, state: 'offline' });
      }),
      ...on('camera.status.changed', function ({ id, status }) {
        const state = status.state === 'online' ? 'online' : status.state === 'offline' ? 'offline' : undefined;
        if (!state || cameraStates.get(id) === state) return;
        const was = cameraStates.get(id);
        cameraStates.set(id, state);
        if (was !== undefined || state === 'offline') this.tell({ kind: 'camera.status', camera: id, state });
      }),
      ...on('mode.changed', function (m) {
        mode = m.to;
        this.tell({ kind: 'mode', from: m.from, to: m.to, ...(m.cause ? { cause: m.cause } : {}) }, m.cause ?? []);
      }),
      ...on('recording.disk.changed', function ({ full }) {
        if (full && !diskFull) this.tell({ kind: 'system', what: 'disk.low' });
        diskFull = full;
      }),
      // What an automation names is gone: it is stopped, with the reason, until someone saves it again.
      ...on('camera.removed', function ({ id }) {
        return this.namedGone('camera', id);
      }),
      ...on('device.removed', function ({ id }) {
        deviceStates.delete(id);
        return this.namedGone('device', id);
      }),
      // The mode in force; and an automation naming a mode that is gone is stopped.
      ...on('mode.applied', function ({ active, options: modes }) {
        mode = active.id;
        const there = new Set(modes);
        return Promise.all(
          (engine?.all() ?? []).flatMap((a) =>
            namesOf(a)
              .filter((n) => n.kind === 'mode' && !there.has(n.name))
              .slice(0, 1)
              .map((n) => this.stop(a.id, `mode "${n.name}" (${n.field}) was removed`)),
          ),
        );
      }),
      'account.**'() {
        roles = undefined;
      },
    },

    methods: {
      tell(fact: Fact, chain: string[] = []) {
        engine?.handle(fact, chain);
      },

      sceneChanged(e: Parameters<Scene['update']>[0]) {
        for (const fact of scene.update(e)) engine?.handle(fact);
        // Loiter triggers are looked at each second while something is in view.
        if (scene.busy && !loiterTimer) {
          loiterTimer = setInterval(() => {
            const lengths = [
              ...new Set(
                (engine?.all() ?? []).flatMap((a) =>
                  a.triggers.flatMap((t) => (t.kind === 'event' && t.on === 'loiter' ? [t.loiterSeconds] : [])),
                ),
              ),
            ];
            for (const fact of scene.loitering(lengths)) engine?.handle(fact);
            if (!scene.busy) {
              clearInterval(loiterTimer);
              loiterTimer = undefined;
            }
          }, 1000);
        }
      },

      async namedGone(kind: 'camera' | 'device', id: string) {
        for (const a of engine?.all() ?? []) {
          const named = namesOf(a).find((n) => n.kind === kind && n.name === id);
          if (named) await this.stop(a.id, `${kind} "${id}" (${named.field}) was removed`);
        }
      },

      /** Stops an automation with the reason: kept on disk and told on the bus. */
      async stop(id: string, reason: string) {
        const a = engine?.get(id);
        if (!a || a.disabledReason) return;
        const stopped = { ...a, disabledReason: reason, updatedAt: new Date().toISOString() };
        engine!.set(stopped);
        await saved?.put(id, stopped);
        this.logger.warn(`Automation ${id} stopped: ${reason}`);
        void broadcast(this.broker, 'automation.stopped', { id, reason });
      },

      roleOf(username: string): Promise<Role | undefined> {
        roles ??= call(this.broker, 'accounts.listUsers', {}).then(
          (users) => new Map(users.map((u) => [u.username, u.role])),
          (err: Error) => {
            roles = undefined;
            throw err;
          },
        );
        return roles.then((m) => m.get(username));
      },

      async checkSync() {
        const status = await call(this.broker, 'sync.status', {}, { timeout: 5000, retries: 0 }).catch(() => undefined);
        if (!status) return;
        const stuck = status.queue.items > 0 && (status.queue.oldestAgeSeconds ?? 0) >= SYNC_STUCK_SECONDS;
        if (stuck && !syncStuck) this.tell({ kind: 'system', what: 'sync.stuck' });
        syncStuck = stuck;
      },
    },

    async started() {
      store = await Store.open(dataPaths(config).db('automations'));
      saved = store.collection<Automation>('automations');
      holds = new Holds(store.collection('holds'), this.broker, this.logger);
      engine = new Engine({
        runs: store.collection<RunRecord>('runs'),
        traces: store.collection<Trace>('traces'),
        roleOf: (u) => this.roleOf(u),
        site: () => ({
          mode,
          now: new Date(),
          deviceStates: (id) => deviceStates.get(id) ?? {},
          eventSince: async (label, camera, since) =>
            (
              await call(this.broker, 'events.list', {
                label,
                ...(camera ? { camera } : {}),
                from: since.toISOString(),
                limit: 1,
              })
            ).length > 0,
        }),
        steps: { broker: this.broker, holds, webhookAllow: options.webhookAllow },
        maxRunsPerMinute: options.maxRunsPerMinute,
        tracesKept: options.tracesKept,
        stopAutomation: (id, reason) => this.stop(id, reason),
        ran: (trace) => void broadcast(this.broker, 'automation.ran', trace),
        log: this.logger,
      });
      for (const a of await saved.values()) engine.set(a);
      // What the conditions read: the mode and the devices' states, if their services are up.
      const [active, states] = await Promise.all([
        callIfRunning(this.broker, 'modes.active', {}),
        callIfRunning(this.broker, 'devices.states', {}),
      ]);
      if (active) mode = active.active.id;
      for (const [id, s] of Object.entries(states ?? {})) deviceStates.set(id, s);
      // What the last stop left (holds to end, runs in a wait): once the services they call are up.
      const [h, e] = [holds, engine];
      afterNodeStart(this.broker, () => {
        void h.resume().catch((err: Error) => this.logger.warn(`Holds not resumed: ${err.message}`));
        void e.resume().catch((err: Error) => this.logger.warn(`Runs not resumed: ${err.message}`));
      });
      clock = new AutomationClock(
        () =>
          engine!
            .all()
            .filter((a) => a.enabled && !a.disabledReason)
            .flatMap((a) => a.triggers),
        config.site,
        (fact) => engine?.handle(fact),
        () => void this.checkSync(),
      );
      clock.start();
    },

    async stopped() {
      clock?.stop();
      clearInterval(loiterTimer);
      loiterTimer = undefined;
      holds?.stop();
      await engine?.stop();
      engine = undefined;
      await store?.close();
      store = undefined;
      saved = undefined;
    },
  };
}
