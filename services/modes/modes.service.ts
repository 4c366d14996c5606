// modes: the site's modes and which one is on. A switch (web UI, API, MQTT, Home Assistant, the
// operator, the schedule, an automation) is kept, told on the bus with who made it, and every
// camera follows at once: the cameras service lays the mode over each camera's own settings.
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { afterNodeStart } from '../../lib/after-start.ts';
import { broadcast, call } from '../../lib/bus.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { ModeClock } from './mode-clock.ts';
import {
  ALL_CAMERAS,
  BUILT_IN_MODES,
  IdInput,
  Mode,
  ScheduleInput,
  SetInput,
  type ActiveMode,
  type ScheduleEntry,
} from './modes.schemas.ts';

const NoInput = z.strictObject({});

/** Every site's modes as they come: Home leaves the cameras as they are; Away and Vacation watch and tell. */
function builtInModes(): Mode[] {
  const watch = { detection: { enabled: true }, notifications: true };
  return [
    { id: 'home', name: 'Home', cameras: {}, notifyUsers: null },
    { id: 'away', name: 'Away', cameras: { [ALL_CAMERAS]: watch }, notifyUsers: null },
    { id: 'night', name: 'Night', cameras: {}, notifyUsers: null },
    {
      id: 'vacation',
      name: 'Vacation',
      cameras: { [ALL_CAMERAS]: { ...watch, recording: { mode: 'continuous' } } },
      notifyUsers: null,
    },
  ];
}

interface SiteState {
  active: ActiveMode;
  schedule: ScheduleEntry[];
}

