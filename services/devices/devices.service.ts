// devices: the MQTT devices of the site (cameras' agents, sensors, locks), each with its
// own secret (stored hashed), a state (allowed, denied, pending) and the topics it may
// read beyond its own. Unknown devices are refused, or land as pending while the
// installer has the pairing window open.
import { call, broadcast, on } from '../../lib/bus.ts';
import { randomBytes } from 'node:crypto';
import type { ServiceSchema } from 'moleculer';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { ConflictError, TooManyRequestsError, UnauthorizedError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { dummyHash, hashPassword, verifyPassword } from '../../lib/secrets.ts';
import {
  AuthenticateInput,
  DeviceId,
  DeviceState,
  DeviceType,
  Grants,
  ListInput,
  type Device,
  type DeviceStates,
} from './devices.schemas.ts';
import { DeviceStateStore } from './device-states.ts';

export const publicDevice = ({ secretHash: _, ...device }: Device) => device;

/** Failed sign-ins per device id in a window, then refused for a while (the device stays allowed). */
const MAX_FAILURES = 10;
const FAILURE_WINDOW_S = 60;
const newSecret = () => randomBytes(18).toString('base64url');

export function devicesService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let devices: Collection<Device>;
  let states: DeviceStateStore | undefined;
  /** Each device's type, for reading its messages without a read of the store each time. */
  const types = new Map<string, Device['type']>();
  let pairingUntil = 0;
  const failures = new RateLimiterMemory({ points: MAX_FAILURES, duration: FAILURE_WINDOW_S });

  const find = (id: string) => devices.require(id, 'Device');

  return {
    name: 'devices',

    actions: {
      list: action({
        input: ListInput,
        permission: 'devices.manage',
        async handler(ctx) {
          const all = (await devices.values()).map(publicDevice);
          return {
            devices: ctx.params.state ? all.filter((d) => d.state === ctx.params.state) : all,
            pairingUntil: pairingUntil > Date.now() ? new Date(pairingUntil).toISOString() : null,
          };
        },
      }),
      add: action({
        input: z.strictObject({
          id: DeviceId,
          name: z.string().min(1).max(64),
          grants: Grants.default([]),
          type: DeviceType.default('generic'),
        }),
        permission: 'devices.manage',
        async handler(ctx) {
          if (await devices.get(ctx.params.id))
            throw new ConflictError(`Device "${ctx.params.id}" already exists`, 'DEVICE_EXISTS');
          // One name, one identity on the broker: a device may not be called like a user.
          if ((await call(ctx.broker, 'accounts.exists', { username: ctx.params.id })).exists) {
            throw new ConflictError(
              `"${ctx.params.id}" is the name of a user; choose another id for the device`,
              'NAME_OF_A_USER',
            );
          }
          const secret = newSecret();
          const device: Device = {
            ...ctx.params,
            state: 'allowed',
            secretHash: await hashPassword(secret),
            createdAt: new Date().toISOString(),
            origin: 'added',
          };
          await devices.put(device.id, device);
          types.set(device.id, device.type);
          ctx.broadcast('device.added', { id: device.id, by: ctx.meta.caller?.username ?? 'box' });
          // The only time the secret is shown: the box keeps its hash.
          return { ...publicDevice(device), secret };
        },
      }),
      update: action({
        input: z.strictObject({
          id: DeviceId,
          name: z.string().min(1).max(64).optional(),
          state: DeviceState.exclude(['pending']).optional(),
          grants: Grants.optional(),
          type: DeviceType.optional(),
        }),
        permission: 'devices.manage',
        async handler(ctx) {
          const { id, ...changes } = ctx.params;
          const device = {
            ...(await find(id)),
            ...Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)),
          } as Device;
          await devices.put(id, device);
          types.set(id, device.type);
          // The broker cuts a denied device off at once, and re-reads grants on its next connect.
          void broadcast(ctx, 'device.updated', {
            id,
            state: device.state,
            changed: Object.keys(changes),
            by: ctx.meta.caller?.username ?? 'box',
          });
          return publicDevice(device);
        },
      }),
      newSecret: action({
        input: z.strictObject({ id: DeviceId }),
        permission: 'devices.manage',
        async handler(ctx) {
          const device = await find(ctx.params.id);
          const secret = newSecret();
          await devices.put(device.id, { ...device, secretHash: await hashPassword(secret) });
          void broadcast(ctx, 'device.updated', {
            id: device.id,
            state: device.state,
            changed: ['secret'],
            by: ctx.meta.caller?.username ?? 'box',
          });
          return { id: device.id, secret };
        },
      }),
      remove: action({
        input: z.strictObject({ id: DeviceId }),
        permission: 'devices.manage',
        async handler(ctx) {
          await find(ctx.params.id);
          await devices.del(ctx.params.id);
          types.delete(ctx.params.id);
          await states?.forget(ctx.params.id);
          void broadcast(ctx, 'device.removed', { id: ctx.params.id, by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true };
        },
      }),
      states: action({
        input: z.strictObject({ id: DeviceId.optional() }),
        permission: 'live.view',
        async handler(ctx) {
          if (!states) return {};
          if (!ctx.params.id) return states.all();
          await find(ctx.params.id);
          return { [ctx.params.id]: states.get(ctx.params.id) };
        },
      }),
      pairing: action({
        input: z.strictObject({ seconds: z.number().int().min(0).max(3600).default(300) }),
        permission: 'devices.manage',
        handler(ctx) {
          pairingUntil = Date.now() + ctx.params.seconds * 1000;
          ctx.broadcast('device.pairing', {
            until: new Date(pairingUntil).toISOString(),
            by: ctx.meta.caller?.username ?? 'box',
          });
          return { pairingUntil: ctx.params.seconds ? new Date(pairingUntil).toISOString() : null };
        },
      }),
      // Internal: the broker asks whether a device may connect.
      authenticate: action({
        input: AuthenticateInput,
        async handler(ctx) {
          const { id, secret } = ctx.params;
          // Counted per address and device: guesses from elsewhere do not lock the device out.
          const key = `${ctx.params.ip ?? 'unknown'} ${id}`;
          const limited = await failures.get(key);
          if (limited && limited.remainingPoints <= 0) {
            throw new TooManyRequestsError(
              `Too many failed sign-ins for device "${id}"`,
              Math.ceil(limited.msBeforeNext / 1000),
            );
          }
          const device = DeviceId.safeParse(id).success ? await devices.get(id) : undefined;
          if (!device) {
            if (!ctx.params.pair) throw new UnauthorizedError(`Unknown device "${id}"`, 'UNKNOWN_DEVICE');
            await verifyPassword(secret, await dummyHash); // same time as a known device
            if (pairingUntil > Date.now() && DeviceId.safeParse(id).success && secret.length >= 12) {
              // It knocked while pairing was open: the installer allows (or denies) it.
              const pending: Device = {
                id,
                name: id,
                state: 'pending',
                secretHash: await hashPassword(secret),
                grants: [],
                createdAt: new Date().toISOString(),
                origin: 'paired',
              };
              await devices.put(id, pending);
              types.set(id, undefined);
              ctx.broadcast('device.pending', { id, ip: ctx.params.ip ?? null });
              return { id, state: pending.state, grants: [] };
            }
            throw new UnauthorizedError(`Unknown device "${id}"`, 'UNKNOWN_DEVICE');
          }
          if (!(await verifyPassword(secret, device.secretHash))) {
            await failures.consume(key).catch(() => undefined);
            throw new UnauthorizedError(`Wrong secret for device "${id}"`, 'BAD_DEVICE_SECRET');
          }
          await failures.delete(key);
          return { id, state: device.state, grants: device.grants };
        },
      }),
    },

    events: {
      // Devices' own messages (their states): each kept as its device's state on that topic.
      ...on('device.messages', function ({ messages }) {
        const reports = [];
        for (const m of messages) {
          if (!types.has(m.device)) continue; // removed, or not known yet
          const state = states?.received(
            m.device,
            types.get(m.device) ?? 'generic',
            m.topic,
            m.payload,
            m.retain,
            m.at,
          );
          if (state) reports.push({ device: m.device, topic: m.topic, state });
        }
        if (reports.length) void broadcast(this.broker, 'device.reported', { reports });
      }),
    },

    async started() {
      store = await Store.open(dataPaths(config).db('devices'));
      devices = store.collection<Device>('devices');
      for (const d of await devices.values()) types.set(d.id, d.type);
      states = new DeviceStateStore(store.collection<DeviceStates>('states'), this.logger);
      await states.load();
    },

    async stopped() {
      await states?.flush();
      states = undefined;
      await store?.close();
      store = undefined;
    },
  };
}
