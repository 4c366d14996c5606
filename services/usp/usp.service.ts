// usp: the box's USP (TR-369) controller for its camera agents, over the MQTT MTP of the box's
// own broker. An agent announces itself with an MQTTConnect record on fogedge/devices/<id>/usp;
// the controller answers on fogedge/devices/<id>/cmd/usp. It keeps each endpoint (id, device,
// model, version), reads their data model, and sends requests and awaits their answers.
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import { z } from 'zod';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { action } from '../../lib/actions.ts';
import { NotFoundError, UnavailableError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import { decodeRecord, encodeRecord, errorOf, request, UspError, type Msg } from '../../lib/usp/codec.ts';
import { DeviceId } from '../devices/devices.service.ts';

/** The box's own USP endpoint id. */
export const controllerId = (config: Config) => `self::fogedge-${config.sync.boxId}`;

const REQUEST_TIMEOUT_MS = 15_000;

export interface Endpoint {
  endpointId: string;
  device: string;
  manufacturer: string | null;
  model: string | null;
  serialNumber: string | null;
  softwareVersion: string | null;
  connectedAt: string;
  lastSeenAt: string;
}

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export function uspService(config: Config): ServiceSchema {
  const self = controllerId(config);
  let store: Store | undefined;
  let endpoints: Collection<Endpoint>;
  const pending = new Map<string, Pending>();

  const send = (broker: ServiceBroker, e: Endpoint, msg: Msg) =>
    broker.call('mqtt.sendToDevice', { device: e.device, channel: 'usp', payloadBase64: Buffer.from(encodeRecord(self, e.endpointId, { msg })).toString('base64') });

  /** Sends a request and resolves with its response; an Error message rejects as a UspError. */
  const ask = async (broker: ServiceBroker, e: Endpoint, msgType: string, req: Record<string, unknown>): Promise<Msg> => {
    const msg = request(msgType, req);
    const answer = new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(msg.header.msgId);
        reject(new UnavailableError(`Camera agent ${e.endpointId} did not answer ${msgType} within ${REQUEST_TIMEOUT_MS / 1000} s`, 'USP_TIMEOUT'));
      }, REQUEST_TIMEOUT_MS);
      pending.set(msg.header.msgId, { resolve, reject, timer });
    });
    await send(broker, e, msg);
    const reply = await answer;
    const err = errorOf(reply);
    if (err) throw err;
    return reply;
  };

  const find = async (device: string) => {
    for (const e of await endpoints.values()) if (e.device === device) return e;
    throw new NotFoundError('USP endpoint of device', device);
  };

  /** A USP error as the API gives it: the spec's code and message. */
  const apiError = (err: unknown) =>
    err instanceof UspError ? Object.assign(new UnavailableError(`USP error ${err.code}: ${err.message}`, 'USP_ERROR', { code: err.code, paramErrs: err.paramErrs }), { retryable: false }) : err;

  return {
    name: 'usp',

    actions: {
      endpoints: action({ input: z.strictObject({}), permission: 'devices.manage', handler: () => endpoints.values() }),

      /** Get on a camera agent's data model: the resolved objects and their parameters. */
      get: action({
        input: z.strictObject({ device: DeviceId, paths: z.array(z.string().min(1).max(256)).min(1).max(64) }),
        permission: 'devices.manage',
        async handler(ctx) {
          const reply = await ask(ctx.broker, await find(ctx.params.device), 'GET', { get: { paramPaths: ctx.params.paths } }).catch((err: unknown) => {
            throw apiError(err);
          });
          return reply.body.response!['getResp'].reqPathResults;
        },
      }),
    },

    events: {
      async 'agent.message'(ctx: { params: { device: string; channel: string; payloadBase64: string } }) {
        if (ctx.params.channel !== 'usp' || !store) return;
        const broker = this.broker;
        let env;
        try {
          env = decodeRecord(Buffer.from(ctx.params.payloadBase64, 'base64'));
        } catch (err) {
          return this.logger.warn(`usp: a record from device ${ctx.params.device} cannot be read: ${(err as Error).message}`);
        }
        if (env.toId !== self) return this.logger.warn(`usp: device ${ctx.params.device} sent a record for ${env.toId}, not this controller`);
        const now = new Date().toISOString();
        if (env.mqttConnect) {
          // Endpoint ids are claimed per device: one device cannot speak for another's endpoint.
          const known = (await endpoints.values()).find((e) => e.endpointId === env.fromId);
          if (known && known.device !== ctx.params.device) return this.logger.warn(`usp: device ${ctx.params.device} claims endpoint ${env.fromId} of device ${known.device}`);
          const e: Endpoint = { endpointId: env.fromId, device: ctx.params.device, manufacturer: null, model: null, serialNumber: null, softwareVersion: null, ...known, connectedAt: now, lastSeenAt: now };
          await endpoints.put(e.endpointId, e);
          this.logger.info(`usp: agent ${e.endpointId} connected (device ${e.device})`);
          // What it is and runs: read once it is known.
          void ask(broker, e, 'GET', { get: { paramPaths: ['Device.DeviceInfo.'] } })
            .then(async (reply) => {
              const info = reply.body.response!['getResp'].reqPathResults[0]?.resolvedPathResults?.find((r: { resolvedPath: string }) => r.resolvedPath === 'Device.DeviceInfo.')?.resultParams ?? {};
              const next = { ...((await endpoints.get(e.endpointId)) ?? e), manufacturer: info.Manufacturer ?? null, model: info.ModelName ?? null, serialNumber: info.SerialNumber ?? null, softwareVersion: info.SoftwareVersion ?? null };
              await endpoints.put(e.endpointId, next);
              broker.broadcast('usp.endpoint.connected', next);
            })
            .catch((err: Error) => this.logger.warn(`usp: reading ${e.endpointId} failed: ${err.message}`));
          return;
        }
        const e = await endpoints.get(env.fromId);
        if (!e || e.device !== ctx.params.device) return this.logger.warn(`usp: a record from unknown endpoint ${env.fromId} (device ${ctx.params.device})`);
        await endpoints.put(e.endpointId, { ...e, lastSeenAt: now }, { sync: false });
        if (!env.msg) return;
        const waiting = pending.get(env.msg.header.msgId);
        if (waiting) {
          pending.delete(env.msg.header.msgId);
          clearTimeout(waiting.timer);
          waiting.resolve(env.msg);
          return;
        }
        if (env.msg.header.msgType === 'NOTIFY') broker.broadcast('usp.notification', { endpointId: e.endpointId, device: e.device, notify: env.msg.body.request!['notify'] });
      },
    },

    async started() {
      store = await Store.open(dataPaths(config).db('usp'));
      endpoints = store.collection<Endpoint>('endpoints');
    },

    async stopped() {
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(new UnavailableError('The USP controller stopped', 'USP_STOPPED'));
      }
      pending.clear();
      await store?.close();
      store = undefined;
    },
  };
}
