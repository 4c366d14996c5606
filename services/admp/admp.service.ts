// admp: the box's uplink to its operator's device-management platform, an MQTT(S) client of
// the operator's broker. Up: health, events, camera agents' USP notifications, the audit log,
// command replies and the reported configuration, all through a durable ordered queue
// (store-and-forward) sent with QoS 2 on a
// persistent session. Down: commands, run as the operator's caller through the same actions,
// schemas and permissions as local ones, and the desired configuration (a device twin).
import { call, on } from '../../lib/bus.ts';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import { createHmac } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { lazyPackage } from '../../lib/lazy-package.ts';
import pLimit from 'p-limit';
import { z } from 'zod';
import { action, issuesOf, type Caller } from '../../lib/actions.ts';
import { AUDITED_EVENTS } from '../../lib/audit.ts';
import { backoffMs } from '../../lib/backoff.ts';
import { KeyTurns } from '../../lib/key-turns.ts';
import { ConflictError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import {
  ProvisioningInput,
  publicProvisioning,
  readProvisioning,
  writeProvisioning,
  type Provisioned,
} from '../../appliance/provisioning.ts';
import { version } from '../../appliance/version.ts';
import type { ReviewItem, StoredEvent } from '../events/events.schemas.ts';
import { remoteOfferIdOf } from '../webrtc/webrtc.schemas.ts';
import {
  Command,
  Desired,
  REMOTE_ACTIONS,
  UplinkSettings,
  type AdmpStatus,
  type DesiredConfig,
  type RemoteEndpoint,
} from './admp.schemas.ts';
import { Telemetry } from './telemetry.ts';
import { UplinkQueue, type Kind, type UpMessage } from './uplink-queue.ts';

const mqttClient = lazyPackage<typeof import('mqtt')>('mqtt');

/** Who the operator is on the bus: an installer (no view of the household's video or events). */
export const ADMP_CALLER: Caller = { via: 'admp', role: 'installer', username: 'admp' };

const COMMAND_TIMEOUT_MS = 60_000;
/** The broker keeps the box's session (its subscriptions, messages in flight) this long offline. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;
/** Replies are kept this long, so a command delivered twice is answered twice but run once. */
const REPLY_KEEP_MS = 7 * 24 * 3600_000;
/** A remote session's TURN credentials are valid this long (it needs them only to start and to refresh). */
const TURN_CREDENTIAL_S = 3600;
/** Remote offers answered at once; more wait, and past REMOTE_OFFERS_WAITING they are dropped. */
const REMOTE_OFFERS_AT_ONCE = 4;
const REMOTE_OFFERS_WAITING = 64;

/**
 * TURN servers with credentials of their own for one session (the TURN REST API's scheme, as
 * coturn's use-auth-secret takes it): user "<expiry>:<boxId>", password HMAC-SHA1 of it.
 */
export function turnServers(
  turn: { urls: string[]; secret: string },
  boxId: string,
  now = Date.now(),
): Array<{
  hostname: string;
  port: number;
  username: string;
  password: string;
  relayType: 'TurnUdp' | 'TurnTcp' | 'TurnTls';
}> {
  const username = `${Math.floor(now / 1000) + TURN_CREDENTIAL_S}:${boxId}`;
  const password = createHmac('sha1', turn.secret).update(username).digest('base64');
  return turn.urls.map((url) => {
    const m = /^(turns?):([^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$/.exec(url)!;
    const tls = m[1] === 'turns';
    return {
      hostname: m[2]!,
      port: Number(m[3] ?? (tls ? 5349 : 3478)),
      username,
      password,
      relayType: tls ? 'TurnTls' : m[4] === 'tcp' ? 'TurnTcp' : 'TurnUdp',
    };
  });
}

interface Reply {
  id: string | null;
  action: string | null;
  ok: boolean;
  result?: unknown;
  error?: { type: string; code?: number; message: string; data?: unknown };
  at: string;
}

interface Applied {
  version: number;
  config: DesiredConfig;
  at: string;
}

/** An error as the operator gets it: its type, code and message, never a stack. */
function errorOf(err: unknown): NonNullable<Reply['error']> {
  const e = err as { type?: string; code?: number; message?: string; data?: unknown };
  return {
    type: e.type ?? 'ERROR',
    ...(typeof e.code === 'number' ? { code: e.code } : {}),
    message: e.message ?? String(err),
    ...(e.data !== undefined ? { data: e.data } : {}),
  };
}

export function admpService(config: Config): ServiceSchema {
  const o = config.admp;
  let store: Store | undefined;
  let queue: UplinkQueue;
  let meta: Collection<unknown>;
  let replies: Collection<Reply>;
  let provisioned: Provisioned | null = null;
  let provisioningError: string | null = null;
  let client: MqttClient | null = null;
  /** Seqs handed to the MQTT client and not yet acknowledged (it resends them after a reconnect). */
  const inflight = new Set<number>();
  /**
   * What the broker says it takes in flight (CONNACK). Brokers drop what comes beyond it: Mosquitto
   * completes the QoS 2 handshake of the 21st message and discards it.
   */
  let receiveMaximum = 65_535;
  const link = {
    connected: false,
    lastConnectedAt: null as string | null,
    lastDisconnectedAt: null as string | null,
    lastError: null as string | null,
    lastErrorAt: null as string | null,
    connects: 0,
  };
  /** Messages for the operator that could not be queued (the store failing or closed), by kind. */
  const notQueued: Record<Kind, number> = { health: 0, event: 0, reported: 0, reply: 0, audit: 0 };
  /** Commands by id: a second copy of one waits for the first's answer. */
  const commandTurns = new KeyTurns();
  /** Connections that failed since the last one that held: the wait before the next grows with them. */
  let failedConnects = 0;
  let settings: UplinkSettings = UplinkSettings.parse({});
  let applied: Applied | null = null;
  let lastRejected: { version: number | null; error: Reply['error']; at: string } | null = null;
  let telemetry: Telemetry;
  let telemetryTimer: NodeJS.Timeout | undefined;
  /** Desired configurations are applied one at a time, in the order they came. */
  const desiredInTurn = pLimit(1);
  const remoteOffersInTurn = pLimit(REMOTE_OFFERS_AT_ONCE);
  let remoteOffersDropped = 0;
  let log: { info(m: string): void; warn(m: string): void; error(m: string): void };

  const topic = (sub: string) => `${provisioned!.provisioning.topicRoot}/${provisioned!.provisioning.boxId}/${sub}`;

  const status = (): AdmpStatus => ({
    provisioned: Boolean(provisioned),
    source: provisioned?.source ?? null,
    provisioningError,
    endpoint: provisioned ? publicProvisioning(provisioned.provisioning) : null,
    connected: link.connected,
    lastConnectedAt: link.lastConnectedAt,
    lastDisconnectedAt: link.lastDisconnectedAt,
    lastError: link.lastError,
    lastErrorAt: link.lastErrorAt,
    /** How long until the next try, while not connected. */
    retryInMs: link.connected || !client ? null : (client.options.reconnectPeriod ?? o.reconnectMs),
    queue: {
      ...queue.size,
      inFlight: inflight.size,
      maxItems: o.maxQueueItems,
      maxBytes: o.maxQueueBytes,
      dropped: { ...queue.dropped },
      notQueued: { ...notQueued },
    },
    desired: { appliedVersion: applied?.version ?? null, appliedAt: applied?.at ?? null, lastRejected },
    settings: { ...settings, telemetrySeconds: settings.telemetrySeconds ?? o.telemetrySeconds },
  });

  /** Hands the oldest waiting messages to the client, up to the in-flight window. */
  const pump = () => {
    const c = client;
    if (!c?.connected) return;
    for (const m of queue.next(Math.min(o.inFlight, receiveMaximum) - inflight.size, inflight)) {
      inflight.add(m.seq);
      c.publish(topic(m.topic), JSON.stringify(m.payload), { qos: 2, retain: m.retain }, (err) => {
        inflight.delete(m.seq);
        if (err) return; // the client was ended: the message stays queued for the next one
        // Out of the queue at once (deleted on disk with the acks around it); its slot goes to the next.
        queue.sent(m.seq).catch((e: Error) => log.error(`admp: message ${m.seq} sent but not deleted: ${e.message}`));
        pump();
      });
    }
  };

  const up = async (
    kind: Kind,
    sub: string,
    payload: Record<string, unknown>,
    retain = false,
  ): Promise<UpMessage | null> => {
    if (!provisioned || !store) return null;
    const { message, dropped } = await queue
      .enqueue(kind, sub, { at: new Date().toISOString(), ...payload }, retain)
      .catch((err: Error) => {
        notQueued[kind]++; // counted, and reported in the status and the next health sample
        throw err;
      });
    if (dropped.length)
      log.warn(
        `admp: uplink queue full: dropped ${dropped.length} (${dropped.map((d) => `${d.kind} #${d.seq}`).join(', ')})`,
      );
    if (!message) log.warn(`admp: uplink queue full of messages worth more: this ${kind} message is dropped`);
    pump();
    return message;
  };

  const reply = async (r: Omit<Reply, 'at'>, broker: ServiceBroker) => {
    const full: Reply = { ...r, at: new Date().toISOString() };
    if (r.id) await replies.put(r.id, full);
    await up('reply', 'commands/res', { ...full });
    void broker.broadcast('admp.command.handled', {
      id: r.id,
      command: r.action,
      ok: r.ok,
      ...(r.error ? { error: r.error.type } : {}),
      by: ADMP_CALLER.username,
    });
  };

  return {
    name: 'admp',

    actions: {
      // Provisioned but not connected after a failure: degraded, with why (the box runs on locally).
      health: action({
        input: z.strictObject({}),
        handler: () => {
          if (store?.status !== 'open') return { status: 'down' };
          if (provisioned && !link.connected && link.lastError)
            return { status: 'degraded', reason: `uplink to the operator not connected: ${link.lastError}` };
          return { status: 'ok' };
        },
      }),

      /** Provisioned or not, connected or not, what waits to go up and what was dropped. */
      status: action({ input: z.strictObject({}), permission: 'system.view', handler: () => status() }),

      /** The first-run setup: the operator's endpoint and the box's identity. */
      provision: action({
        input: ProvisioningInput,
        permission: 'settings.manage',
        async handler(ctx) {
          if (provisioned?.source === 'environment')
            throw new ConflictError(
              'This box is provisioned by its environment (FOGEDGE_ADMP_*); change it there',
              'PROVISIONED_BY_ENVIRONMENT',
            );
          await writeProvisioning(config, ctx.params);
          await (ctx.service as unknown as { restartUplink(): Promise<void> }).restartUplink();
          ctx.broadcast('admp.provisioning.changed', {
            url: provisioned ? publicProvisioning(provisioned.provisioning).url : null,
            by: ctx.meta.caller?.username ?? 'box',
          });
          return status();
        },
      }),

      remoteEndpoint: action({
        input: z.strictObject({}),
        permission: 'live.view',
        handler(): RemoteEndpoint {
          const p = provisioned?.provisioning;
          if (!p)
            throw new ConflictError('This box is not provisioned by an operator: no remote access', 'NOT_PROVISIONED');
          if (!p.remote)
            throw new ConflictError(
              "The operator's provisioning gives no remote access (remote.browserUrl)",
              'NO_REMOTE_ACCESS',
            );
          return {
            boxId: p.boxId,
            topicRoot: p.topicRoot,
            browserUrl: p.remote.browserUrl,
            appUrl: p.remote.appUrl ?? null,
            stun: p.remote.stun,
          };
        },
      }),

      unprovision: action({
        input: z.strictObject({}),
        permission: 'settings.manage',
        async handler(ctx) {
          if (provisioned?.source === 'environment')
            throw new ConflictError(
              'This box is provisioned by its environment (FOGEDGE_ADMP_*); change it there',
              'PROVISIONED_BY_ENVIRONMENT',
            );
          await writeProvisioning(config, null);
          await (ctx.service as unknown as { restartUplink(): Promise<void> }).restartUplink();
          ctx.broadcast('admp.provisioning.changed', { url: null, by: ctx.meta.caller?.username ?? 'box' });
          return status();
        },
      }),
    },

    events: {
      ...on('event.started', function (event) {
        return this.sendEvent('start', event);
      }),
      ...on('event.ended', function (event) {
        return this.sendEvent('end', event);
      }),
      // Review items as they open and close (their changes in between stay on the box).
      ...on('review.opened', function (item) {
        return this.sendReview('new', item);
      }),
      ...on('review.closed', function (item) {
        return this.sendReview('end', item);
      }),
      // What the camera agents notify (Boot!, OperationComplete, value changes) goes up as it comes.
      async 'usp.notification.received'(ctx: { params: Record<string, unknown> }) {
        await up('event', 'usp/notifications', { notification: ctx.params }).catch((err: Error) =>
          log.error(`admp: USP notification not queued: ${err.message}`),
        );
      },
      // The disk filled up (or has room again), the archive went or came back: the operator hears
      // it now, not at the next sample.
      'recording.disk.changed'() {
        this.scheduleTelemetry(0);
      },
      'recording.archive.changed'() {
        this.scheduleTelemetry(0);
      },
      ...Object.fromEntries(
        AUDITED_EVENTS.map((name) => [
          name,
          {
            async handler(ctx: { params: Record<string, unknown> }) {
              if (!settings.audit) return;
              await up('audit', 'audit', { action: name, ...ctx.params }).catch((err: Error) =>
                log.error(`admp: audit ${name} not queued: ${err.message}`),
              );
            },
          },
        ]),
      ),
    },

    methods: {
      /** A browser's offer, relayed: the webrtc service checks it; the reply goes to its answer topic. */
      onRemoteOffer(payload: Buffer) {
        const p = provisioned?.provisioning;
        if (!p?.remote) return;
        if (remoteOffersInTurn.pendingCount >= REMOTE_OFFERS_WAITING) {
          if (remoteOffersDropped++ % 100 === 0)
            log.warn(`admp: remote offers come faster than the box answers them; ${remoteOffersDropped} refused`);
          // Told at once, so that a real client tries again rather than wait out its timeout.
          const id = remoteOfferIdOf(payload.toString('utf8'));
          if (id)
            client?.publish(
              topic(`remote/answer/${id}`),
              JSON.stringify({
                id,
                ok: false,
                error: { type: 'BUSY', message: 'the box is answering many offers; try again in a few seconds' },
              }),
              { qos: 0 },
            );
          return;
        }
        void remoteOffersInTurn(async () => {
          const { id, reply } = await call(this.broker, 'webrtc.remoteOffer', {
            box: p.boxId,
            message: payload.toString('utf8').slice(0, 80 * 1024),
            iceServers: [
              ...(p.remote?.stun ?? []).map((url) => {
                const [, hostname, port] = /^stun:([^:]+)(?::(\d+))?$/.exec(url)!;
                return { hostname: hostname!, port: Number(port ?? 3478) };
              }),
              ...(p.remote?.turn ? turnServers(p.remote.turn, p.boxId) : []),
            ],
          });
          if (id) client?.publish(topic(`remote/answer/${id}`), JSON.stringify({ id, ...reply }), { qos: 1 });
        }).catch((err: Error) => log.warn(`admp: remote offer not answered: ${err.message}`));
      },

      async sendEvent(type: 'start' | 'end', event: StoredEvent) {
        if (!settings.events || (settings.eventLabels.length && !settings.eventLabels.includes(event.label))) return;
        await up('event', 'events', { type, event }).catch((err: Error) =>
          log.error(`admp: event ${event.id} not queued: ${err.message}`),
        );
      },

      async sendReview(type: 'new' | 'end', item: ReviewItem) {
        if (
          !settings.events ||
          (settings.eventLabels.length && !item.labels.some((l) => settings.eventLabels.includes(l)))
        )
          return;
        await up('event', 'reviews', { type, item }).catch((err: Error) =>
          log.error(`admp: review item ${item.id} not queued: ${err.message}`),
        );
      },

      /** Reads the provisioning again and (re)connects, or stays local. */
      async restartUplink() {
        await this.disconnect();
        try {
          provisioned = readProvisioning(config);
          provisioningError = null;
        } catch (err) {
          provisioned = null;
          provisioningError = (err as Error).message;
          log.error(`admp: ${provisioningError}; the box runs local only`);
        }
        if (!provisioned) {
          if (!provisioningError) log.info('admp: not provisioned; the box runs local only');
          return;
        }
        this.connect();
        this.scheduleTelemetry();
      },

      connect() {
        const p = provisioned!.provisioning;
        log.info(
          `admp: uplink to ${publicProvisioning(p).url} as ${p.boxId} (provisioned from ${provisioned!.source})`,
        );
        const c = mqttClient().connect(p.url, {
          clientId: `fogedge-${p.boxId}`,
          protocolVersion: p.protocolVersion,
          // A persistent session: QoS 2 messages in flight are completed after a reconnect, exactly once.
          clean: false,
          ...(p.protocolVersion === 5 ? { properties: { sessionExpiryInterval: SESSION_EXPIRY_S } } : {}),
          reconnectPeriod: o.reconnectMs,
          // A refused CONNACK (an auth backend's hiccup, "server unavailable") is tried again too:
          // the box is never stranded until someone provisions it again.
          reconnectOnConnackError: true,
          connectTimeout: 10_000,
          ...(p.username ? { username: p.username } : {}),
          ...(p.password ? { password: p.password } : {}),
          ...(p.ca ? { ca: p.ca } : {}),
          ...(p.cert ? { cert: p.cert, key: p.key } : {}),
          will: {
            topic: topic('status'),
            payload: Buffer.from(JSON.stringify({ online: false, boxId: p.boxId })),
            qos: 1,
            retain: true,
          },
        });
        client = c;
        c.on('connect', (connack) => {
          failedConnects = 0;
          c.options.reconnectPeriod = o.reconnectMs;
          receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
          link.connected = true;
          link.lastConnectedAt = new Date().toISOString();
          link.lastError = null;
          link.connects++;
          log.info(`admp: uplink connected (${queue.size.items} messages waiting)`);
          c.publish(
            topic('status'),
            JSON.stringify({ online: true, boxId: p.boxId, version, at: link.lastConnectedAt }),
            { qos: 1, retain: true },
          );
          c.subscribe(
            [topic('commands/req'), topic('config/desired')],
            { qos: 1 },
            (err) => err && log.error(`admp: subscribe failed: ${err.message}`),
          );
          // Offers from browsers away from home: QoS 0, so none waits in the session while the
          // box is offline (an old offer is refused anyway).
          if (p.remote)
            c.subscribe(
              topic('remote/offer'),
              { qos: 0 },
              (err) => err && log.error(`admp: subscribe failed: ${err.message}`),
            );
          void this.broker.broadcast('admp.status.changed', status());
          pump();
        });
        c.on('close', () => {
          // Each failure waits longer, up to reconnectMaxMs, with jitter: a fleet whose broker
          // comes back is not all at its door in the same second.
          if (!link.connected) c.options.reconnectPeriod = backoffMs(++failedConnects, o.reconnectMs, o.reconnectMaxMs);
          if (!link.connected) return;
          link.connected = false;
          link.lastDisconnectedAt = new Date().toISOString();
          log.warn(`admp: uplink lost; messages wait in the queue (${queue.size.items})`);
          void this.broker.broadcast('admp.status.changed', status());
        });
        c.on('error', (err) => {
          if (link.lastError !== err.message) log.warn(`admp: uplink: ${err.message}; trying again`);
          link.lastError = err.message;
          link.lastErrorAt = new Date().toISOString();
        });
        c.on('message', (t, payload) => {
          if (t === topic('commands/req'))
            void this.onCommand(payload).catch((err: Error) => log.error(`admp: command failed: ${err.message}`));
          else if (t === topic('remote/offer')) this.onRemoteOffer(payload);
          else if (t === topic('config/desired'))
            void desiredInTurn(() => this.onDesired(payload)).catch((err: Error) =>
              log.error(`admp: desired config failed: ${err.message}`),
            );
        });
      },

      async disconnect() {
        clearTimeout(telemetryTimer);
        const c = client;
        client = null;
        link.connected = false;
        if (!c) return;
        // Said before leaving, so the operator does not wait for the will after a clean stop.
        if (c.connected)
          await c
            .publishAsync(
              topic('status'),
              JSON.stringify({ online: false, boxId: provisioned?.provisioning.boxId, at: new Date().toISOString() }),
              { qos: 1, retain: true },
            )
            .catch(() => undefined);
        await c.endAsync(true).catch(() => undefined);
        inflight.clear();
      },

      /** A health sample every telemetrySeconds; the first after `firstMs` (a sample now: 0). */
      scheduleTelemetry(firstMs?: number) {
        clearTimeout(telemetryTimer);
        const every = (settings.telemetrySeconds ?? o.telemetrySeconds) * 1000;
        const tick = (wait = every) => {
          telemetryTimer = setTimeout(async () => {
            if (!provisioned) return;
            await telemetry
              .sample()
              .then((sample) =>
                up('health', 'health', {
                  ...sample,
                  uplink: { queued: queue.size.items, dropped: { ...queue.dropped }, notQueued: { ...notQueued } },
                }),
              )
              .catch((err: Error) => log.error(`admp: health not sent: ${err.message}`));
            tick();
          }, wait);
        };
        tick(firstMs);
      },

      async onCommand(payload: Buffer) {
        let raw: unknown;
        try {
          raw = JSON.parse(payload.toString('utf8'));
        } catch (err) {
          log.warn('admp: refused a command that is not JSON');
          return reply(
            {
              id: null,
              action: null,
              ok: false,
              error: { type: 'MALFORMED_COMMAND', message: `The command is not JSON: ${(err as Error).message}` },
            },
            this.broker,
          );
        }
        const parsed = Command.safeParse(raw);
        const rawId =
          raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string'
            ? (raw as { id: string }).id.slice(0, 64)
            : null;
        if (!parsed.success) {
          const issues = issuesOf(parsed.error);
          log.warn(`admp: refused a malformed command: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`);
          // The id is echoed only when it is a valid one: a reply must not carry what the schema refused.
          const id = issues.some((i) => i.field === 'id') ? null : rawId;
          return reply(
            {
              id,
              action: null,
              ok: false,
              error: { type: 'MALFORMED_COMMAND', message: 'The command does not match its schema', data: issues },
            },
            this.broker,
          );
        }
        const cmd = parsed.data;
        // Copies of one id are handled one after another: a copy that comes while the first runs
        // waits for it and gets its reply; the command runs once.
        await commandTurns.run(cmd.id, () => this.handleCommand(cmd));
      },

      async handleCommand(cmd: Command) {
        const earlier = await replies.get(cmd.id);
        if (earlier) {
          // An id is bound to its action: re-used for another one, it runs nothing and says so.
          if (earlier.action !== null && earlier.action !== cmd.action) {
            await up('reply', 'commands/res', {
              id: cmd.id,
              action: cmd.action,
              ok: false,
              error: {
                type: 'ID_REUSED',
                message: `Command id "${cmd.id}" was used for ${earlier.action}; use a new id for ${cmd.action}`,
              },
              at: new Date().toISOString(),
            });
            return;
          }
          // Delivered again (QoS 1 after a reconnect, or sent twice): answered again, not run again.
          await up('reply', 'commands/res', { ...earlier, duplicate: true });
          return;
        }
        const sentAt = Date.parse(cmd.sentAt);
        if (Date.now() - sentAt > o.commandMaxAgeSeconds * 1000) {
          return reply(
            {
              id: cmd.id,
              action: cmd.action,
              ok: false,
              error: {
                type: 'EXPIRED',
                message: `The command was sent at ${cmd.sentAt}, more than ${o.commandMaxAgeSeconds} s ago`,
              },
            },
            this.broker,
          );
        }
        if (sentAt - Date.now() > o.commandMaxSkewSeconds * 1000) {
          return reply(
            {
              id: cmd.id,
              action: cmd.action,
              ok: false,
              error: {
                type: 'FROM_THE_FUTURE',
                message: `The command says it was sent at ${cmd.sentAt}, more than ${o.commandMaxSkewSeconds} s ahead of the box's clock (${new Date().toISOString()})`,
              },
            },
            this.broker,
          );
        }
        return this.runCommand(cmd);
      },

      async runCommand(cmd: Command) {
        if (!(REMOTE_ACTIONS as readonly string[]).includes(cmd.action)) {
          log.warn(`admp: refused command ${cmd.id}: ${cmd.action} is not a remote action`);
          return reply(
            {
              id: cmd.id,
              action: cmd.action,
              ok: false,
              error: { type: 'NOT_ALLOWED', message: `"${cmd.action}" is not an action the operator may run` },
            },
            this.broker,
          );
        }
        try {
          const result = await this.broker.call(cmd.action, cmd.params, {
            meta: { caller: ADMP_CALLER },
            timeout: COMMAND_TIMEOUT_MS,
          });
          return reply({ id: cmd.id, action: cmd.action, ok: true, result: result ?? null }, this.broker);
        } catch (err) {
          log.warn(`admp: command ${cmd.id} (${cmd.action}) failed: ${(err as Error).message}`);
          return reply({ id: cmd.id, action: cmd.action, ok: false, error: errorOf(err) }, this.broker);
        }
      },

      async onDesired(payload: Buffer) {
        if (payload.length === 0) return; // the retained desired state was cleared
        let raw: unknown;
        try {
          raw = JSON.parse(payload.toString('utf8'));
        } catch (err) {
          return this.reject(null, {
            type: 'MALFORMED_CONFIG',
            message: `The desired configuration is not JSON: ${(err as Error).message}`,
          });
        }
        const rawVersion =
          raw && typeof raw === 'object' && Number.isInteger((raw as { version?: unknown }).version)
            ? (raw as { version: number }).version
            : null;
        const parsed = Desired.safeParse(raw);
        if (!parsed.success)
          return this.reject(rawVersion, {
            type: 'VALIDATION_ERROR',
            message: 'The desired configuration does not match its schema',
            data: issuesOf(parsed.error),
          });
        const desired = parsed.data;
        if (applied && desired.version === applied.version) {
          // Delivered again, or sent again after a newer one was refused: that refusal is moot now.
          lastRejected = null;
          return this.report();
        }
        if (applied && desired.version < applied.version) {
          return this.reject(desired.version, {
            type: 'STALE_VERSION',
            message: `Version ${desired.version} is older than the applied version ${applied.version}`,
          });
        }
        // Everything it names must exist before anything changes: a refused config changes nothing.
        const missing = await this.missingTargets(desired.config);
        if (missing.length)
          return this.reject(desired.version, { type: 'NOT_FOUND', message: `Not on this box: ${missing.join(', ')}` });
        try {
          await this.applyDesired(desired.config);
        } catch (err) {
          return this.reject(desired.version, errorOf(err));
        }
        applied = { version: desired.version, config: desired.config, at: new Date().toISOString() };
        lastRejected = null;
        await meta.put('applied', applied);
        void this.broker.broadcast('admp.config.applied', {
          version: desired.version,
          parts: Object.keys(desired.config),
          by: ADMP_CALLER.username,
        });
        log.info(
          `admp: desired configuration version ${desired.version} applied (${Object.keys(desired.config).join(', ') || 'nothing'})`,
        );
        return this.report();
      },

      async missingTargets(desired: DesiredConfig): Promise<string[]> {
        const missing: string[] = [];
        if (desired.cameras && Object.keys(desired.cameras).length) {
          const known = new Set((await call(this.broker, 'cameras.list', {})).map((c) => c.id));
          missing.push(
            ...Object.keys(desired.cameras)
              .filter((id) => !known.has(id))
              .map((id) => `camera "${id}"`),
          );
        }
        if (desired.devices && Object.keys(desired.devices).length) {
          const known = new Set((await call(this.broker, 'devices.list', {})).devices.map((d) => d.id));
          missing.push(
            ...Object.keys(desired.devices)
              .filter((id) => !known.has(id))
              .map((id) => `device "${id}"`),
          );
        }
        return missing;
      },

      /**
       * Each part through the same action a local user would call, as the operator, all or
       * nothing: each step's undo is kept, and a step that fails undoes the ones before it, in
       * reverse, as the box itself (restoring what was there is not the operator's change).
       */
      async applyDesired(desired: DesiredConfig) {
        const as = { meta: { caller: ADMP_CALLER } };
        const telemetryBefore = settings.telemetrySeconds;
        const undo: Array<{ what: string; run: () => Promise<unknown> }> = [];
        try {
          if (desired.uplink) {
            const before = settings;
            settings = desired.uplink;
            undo.push({ what: 'uplink settings', run: async () => void (settings = before) });
          }
          if (desired.devices && Object.keys(desired.devices).length) {
            const states = new Map((await call(this.broker, 'devices.list', {})).devices.map((d) => [d.id, d.state]));
            for (const [id, { state }] of Object.entries(desired.devices)) {
              const before = states.get(id);
              await this.broker.call('devices.update', { id, state }, as);
              if (before && before !== state)
                undo.push({
                  what: `device "${id}"`,
                  run: () => this.broker.call('devices.update', { id, state: before }),
                });
            }
          }
          for (const [id, changes] of Object.entries(desired.cameras ?? {})) {
            const current = await call(this.broker, 'cameras.get', { id });
            const before = Object.fromEntries(
              Object.keys(changes).map((key) => [key, current[key as keyof typeof current]]),
            );
            await this.broker.call('cameras.update', { id, ...changes }, as);
            undo.push({ what: `camera "${id}"`, run: () => this.broker.call('cameras.update', { id, ...before }) });
          }
          if (desired.syncPolicy) {
            const before = await call(this.broker, 'sync.policy', {});
            await this.broker.call('sync.setPolicy', desired.syncPolicy, as);
            undo.push({ what: 'the sync plan', run: () => this.broker.call('sync.setPolicy', before) });
          }
        } catch (err) {
          for (const step of undo.reverse())
            await step
              .run()
              .catch((e: Error) =>
                log.error(`admp: undoing ${step.what} after a refused configuration failed: ${e.message}`),
              );
          throw err;
        }
        if (settings.telemetrySeconds !== telemetryBefore) this.scheduleTelemetry();
      },

      async reject(version: number | null, error: NonNullable<Reply['error']>) {
        lastRejected = { version, error, at: new Date().toISOString() };
        log.warn(
          `admp: desired configuration${version === null ? '' : ` version ${version}`} refused: ${error.message}`,
        );
        void this.broker.broadcast('admp.config.rejected', { version, error: error.type, by: ADMP_CALLER.username });
        return this.report();
      },

      /** The reported half of the twin: what is applied, and the last refusal if newer. */
      report() {
        return up(
          'reported',
          'config/reported',
          {
            version: applied?.version ?? null,
            config: applied?.config ?? null,
            appliedAt: applied?.at ?? null,
            rejected: lastRejected,
          },
          true,
        );
      },
    },

    async started() {
      log = this.logger;
      store = await Store.open(dataPaths(config).db('admp'));
      meta = store.collection<unknown>('meta');
      replies = store.collection<Reply>('replies');
      queue = new UplinkQueue(store.collection<UpMessage>('queue'), meta, {
        maxItems: o.maxQueueItems,
        maxBytes: o.maxQueueBytes,
      });
      await queue.load();
      applied = ((await meta.get('applied')) as Applied | undefined) ?? null;
      if (applied?.config.uplink) settings = applied.config.uplink;
      for await (const [id, r] of replies.entries())
        if (Date.now() - Date.parse(r.at) > REPLY_KEEP_MS) await replies.del(id, { sync: false });
      telemetry = new Telemetry(
        this.broker,
        config.dataDir,
        version,
        () => provisioned?.provisioning.boxId ?? config.sync.boxId,
      );
      await this.restartUplink();
    },

    async stopped() {
      await this.disconnect();
      await store?.close();
      store = undefined;
    },
  };
}