export function modesService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let modes: Collection<Mode> | undefined;
  let site: Collection<SiteState> | undefined;
  let state: SiteState | undefined;
  let clock: ModeClock | undefined;

  const ready = () => {
    if (!modes || !state) throw new NotFoundError('Modes', 'the modes service is starting');
    return { modes, state };
  };
  const find = async (id: string): Promise<Mode> => {
    const mode = await ready().modes.get(id);
    if (!mode) throw new NotFoundError('Mode', id);
    return mode;
  };
  const saveState = () => site!.put('site', state!, { sync: true });

  /** Tells the cameras (and the broker) the mode in force and every mode's id. */
  async function applied(broker: Ctx<unknown>['broker']) {
    const { active } = ready().state;
    const all = await ready().modes.values();
    const mode = all.find((m) => m.id === active.id) ?? builtInModes()[0]!;
    await broadcast(broker, 'mode.applied', { active, mode, options: all.map((m) => m.id) });
  }

  /** A mode may name only cameras the box has, and zones those cameras have. */
  async function checkCameras(ctx: Ctx<unknown>, mode: Mode) {
    const named = Object.keys(mode.cameras).filter((id) => id !== ALL_CAMERAS);
    if (named.length === 0 && !Object.values(mode.cameras).some((o) => o.review?.alertZones?.length)) return;
    const cameras = new Map((await call(ctx.broker, 'cameras.specs', {})).map((c) => [c.id, c]));
    for (const [id, overrides] of Object.entries(mode.cameras)) {
      const camera = cameras.get(id);
      if (id !== ALL_CAMERAS && !camera)
        throw new BadRequestError(
          `Mode "${mode.id}" names camera "${id}", which the box does not have`,
          'UNKNOWN_CAMERA',
          {
            field: `cameras.${id}`,
          },
        );
      const zones = camera ? camera.detection.zones.map((z) => z.name) : [];
      const unknown = overrides.review?.alertZones?.find((zone) => id === ALL_CAMERAS || !zones.includes(zone));
      if (unknown !== undefined)
        throw new BadRequestError(
          id === ALL_CAMERAS
            ? `Mode "${mode.id}": alert zones are a camera's own; name them under the camera, not "*"`
            : `Mode "${mode.id}" names zone "${unknown}", which camera "${id}" does not have`,
          'UNKNOWN_ZONE',
          { field: `cameras.${id}.review.alertZones`, zone: unknown },
        );
    }
  }

  return {
    name: 'modes',

    actions: {
      list: action({
        input: NoInput,
        permission: 'live.view',
        async handler() {
          const { modes: all, state: s } = ready();
          const builtIn = new Set<string>(BUILT_IN_MODES);
          return {
            active: s.active,
            modes: (await all.values()).map((m) => ({ ...m, builtIn: builtIn.has(m.id) })),
            schedule: s.schedule,
          };
        },
      }),

      active: action({
        input: NoInput,
        async handler() {
          const { state: s } = ready();
          return { active: s.active, mode: await find(s.active.id) };
        },
      }),

      set: action({
        input: SetInput,
        permission: 'modes.switch',
        async handler(ctx) {
          const { state: s } = ready();
          const mode = await find(ctx.params.mode);
          if (s.active.id === mode.id) return { active: s.active, changed: false };
          const caller = ctx.meta.caller;
          const via = caller?.via ?? ctx.params.via ?? 'cli';
          const by = caller?.username ?? (via === 'schedule' ? 'schedule' : 'box');
          const from = s.active.id;
          s.active = { id: mode.id, since: new Date().toISOString(), by, via };
          await saveState();
          ctx.broker.logger.info(`Mode ${from} → ${mode.id} (by ${by}, via ${via})`);
          await broadcast(ctx, 'mode.changed', {
            from,
            to: mode.id,
            by,
            via,
            at: s.active.since,
            ...(ctx.params.cause ? { cause: ctx.params.cause } : {}),
          });
          await applied(ctx.broker);
          return { active: s.active, changed: true };
        },
      }),

      save: action({
        input: Mode,
        permission: 'modes.manage',
        async handler(ctx) {
          const { modes: all } = ready();
          await checkCameras(ctx, ctx.params);
          await all.put(ctx.params.id, ctx.params, { sync: true });
          await applied(ctx.broker);
          return ctx.params;
        },
      }),

      remove: action({
        input: IdInput,
        permission: 'modes.manage',
        async handler(ctx) {
          const { modes: all, state: s } = ready();
          const { id } = ctx.params;
          await find(id);
          if ((BUILT_IN_MODES as readonly string[]).includes(id))
            throw new ConflictError(
              `Mode "${id}" is one of every site's modes: change it, it cannot be removed`,
              'MODE_BUILT_IN',
            );
          if (s.active.id === id) throw new ConflictError(`Mode "${id}" is on: switch to another first`, 'MODE_ACTIVE');
          if (s.schedule.some((e) => e.mode === id))
            throw new ConflictError(
              `The schedule switches to mode "${id}": take it out of the schedule first`,
              'MODE_SCHEDULED',
            );
          await all.del(id, { sync: true });
          await applied(ctx.broker);
          return { ok: true as const };
        },
      }),

      setSchedule: action({
        input: ScheduleInput,
        permission: 'modes.manage',
        async handler(ctx) {
          const { state: s } = ready();
          for (const [i, entry] of ctx.params.entries.entries()) {
            if (!(await ready().modes.get(entry.mode)))
              throw new BadRequestError(`entries.${i}.mode: there is no mode "${entry.mode}"`, 'UNKNOWN_MODE', {
                field: `entries.${i}.mode`,
              });
          }
          s.schedule = ctx.params.entries;
          await saveState();
          return s.schedule;
        },
      }),
    },

    async started() {
      store = await Store.open(dataPaths(config).db('modes'));
      modes = store.collection<Mode>('modes');
      site = store.collection<SiteState>('site');
      for (const mode of builtInModes()) if (!(await modes.get(mode.id))) await modes.put(mode.id, mode);
      state = (await site.get('site')) ?? {
        active: { id: 'home', since: new Date().toISOString(), by: 'box', via: 'cli' },
        schedule: [],
      };
      // A mode removed from under the state (an old release) falls back to Home.
      if (!(await modes.get(state.active.id))) state.active = { ...state.active, id: 'home' };
      await saveState();
      // Told once the node is up: services starting beside this one would miss it before.
      afterNodeStart(this.broker, () => void applied(this.broker).catch(() => undefined));
      clock = new ModeClock(
        store.collection<number>('clock'),
        () => state!.schedule,
        (mode) =>
          call(this.broker, 'modes.set', { mode, via: 'schedule' }).then(
            () => undefined,
            (err: Error) => this.logger.warn(`Mode schedule: the switch to "${mode}" failed: ${err.message}`),
          ),
        this.logger,
      );
      await clock.start();
    },

    async stopped() {
      clock?.stop();
      clock = undefined;
      await store?.close();
      store = undefined;
      modes = undefined;
      site = undefined;
      state = undefined;
    },
  };
}
