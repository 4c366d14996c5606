// The USP controller's side of the MQTT MTP: the endpoints it knows (one per camera agent, claimed
// by its device), the requests it sends and the answers it awaits, and what the agents tell it
// (MQTTConnect, DisconnectRecord, Notify). Records reach it as `agent.message` on channel usp.
import { KeyTurns } from '../../lib/key-turns.ts';
import type { ServiceBroker } from 'moleculer';
import { UnavailableError, NotFoundError } from '../../lib/errors.ts';
import type { Store, Collection } from '../../lib/store.ts';
import {
  decodeRecord,
  encodeRecord,
  errorOf,
  request,
  USP_CONTENT_TYPE,
  UspError,
  type Msg,
} from '../../lib/usp/codec.ts';
import type { Config } from '../../appliance/config.ts';
import { notificationOf, type UspNotification } from './notifications.ts';
import { commandChannelOf } from '../../lib/topics.ts';

/** Notifications kept per endpoint; the oldest go first. */
export const NOTIFICATIONS_KEPT = 500;
export const REQUEST_TIMEOUT_MS = 15_000;
/** Actions that wait for an agent: past REQUEST_TIMEOUT_MS, so that their own answer comes first. */
export const ACTION_TIMEOUT_MS = REQUEST_TIMEOUT_MS + 5000;

/** The box's own USP endpoint id. */
export const controllerId = (config: Config) => `self::fogedge-${config.sync.boxId}`;

/**
 * A request to an agent is not idempotent (a reboot, a snapshot, a Download()): one that went
 * unanswered is not sent again by the bus's retry policy; the caller decides.
 */
export const notRetried = <E extends Error>(err: E): E => Object.assign(err, { retryable: false });

/** A USP error as the API gives it: the spec's code and message. */
export const apiError = (err: unknown) =>
  err instanceof UspError
    ? notRetried(
        new UnavailableError(`USP error ${err.code}: ${err.message}`, 'USP_ERROR', {
          code: err.code,
          paramErrs: err.paramErrs,
        }),
      )
    : err;

export interface Endpoint {
  endpointId: string;
  device: string;
  manufacturer: string | null;
  model: string | null;
  serialNumber: string | null;
  softwareVersion: string | null;
  connectedAt: string;
  lastSeenAt: string;
  /** Whether its device's MQTT connection is up; false from the moment it goes (or the agent says it leaves). */
  connected?: boolean;
  disconnectedAt?: string | null;
  /** What its last Boot! said (TR-181 Device.Boot!): why it started, and whether on new firmware. */
  lastBoot?: {
    at: string;
    cause: string;
    firmwareUpdated: boolean;
    commandKey: string;
    parameterMap: Record<string, string>;
  } | null;
  /** The channel under the device's cmd/ topic the agent listens on (its subscribed or reply-to topic); absent: usp. */
  replyChannel?: string;
}

/** What an agent's Notify carries, as decoded (the spec's shape). */
export type Notify = Record<string, any>;

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Log {
  info(m: string): void;
  warn(m: string): void;
}

/** Who asked, for the audit: an action's context. */
export interface Asker {
  meta: { caller?: { username?: string } };
  broadcast: (name: string, payload: object) => unknown;
}

export class UspController {
  readonly self: string;
  readonly endpoints: Collection<Endpoint>;
  private readonly notifications: Collection<UspNotification>;
  private notificationSeq = 0;
  /** Requests waiting for their answer, by endpoint and msg id: only the endpoint asked may answer. */
  private readonly pending = new Map<string, Pending>();
  /** Waiters for notifications (an OperationComplete, a Boot!) of one endpoint. */
  private readonly waiters = new Set<{
    endpointId: string;
    match: (n: Notify) => boolean;
    resolve: (n: Notify) => void;
  }>();
  /** Each endpoint's record is changed by one handler at a time (see `update`). */
  private readonly updating = new KeyTurns();
  /** Warnings about what devices send, a few a minute per device: garbage must not flood the log. */
  private readonly warned = new Map<string, { at: number; count: number; quiet: number }>();

  constructor(
    config: Config,
    store: Store,
    private readonly broker: ServiceBroker,
    private readonly log: Log,
  ) {
    this.self = controllerId(config);
    this.endpoints = store.collection<Endpoint>('endpoints');
    this.notifications = store.collection<UspNotification>('notifications');
  }

  stop(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new UnavailableError('The USP controller stopped', 'USP_STOPPED'));
    }
    this.pending.clear();
  }

  /** The connected endpoint of a device: 404 when it has none, 503 at once when it is offline. */
  async find(device: string): Promise<Endpoint> {
    for (const e of await this.endpoints.values()) {
      if (e.device !== device) continue;
      if (e.connected === false)
        throw notRetried(
          new UnavailableError(
            `The camera agent of ${device} is offline (since ${e.disconnectedAt ?? 'its device disconnected'})`,
            'AGENT_OFFLINE',
          ),
        );
      return e;
    }
    throw new NotFoundError('USP endpoint of device', device);
  }

  /** Sends a request and resolves with its response; an Error message rejects as a UspError. */
  async ask(e: Endpoint, msgType: string, req: Record<string, unknown>): Promise<Msg> {
    const msg = request(msgType, req);
    const key = this.pendingKey(e.endpointId, msg.header.msgId);
    const answer = new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(
          notRetried(
            new UnavailableError(
              `Camera agent ${e.endpointId} did not answer ${msgType} within ${REQUEST_TIMEOUT_MS / 1000} s`,
              'USP_TIMEOUT',
            ),
          ),
        );
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(key, { resolve, reject, timer });
    });
    await this.send(e, msg);
    const reply = await answer;
    const err = errorOf(reply);
    if (err) throw err;
    return reply;
  }

  /** A request the caller made to an agent's data model, audited (usp.request.done). */
  async askAs(asker: Asker, device: string, msgType: string, req: Record<string, unknown>, paths: string[]) {
    const e = await this.find(device);
    const reply = await this.ask(e, msgType, req).catch((err: unknown) => {
      throw apiError(err);
    });
    void asker.broadcast('usp.request.done', {
      device,
      endpointId: e.endpointId,
      request: msgType,
      paths,
      by: asker.meta.caller?.username ?? 'box',
    });
    return { e, reply };
  }

  waitForNotify(endpointId: string, match: (n: Notify) => boolean, timeoutMs: number, what: string): Promise<Notify> {
    return new Promise<Notify>((resolve, reject) => {
      const w = {
        endpointId,
        match,
        resolve: (n: Notify) => (clearTimeout(timer), this.waiters.delete(w), resolve(n)),
      };
      // Unref'd: a waiter left behind (the race it was in is decided) does not hold the process.
      const timer = setTimeout(
        () => (this.waiters.delete(w), reject(new Error(`no ${what} within ${Math.round(timeoutMs / 1000)} s`))),
        timeoutMs,
      ).unref();
      this.waiters.add(w);
    });
  }

  /** The notifications kept, newest first: of one device's endpoints, or of all. */
  async notificationsOf(device: string | undefined, limit: number): Promise<UspNotification[]> {
    const all = await this.endpoints.values();
    const chosen = device ? all.filter((e) => e.device === device) : all;
    if (device && !chosen.length) throw new NotFoundError('USP endpoint of device', device);
    const out: UspNotification[] = [];
    for (const e of chosen)
      out.push(
        ...(await this.notifications.values({
          gte: `${e.endpointId}\u0000`,
          lt: `${e.endpointId}\u0001`,
          reverse: true,
          limit,
        })),
      );
    return out.sort((a, b) => b.at.localeCompare(a.at)).slice(0, limit);
  }

  /**
   * Changes one endpoint's record, after every change already asked for it. Its records come in
   * at once (a Boot! beside the answer to the Get sent at connect): read, change and write each
   * on their own, an older copy could be written over a newer one (the version read at connect).
   * `change` returns undefined to leave it as it is.
   */
  private update(
    endpointId: string,
    change: (current: Endpoint | undefined) => Endpoint | undefined,
    options: { sync?: boolean } = {},
  ): Promise<Endpoint | undefined> {
    return this.updating.run(endpointId, async () => {
      const next = change(await this.endpoints.get(endpointId));
      if (next) await this.endpoints.put(endpointId, next, options);
      return next;
    });
  }

  /** The device's MQTT connection went: its agents are offline until they announce themselves again. */
  async markOffline(device: string, why: string): Promise<void> {
    const now = new Date().toISOString();
    for (const e of await this.endpoints.values()) {
      if (e.device !== device || e.connected === false) continue;
      const changed = await this.update(e.endpointId, (current) =>
        current && current.connected !== false ? { ...current, connected: false, disconnectedAt: now } : undefined,
      );
      if (!changed) continue;
      this.log.info(`usp: agent ${e.endpointId} offline (${why})`);
      this.broker.broadcast('usp.endpoint.disconnected', { endpointId: e.endpointId, device, at: now, reason: why });
    }
  }

  /** A record a device sent on its usp channel (with the reply-to it gave, if any). */
  async receive(device: string, payloadBase64: string, replyTo: string | undefined): Promise<void> {
    let env;
    try {
      env = decodeRecord(Buffer.from(payloadBase64, 'base64'));
    } catch (err) {
      return this.warnOf(device, `usp: a record from device ${device} cannot be read: ${(err as Error).message}`);
    }
    if (env.toId !== this.self)
      return this.warnOf(device, `usp: device ${device} sent a record for ${env.toId}, not this controller`);
    const now = new Date().toISOString();
    if (env.mqttConnect) return this.connected(device, env.fromId, env.mqttConnect.subscribedTopic);
    const e = await this.endpoints.get(env.fromId);
    if (!e || e.device !== device)
      return this.warnOf(device, `usp: a record from unknown endpoint ${env.fromId} (device ${device})`);
    // A DisconnectRecord: the agent says it leaves (TR-369); it is offline until its next MQTTConnect.
    if (env.disconnect)
      return this.markOffline(
        e.device,
        `the agent disconnected: ${env.disconnect.reason || env.disconnect.reasonCode}`,
      );
    // A reply-to with the record (R-MQTT.25) says where this agent is answered from now on.
    const replyChannel = replyTo ? commandChannelOf(device, replyTo) : e.replyChannel;
    if (replyTo && !replyChannel)
      return this.warnOf(
        device,
        `usp: agent ${e.endpointId} asked for replies on "${replyTo}", not one of its device's command topics`,
      );
    // A record from it says it is there, whatever was heard of its connection before.
    await this.update(
      e.endpointId,
      (current) => ({
        ...(current ?? e),
        lastSeenAt: now,
        connected: true,
        disconnectedAt: null,
        ...(replyChannel ? { replyChannel } : {}),
      }),
      { sync: false },
    );
    if (!env.msg) return;
    const key = this.pendingKey(e.endpointId, env.msg.header.msgId);
    const waiting = this.pending.get(key);
    if (waiting) {
      this.pending.delete(key);
      clearTimeout(waiting.timer);
      waiting.resolve(env.msg);
      return;
    }
    if (env.msg.header.msgType === 'NOTIFY') await this.notified(e, env.msg);
  }

  private pendingKey(endpointId: string, msgId: string) {
    return `${endpointId} ${msgId}`;
  }

  private warnOf(device: string, message: string) {
    const now = Date.now();
    const w = this.warned.get(device) ?? { at: now, count: 0, quiet: 0 };
    if (now - w.at > 60_000) Object.assign(w, { at: now, count: 0 });
    this.warned.set(device, w);
    if (++w.count > 5) return void w.quiet++;
    this.log.warn(w.quiet ? `${message} (${w.quiet} more like it from device ${device} not logged)` : message);
    w.quiet = 0;
  }

  // To an MQTT 5 agent a record says what it is and where the controller is answered (R-MQTT:
  // Content Type usp.msg, Response Topic); a 3.1.1 agent has the controller's topic configured.
  private send(e: Endpoint, msg: Msg) {
    return this.broker.call('mqtt.sendToDevice', {
      device: e.device,
      channel: e.replyChannel ?? 'usp',
      payloadBase64: Buffer.from(encodeRecord(this.self, e.endpointId, { msg })).toString('base64'),
      contentType: USP_CONTENT_TYPE,
      responseChannel: 'usp',
    });
  }

  /** An MQTTConnect record: the endpoint is (again) connected, and answered where it subscribed. */
  private async connected(device: string, endpointId: string, subscribedTopic: string) {
    // Endpoint ids are claimed per device: one device cannot speak for another's endpoint.
    const known = (await this.endpoints.values()).find((e) => e.endpointId === endpointId);
    if (known && known.device !== device)
      return this.log.warn(`usp: device ${device} claims endpoint ${endpointId} of device ${known.device}`);
    // Answers go to the topic the agent subscribed to (TR-369 MQTTConnectRecord.subscribed_topic).
    // Only its own device's command topics, which it may read; anything else is refused.
    const replyChannel = commandChannelOf(device, subscribedTopic);
    if (!replyChannel)
      return this.warnOf(
        device,
        `usp: agent ${endpointId} (device ${device}) subscribed to "${subscribedTopic}", which is not one of its device's command topics; not connected`,
      );
    const now = new Date().toISOString();
    const e = (await this.update(endpointId, (current) => ({
      endpointId,
      device,
      manufacturer: null,
      model: null,
      serialNumber: null,
      softwareVersion: null,
      ...current,
      connectedAt: now,
      lastSeenAt: now,
      replyChannel,
      connected: true,
      disconnectedAt: null,
    })))!;
    this.log.info(`usp: agent ${e.endpointId} connected (device ${e.device})`);
    // What it is and runs: read once it is known.
    void this.ask(e, 'GET', { get: { paramPaths: ['Device.DeviceInfo.'] } })
      .then(async (reply) => {
        const info =
          reply.body.response!['getResp'].reqPathResults[0]?.resolvedPathResults?.find(
            (r: { resolvedPath: string }) => r.resolvedPath === 'Device.DeviceInfo.',
          )?.resultParams ?? {};
        const next = await this.update(e.endpointId, (current) => ({
          ...(current ?? e),
          manufacturer: info.Manufacturer ?? null,
          model: info.ModelName ?? null,
          serialNumber: info.SerialNumber ?? null,
          softwareVersion: info.SoftwareVersion ?? null,
        }));
        this.broker.broadcast('usp.endpoint.connected', next!);
      })
      .catch((err: Error) => this.log.warn(`usp: reading ${e.endpointId} failed: ${err.message}`));
  }

  /** A Notify: answered when asked, handed to whoever waits for it, kept, and a Boot! recorded. */
  private async notified(e: Endpoint, msg: Msg) {
    const notify = msg.body?.request?.['notify'];
    if (!notify) return this.warnOf(e.device, `usp: a NOTIFY from ${e.endpointId} without a Notify request`);
    // Asked for: the NotifyResp, with the same msg id (TR-369 Notify, send_resp).
    if (notify.sendResp)
      void this.send(e, {
        header: { msgId: msg.header.msgId, msgType: 'NOTIFY_RESP' },
        body: { response: { notifyResp: { subscriptionId: notify.subscriptionId ?? '' } } },
      }).catch((err: Error) => this.warnOf(e.device, `usp: NotifyResp to ${e.endpointId} not sent: ${err.message}`));
    for (const w of [...this.waiters]) if (w.endpointId === e.endpointId && w.match(notify)) w.resolve(notify);
    const n = notificationOf(e.endpointId, e.device, notify);
    if (!n) return this.warnOf(e.device, `usp: a Notify from ${e.endpointId} of a kind this controller does not keep`);
    await this.keep(n);
    if (n.type === 'event' && n.name === 'Boot!' && n.path === 'Device.') await this.booted(e, n);
  }

  /** Keeps a notification (the newest NOTIFICATIONS_KEPT per endpoint) and tells the bus. */
  private async keep(n: UspNotification) {
    const prefix = `${n.endpointId}\u0000`;
    const key = `${prefix}${Date.now().toString(16).padStart(12, '0')}${(this.notificationSeq++ % 0xffff).toString(16).padStart(4, '0')}`;
    await this.notifications.put(key, n, { sync: false });
    const old: string[] = [];
    for await (const [k] of this.notifications.entries({ gte: prefix, lt: `${n.endpointId}\u0001`, reverse: true }))
      old.push(k);
    await this.notifications.delMany(old.slice(NOTIFICATIONS_KEPT), { sync: false });
    this.broker.broadcast('usp.notification.received', n);
  }

  /** A Boot!: kept with the endpoint (why it started, on which firmware) and audited. */
  private async booted(e: Endpoint, n: UspNotification) {
    let parameterMap: Record<string, string> = {};
    try {
      const parsed = JSON.parse(n.params['ParameterMap'] ?? '{}') as unknown;
      if (parsed && typeof parsed === 'object')
        parameterMap = Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
    } catch {
      // A ParameterMap that is not JSON: kept as sent in the notification, not here.
    }
    const lastBoot = {
      at: n.at,
      cause: n.params['Cause'] ?? '',
      firmwareUpdated: n.params['FirmwareUpdated'] === 'true',
      commandKey: n.params['CommandKey'] ?? '',
      parameterMap,
    };
    await this.update(e.endpointId, (current) => ({ ...(current ?? e), lastBoot }));
    this.broker.broadcast('usp.endpoint.booted', { endpointId: e.endpointId, device: e.device, ...lastBoot });
  }
}
