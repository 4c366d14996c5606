// mqtt: the site's MQTT broker (aedes) on TCP and TLS (and WebSocket at the gateway's
// /mqtt). Devices sign in with their own id and secret and may publish only under
// fogedge/devices/<id>/; app users sign in with their user name and an API token and
// read what their role may see. The box publishes its state and the detector's events.
import { call, on } from '../../lib/bus.ts';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import {
  Aedes,
  type AedesOptions,
  type AuthenticateError,
  type Client,
  type PublishPacket,
  type Subscription,
} from 'aedes';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import pLimit from 'p-limit';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { generate } from 'selfsigned';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import { can, type Permission, type Role } from '../../lib/permissions.ts';
import type { Caller } from '../../lib/actions.ts';
import { LevelPersistence } from './level-persistence.ts';
import { coalesceWrites } from './coalesce-writes.ts';
import { limitPacketSize, PACKET_OVERHEAD_BYTES } from './packet-limit.ts';
import { answerUnsupportedVersion } from './unsupported-version.ts';
import { discoveryConfigs, objectStates, onOff } from './home-assistant.ts';
import { wantsNotification } from './notifications.ts';
import type { Notifications } from '../accounts/accounts.schemas.ts';
import { version } from '../../appliance/version.ts';
import { isRefusal, unlessRefused } from '../../lib/refusals.ts';
import { streamEndpoints } from '../../lib/stream-endpoints.ts';
import { action } from '../../lib/actions.ts';
import { NotReadyError } from '../../lib/errors.ts';
import { SendToDeviceInput } from './mqtt.schemas.ts';

/** MQTT 5 DISCONNECT reason: the broker's administrator ended the connection (a revoked credential). */
const ADMINISTRATIVE_ACTION = 0x98;

/** The retained JPEG of a camera's best object of a label: `fogedge/cameras/<camera>/<label>/snapshot`. */
const SNAPSHOT_TOPIC = /^fogedge\/cameras\/[a-z0-9-]+\/[^/]+\/snapshot$/;

/** Per-camera switches over MQTT: .../<name>/set (ON|OFF) and the retained .../<name>/state. */
const SWITCHES: Record<string, { get(c: Camera): boolean; set(on: boolean): object }> = {
  detection: { get: (c) => c.detection.enabled, set: (on) => ({ detection: { enabled: on } }) },
  recording: {
    get: (c) => c.recording.mode !== 'off',
    set: (on) => ({ recording: { mode: on ? 'continuous' : 'off' } }),
  },
  notifications: { get: (c) => c.notifications !== false, set: (on) => ({ notifications: on }) },
};

/** The device topics the box's services listen to: fogedge/devices/<id>/usp and .../agent/<what>. */
/**
 * What a device sends to the box's services. A USP agent on MQTT 3.1.1 appends its reply topic as
 * `/reply-to=<topic, '/' as %2F>` (TR-369 R-MQTT.24); the receiver takes it from there (R-MQTT.25).
 */
const AGENT_CHANNEL = /^fogedge\/devices\/([a-z0-9][a-z0-9_-]{0,63})\/(usp|agent\/[a-z0-9-]+)(?:\/reply-to=([^/]+))?$/;

type LiveEvent = {
  id: string;
  camera: string;
  label: string;
  zones?: string[];
  stationary?: boolean;
  topScore: number;
  end?: string | null;
  hasSnapshot?: boolean;
};

export type Identity =
  | { kind: 'device'; id: string; grants: string[]; prefix: string }
  | { kind: 'user'; username: string; role: Role; credentialId?: string };
const identityKey = (i: Identity) => (i.kind === 'device' ? `device:${i.id}` : `user:${i.username}`);

/** Topic roots an app user may read, by the permission they need. */
const USER_READS: Array<[string, Permission]> = [
  ['fogedge/status', 'live.view'],
  ['fogedge/cameras/#', 'live.view'],
  ['fogedge/events/#', 'events.view'],
  ['fogedge/devices/#', 'devices.manage'],
  ['homeassistant/#', 'live.view'],
];

/** The filters whose topics `who` may read. */
function readRoots(who: Identity): string[] {
  if (who.kind === 'device') return [`fogedge/devices/${who.id}/cmd/#`, 'fogedge/status', ...who.grants];
  return [
    ...USER_READS.filter(([, permission]) => can(who.role, permission)).map(([root]) => root),
    `fogedge/users/${who.username}/#`,
  ];
}

/** Whether `who` may read everything `filter` (a topic, or a filter with wildcards) matches: checked at subscribe. */
export function mayRead(who: Identity | undefined, filter: string): boolean {
  return who !== undefined && readRoots(who).some((root) => filterWithin(filter, root));
}

/** Per identity, its read roots made into one test of a topic: built once, run at every delivery. */
const topicReaders = new WeakMap<Identity, (topic: string) => boolean>();

/** Whether `who` may be sent a message on `topic` (no wildcards): mayRead's answer, at the cost of a lookup. */
export function mayReceive(who: Identity | undefined, topic: string): boolean {
  if (!who) return false;
  let reads = topicReaders.get(who);
  if (!reads) topicReaders.set(who, (reads = topicTest(readRoots(who))));
  return reads(topic);
}

/** One function matching a topic against MQTT filters: exact names, `<prefix>/#`, and any others as a regular expression. */
function topicTest(filters: string[]): (topic: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const patterns: RegExp[] = [];
  const literal = (level: string) => level.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const filter of filters) {
    const levels = filter.split('/');
    const multi = levels.at(-1) === '#';
    const fixed = multi ? levels.slice(0, -1) : levels;
    if (!fixed.includes('+') && !fixed.includes('#')) {
      if (!multi) exact.add(filter);
      else if (fixed.length === 0) patterns.push(/^[^$]/);
      else {
        exact.add(fixed.join('/')); // `a/#` matches `a` too
        prefixes.push(`${fixed.join('/')}/`);
      }
      continue;
    }
    // '+' takes a level that is not empty, as filterWithin does.
    const body = fixed.map((level) => (level === '+' ? '[^/]+' : literal(level))).join('/');
    patterns.push(new RegExp(multi ? `^${body}(?:/.*)?$` : `^${body}$`));
  }
  return (topic) =>
    exact.has(topic) || prefixes.some((p) => topic.startsWith(p)) || patterns.some((r) => r.test(topic));
}

/** Whether `who` may publish to `topic` (retained or not). */
function mayPublish(
  who: Identity | undefined,
  topic: string,
  retain: boolean,
  discoveryPrefix: string | null,
): boolean {
  if (topic.startsWith('$')) return false;
  if (who?.kind === 'device') return topic.startsWith(who.prefix);
  // App users send commands only (switches come with the command topics), and Home Assistant
  // its birth message; nothing else.
  if (who?.kind === 'user')
    return (
      (/^fogedge\/cameras\/[a-z0-9-]+\/[a-z]+\/set$/.test(topic) && can(who.role, 'cameras.manage')) ||
      (discoveryPrefix !== null && topic === `${discoveryPrefix}/status` && !retain)
    );
  return false;
}

/** A client for the log: `device "x"`, `user "y"`, or its client id. */
const describe = (who: Identity | undefined, clientId = '?') =>
  who?.kind === 'device'
    ? `device "${who.id}"`
    : who?.kind === 'user'
      ? `user "${who.username}"`
      : `client "${clientId}"`;

/** Whether every topic the filter can match is also matched by `allowed` (both MQTT filters). */
export function filterWithin(filter: string, allowed: string): boolean {
  const f = filter.split('/');
  const a = allowed.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = a[i];
    if (level === '#') return true;
    if (level === undefined) return false;
    if (f[i] === '#') return false; // wider than `allowed` from here
    if (level === '+') {
      if (f[i] === '') return false;
      continue;
    }
    if (f[i] === '+' || f[i] !== level) return false;
  }
  // `a/#` also matches `a` itself (MQTT's multi-level wildcard covers the parent level).
  return f.length === a.length || (f.length === a.length - 1 && a[f.length] === '#');
}

function notAuthorized(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 5 }) as AuthenticateError;
}

/** CONNACK 3 (MQTT 3.1.1) / 0x88 (MQTT 5): the broker cannot serve now. */
function serverUnavailable(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 3 }) as AuthenticateError;
}

function identifierRejected(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 2 }) as AuthenticateError;
}

/** A certificate for TLS: the installer's, or a self-signed one made at first start. */
async function tlsOptions(config: Config): Promise<{ cert: Buffer; key: Buffer }> {
  const files = config.mqtt!.tls;
  if (files) return { cert: await readFile(files.certFile), key: await readFile(files.keyFile) };
  const dir = dataPaths(config).tls;
  const cert = path.join(dir, 'mqtt.crt');
  const key = path.join(dir, 'mqtt.key');
  if (!existsSync(cert) || !existsSync(key)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Valid ten years (selfsigned takes dates, not days), and for every name and address the
    // box answers on, so that a client that checks the host name can be given this certificate.
    const host = os.hostname();
    const addresses = Object.values(os.networkInterfaces())
      .flat()
      .filter((i) => i && !i.internal)
      .map((i) => i!.address);
    const altNames = [
      ...[...new Set(['fogedge.local', 'localhost', host, `${host}.local`])].map((value) => ({ type: 2, value })),
      ...[...new Set(['127.0.0.1', '::1', ...addresses])].map((ip) => ({ type: 7, ip })),
    ];
    const notBeforeDate = new Date(Date.now() - 3_600_000); // a client whose clock is a little behind
    const notAfterDate = new Date(Date.now() + 10 * 365 * 86_400_000);
    const pems = await generate([{ name: 'commonName', value: 'fogedge.local' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate,
      notAfterDate,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames },
      ],
    } as never);
    await writeFile(key, pems.private, { mode: 0o600 });
    await writeFile(cert, pems.cert);
  }
  return { cert: await readFile(cert), key: await readFile(key) };
}

export function mqttService(config: Config): ServiceSchema {
  let aedes: Aedes | undefined;
  let persistence: LevelPersistence | undefined;
  const servers: net.Server[] = [];
  /** Open TCP and TLS connections, to close them all when the broker stops. */
  const sockets = new Set<net.Socket>();
  const identities = new WeakMap<Client, Identity>();
  /** Per camera: the retained topics the box keeps up to date (states, discovery) with their payloads. */
  const retainedOf = new Map<string, Map<string, string>>();
  /** Per camera: its objects in view now, by event id; and its snapshot topics. */
  const liveObjects = new Map<
    string,
    Map<string, { label: string; zones: string[]; stationary: boolean; topScore: number }>
  >();
  const snapshotTopics = new Map<string, Set<string>>();
  const specs = new Map<string, Camera>();
  /** Per camera: its Home Assistant configs, made when the camera changes, not on each event. */
  const discoveryOf = new Map<string, Map<string, string>>();
  /**
   * The retained topics change one update at a time: a camera's removal clearing them while an
   * earlier update is still publishing them would leave that camera retained for good.
   */
  const retainedWork = pLimit(1);
  /** Users who want notifications; read again when someone changes theirs or users change. */
  let targets: Promise<Array<{ username: string; role: Role; notifications: Notifications }>> | undefined;
  const grantedTopics = new WeakMap<Client, Set<string>>();
  /** When a client's dropped publish was last logged: one line a minute, whatever it sends. */
  const refusedLoggedAt = new WeakMap<Client, number>();
  /** Connections whose CONNECT is not through yet. */
  let pending = 0;
  let pendingWarned = false;
  let oversized = 0;
  let oversizedLoggedAt = 0;
  /** Refused sign-ins per address and name: a client guessing secrets is slowed, the device stays allowed. */
  const failures = new RateLimiterMemory({ points: 10, duration: 60 });

  /** Publishes as the box; `properties` (MQTT 5) reach v5 subscribers and are left out for 3.1.1 ones. */
  const publish = (
    topic: string,
    payload: unknown,
    options: { retain?: boolean; qos?: 0 | 1; properties?: PublishPacket['properties'] } = {},
  ) =>
    new Promise<void>((resolve) => {
      if (!aedes) return resolve();
      const body = Buffer.isBuffer(payload)
        ? payload
        : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
      const packet = {
        cmd: 'publish',
        topic,
        payload: body,
        qos: options.qos ?? 0,
        retain: options.retain ?? false,
        dup: false,
        ...(options.properties ? { properties: options.properties } : {}),
      };
      aedes.publish(packet as PublishPacket, () => resolve());
    });

  /** Connected clients by client id (aedes keeps them; its types do not say so). */
  const connected = () => (aedes as unknown as { clients: Record<string, Client> } | undefined)?.clients ?? {};
  const clientsOf = (pick: (id: Identity) => boolean): Client[] => {
    const out: Client[] = [];
    for (const client of Object.values(connected())) {
      const id = identities.get(client);
      if (id && pick(id)) out.push(client);
    }
    return out;
  };
  /**
   * Ends the connections of whoever `pick` names at once. An MQTT 5 client is told why first
   * (DISCONNECT 0x98, administrative action, with the reason); a 3.1.1 client is just closed.
   */
  const cutOff = (pick: (id: Identity) => boolean, why: string) => {
    for (const client of clientsOf(pick))
      client.disconnect({ reasonCode: ADMINISTRATIVE_ACTION, properties: { reasonString: why } });
  };

  /**
   * Takeover rules: a client id is held by one identity. The same device or user reconnecting
   * takes its connection over (MQTT's rule); anyone else is refused, so nobody can kick a
   * device off or inherit its persistent session by borrowing its client id.
   */
  async function claimClientId(client: Client, identity: Identity) {
    const key = identityKey(identity);
    const current = connected()[client.id];
    const holder = current && current !== client ? identities.get(current) : undefined;
    if (holder && identityKey(holder) !== key)
      throw identifierRejected(`client id "${client.id}" is in use by another device or user`);
    const owner = persistence!.sessionOwner(client.id);
    if (owner && owner !== key)
      throw identifierRejected(`client id "${client.id}" has a stored session of another device or user`);
    if (!client.clean) await persistence!.setSessionOwner(client.id, key);
  }

  function setup(broker: ServiceBroker, log: ServiceBroker['logger']) {
    const a = aedes!;
    a.authenticate = (client, username, password, done) => {
      const name = username ?? '';
      const secret = password?.toString() ?? '';
      const ip = (client.conn as { remoteAddress?: string }).remoteAddress;
      void (async () => {
        if (!name || !secret) throw notAuthorized('a user name and password are required');
        const limited = await failures.get(`${ip}/${name}`);
        if (limited && limited.remainingPoints <= 0)
          throw notAuthorized(`too many failed sign-ins, wait ${Math.ceil(limited.msBeforeNext / 1000)} s`);
        // A known device; else an app user, whose password is one of their API tokens; else an
        // unknown device, which lands as pending while the pairing window is open.
        const asDevice = (pair: boolean) =>
          call(broker, 'devices.authenticate', {
            id: name,
            secret,
            ip,
            pair,
          }).catch((err: { type?: string }) => {
            if (err.type === 'UNKNOWN_DEVICE') return undefined;
            throw err;
          });
        const device = (await asDevice(false)) ?? undefined;
        // A wrong credential is a refusal; the accounts service away is a failure, said in the log.
        const user = device
          ? undefined
          : await unlessRefused(call(broker, 'accounts.authenticate', { credential: secret }));
        let identity: Identity;
        if (user && user.user.username === name) {
          identity = {
            kind: 'user',
            username: user.user.username,
            role: user.user.role,
            credentialId: user.credentialId,
          };
        } else {
          // The name of a user is never a new device's: a wrong token for a user pairs nothing.
          const isUser = !device && (await call(broker, 'accounts.exists', { username: name })).exists;
          if (isUser) throw notAuthorized(`wrong token for user "${name}"`);
          const found = device ?? (await asDevice(true));
          if (!found) throw notAuthorized(`unknown device or user "${name}"`);
          if (found.state !== 'allowed') throw notAuthorized(`device "${name}" is ${found.state}`);
          identity = { kind: 'device', id: found.id, grants: found.grants, prefix: `fogedge/devices/${found.id}/` };
        }
        await claimClientId(client, identity);
        identities.set(client, identity);
      })().then(
        () => done(null, true),
        (err: Error & { returnCode?: number }) => {
          // The box could not check (accounts or devices away, a timeout): "server unavailable", so
          // the client tries again later, and no failed sign-in is counted against it.
          if (!err.returnCode && !isRefusal(err)) {
            log.warn(`MQTT sign-in of "${name}" from ${ip ?? 'unknown'} could not be checked: ${err.message}`);
            return done(serverUnavailable(err.message), false);
          }
          void failures.consume(`${ip}/${name}`).catch(() => undefined);
          log.warn(`MQTT sign-in refused for "${name}" from ${ip ?? 'unknown'}: ${err.message}`);
          done(err.returnCode ? (err as AuthenticateError) : notAuthorized(err.message), false);
        },
      );
    };

    a.authorizePublish = (client, packet, done) => {
      // A will published after a crash has no client left: its owner, kept with it, is checked.
      const will = client
        ? undefined
        : (packet as PublishPacket & { owner?: Identity; clientId?: string; brokerId?: string });
      const who = client ? identities.get(client) : will?.owner;
      const topic = packet.topic;
      const limit = config.mqtt?.maxPayloadBytes ?? Infinity;
      if (packet.payload.length > limit) {
        log.warn(
          `MQTT publish refused: ${packet.payload.length} bytes to "${topic}" is over mqtt.maxPayloadBytes (${limit})`,
        );
        return done(new Error('payload too large'));
      }
      if (mayPublish(who, topic, packet.retain, config.mqtt!.discoveryPrefix)) return done(null);
      // An app user's 3.1.1 client (a family member's Home Assistant clicking a switch it may not
      // use) is not cut off: the message is acknowledged and dropped, as Mosquitto does. MQTT 5
      // clients get PUBACK 0x87 from aedes; devices out of their prefix are disconnected.
      if (client && who?.kind === 'user' && client.version !== 5 && packet.qos < 2) {
        (packet as PublishPacket & { _notAuthorized?: boolean })._notAuthorized = true;
        if (packet.qos === 1)
          mqttPacket.writeToStream({ cmd: 'puback', messageId: packet.messageId }, client.conn as never);
        if (Date.now() - (refusedLoggedAt.get(client) ?? 0) > 60_000)
          log.warn(
            `MQTT publish refused and dropped: ${describe(who)} to "${topic}" (more from this client within a minute are not logged)`,
          );
        refusedLoggedAt.set(client, Date.now());
        return done(null);
      }
      log.warn(`MQTT ${will ? 'will' : 'publish'} refused: ${describe(who, will?.clientId)} to "${topic}"`);
      done(new Error(`not allowed to publish to ${topic}`));
    };

    // Every message a client is sent is checked against what it may read now: live, retained,
    // queued for its persistent session, after a reconnect or a restart of the box.
    a.authorizeForward = (client, packet) => (mayReceive(identities.get(client), packet.topic) ? packet : null);

    a.authorizeSubscribe = (client, sub, done) => {
      const who = identities.get(client);
      // Counted as granted, not as aedes adds them: one SUBSCRIBE may carry thousands of filters.
      const held = grantedTopics.get(client) ?? new Set<string>();
      const limit = config.mqtt!.maxSubscriptionsPerClient;
      if (held.size >= limit && !held.has(sub.topic)) {
        log.warn(
          `MQTT subscribe refused: client "${client.id}" holds ${held.size} subscriptions (mqtt.maxSubscriptionsPerClient ${limit})`,
        );
        return done(null, null as unknown as Subscription);
      }
      // A shared subscription ($share/<group>/<filter>) reads what its filter reads.
      const filter = sub.topic.startsWith('$share/')
        ? sub.topic.slice(sub.topic.indexOf('/', '$share/'.length) + 1)
        : sub.topic;
      if (mayRead(who, filter)) {
        grantedTopics.set(client, held.add(sub.topic));
        return done(null, sub);
      }
      log.warn(
        `MQTT subscribe refused: ${who?.kind ?? 'client'} "${who?.kind === 'device' ? who.id : who?.username}" to "${sub.topic}"`,
      );
      done(null, null as unknown as Subscription); // SUBACK failure (0x80) for this filter
    };
  }

  return {
    name: 'mqtt',
    dependencies: ['devices', 'accounts'],

    actions: {
      // Internal: a service of the box sends to one device, on the device's own command topic
      // (fogedge/devices/<id>/cmd/<channel>), e.g. USP records to a camera agent.
      sendToDevice: action({
        input: SendToDeviceInput,
        async handler(ctx) {
          if (!aedes) throw new NotReadyError('The MQTT broker is off on this node', 'MQTT_OFF');
          const { device, channel, contentType, responseChannel } = ctx.params;
          const properties =
            contentType || responseChannel
              ? {
                  ...(contentType ? { contentType } : {}),
                  ...(responseChannel ? { responseTopic: `fogedge/devices/${device}/${responseChannel}` } : {}),
                }
              : undefined;
          await publish(`fogedge/devices/${device}/cmd/${channel}`, Buffer.from(ctx.params.payloadBase64, 'base64'), {
            qos: ctx.params.qos,
            properties,
          });
          return { ok: true as const };
        },
      }),
    },

    events: {
      // A device denied or removed is cut off at once.
      ...on('device.updated', ({ id, state }) => {
        if (state === 'allowed') return;
        cutOff((i) => i.kind === 'device' && i.id === id, `device ${state}`);
      }),
      ...on('device.removed', ({ id }) => cutOff((i) => i.kind === 'device' && i.id === id, 'device removed')),
      // A user deleted, changed (role) or with a new password, or a token revoked: its
      // connections end at once, and sign in again (or not) under the new rules.
      ...on('account.deleted', ({ username }) =>
        cutOff((i) => i.kind === 'user' && i.username === username, 'user deleted'),
      ),
      ...on('account.updated', ({ username }) =>
        cutOff((i) => i.kind === 'user' && i.username === username, 'user changed'),
      ),
      ...on('account.password.changed', ({ username }) =>
        cutOff((i) => i.kind === 'user' && i.username === username, 'password changed'),
      ),
      ...on('account.credential.revoked', ({ credentialId }) =>
        cutOff((i) => i.kind === 'user' && i.credentialId === credentialId, 'token revoked'),
      ),
      // Switch states follow the camera's settings, wherever they were changed.
      ...on('camera.added', function ({ id }) {
        return this.publishCameras(id);
      }),
      ...on('camera.updated', function ({ id }) {
        return this.publishCameras(id);
      }),
      ...on('camera.removed', ({ id }) => {
        // Empty retained messages clear what was retained: states, snapshots, and the camera's
        // entities in Home Assistant.
        return retainedWork(async () => {
          const topics = [
            ...(retainedOf.get(id)?.keys() ?? []),
            ...(snapshotTopics.get(id) ?? []),
            `fogedge/cameras/${id}/status`,
          ];
          for (const map of [retainedOf, liveObjects, snapshotTopics, specs, discoveryOf]) map.delete(id);
          for (const topic of topics) await publish(topic, '', { retain: true });
        });
      }),
      ...on('camera.status.changed', ({ id, status }) =>
        publish(`fogedge/cameras/${id}/status`, status, { retain: true, qos: 1 }),
      ),
      async 'event.**'(ctx: { eventName: string; params: LiveEvent }) {
        const kind = {
          'event.started': 'new',
          'event.updated': 'update',
          'event.ended': 'end',
          'event.removed': 'removed',
        }[ctx.eventName];
        if (!kind) return;
        await publish(`fogedge/events/${ctx.params.camera}/${kind}`, ctx.params, { qos: 1 });
        await this.trackObject(ctx.params, kind === 'end' || kind === 'removed');
        if (kind === 'new') await this.notify(ctx.params);
      },
      'account.**'(ctx: { eventName: string }) {
        if (/^account\.(notifications\.changed|created|updated|deleted)$/.test(ctx.eventName)) targets = undefined;
      },
    },

    methods: {
      /** A camera's retained topics (switch states, objects in view, Home Assistant discovery) brought up to date. */
      publishCameras(id?: string) {
        // The list is read inside the turn: a camera removed before it is not brought back.
        return retainedWork(async () => {
          const cameras = await call(this.broker, 'cameras.specs', id ? { id } : {}).catch((err: Error) => {
            this.logger.warn(
              `MQTT: the cameras' retained topics are not refreshed, the registry is not reachable: ${err.message}`,
            );
            return [];
          });
          const prefix = config.mqtt?.discoveryPrefix; // none when the broker is off
          for (const camera of cameras) {
            specs.set(camera.id, camera);
            const configs = prefix
              ? discoveryConfigs(prefix, camera, Object.keys(SWITCHES), version)
              : new Map<string, object>();
            discoveryOf.set(camera.id, new Map([...configs].map(([topic, value]) => [topic, JSON.stringify(value)])));
            await this.syncRetainedNow(camera.id);
          }
        });
      },

      syncRetained(id: string) {
        return retainedWork(() => this.syncRetainedNow(id));
      },

      async syncRetainedNow(id: string) {
        const camera = specs.get(id);
        if (!camera) return;
        const next = new Map<string, string>();
        for (const [name, sw] of Object.entries(SWITCHES))
          next.set(`fogedge/cameras/${id}/${name}/state`, onOff(sw.get(camera)));
        for (const [topic, value] of objectStates(camera, liveObjects.get(id)?.values() ?? [])) next.set(topic, value);
        for (const [topic, value] of discoveryOf.get(id) ?? []) next.set(topic, value);
        const before = retainedOf.get(id) ?? new Map<string, string>();
        retainedOf.set(id, next);
        for (const [topic, value] of next)
          if (before.get(topic) !== value) await publish(topic, value, { retain: true, qos: 1 });
        for (const topic of before.keys()) if (!next.has(topic)) await publish(topic, '', { retain: true }); // a label or zone gone
      },

      /** A new event to each user who asked for it: fogedge/users/<username>/notifications (QoS 1). */
      async notify(e: LiveEvent & { start: string }) {
        if (specs.get(e.camera)?.notifications === false) return;
        targets ??= call(this.broker, 'accounts.notificationTargets', {}).catch((err: Error) => {
          this.logger.warn(
            `MQTT: nobody is notified of ${e.camera}'s event, the accounts service is not reachable: ${err.message}`,
          );
          return [];
        });
        const name = specs.get(e.camera)?.name ?? e.camera;
        for (const user of await targets) {
          if (!can(user.role, 'events.view') || !wantsNotification(user.notifications, e)) continue;
          await publish(
            `fogedge/users/${user.username}/notifications`,
            { title: `${e.label} at ${name}`, event: e },
            { qos: 1 },
          );
        }
      },

      /** Objects in view follow the events; a better snapshot becomes .../<label>/snapshot (retained JPEG). */
      async trackObject(e: LiveEvent, gone: boolean) {
        const objects = liveObjects.get(e.camera) ?? new Map();
        liveObjects.set(e.camera, objects);
        const before = objects.get(e.id);
        if (gone || e.end) objects.delete(e.id);
        else
          objects.set(e.id, {
            label: e.label,
            zones: e.zones ?? [],
            stationary: Boolean(e.stationary),
            topScore: e.topScore,
          });
        if (!specs.has(e.camera)) await this.publishCameras(e.camera);
        else await this.syncRetained(e.camera);
        if (gone || !e.hasSnapshot || (before && before.topScore >= e.topScore)) return;
        const snap = await unlessRefused(call(this.broker, 'events.snapshot', { id: e.id })).catch((err: Error) => {
          this.logger.warn(`MQTT: the snapshot of event ${e.id} is not published: ${err.message}`);
          return undefined;
        });
        if (!snap) return;
        const topic = `fogedge/cameras/${e.camera}/${e.label}/snapshot`;
        snapshotTopics.set(e.camera, (snapshotTopics.get(e.camera) ?? new Set()).add(topic));
        await publish(topic, Buffer.from(snap.jpegBase64, 'base64'), { retain: true });
      },

      /** MQTT over a WebSocket (the gateway's /mqtt) on this node's broker. */
      handleStream(stream: Duplex) {
        if (!aedes) return void stream.destroy();
        const { maxPayloadBytes, maxConnectBytes, maxPendingConnections } = config.mqtt!;
        // Before sign-in a connection costs little: a small packet limit, and only so many at once.
        if (pending >= maxPendingConnections) {
          if (!pendingWarned)
            this.logger.warn(
              `MQTT: ${pending} connections are not signed in yet (mqtt.maxPendingConnections); new ones are closed`,
            );
          pendingWarned = true;
          return void stream.destroy();
        }
        pending++;
        let counted = true;
        const settle = () => {
          if (counted) pending--;
          counted = false;
          if (pending < maxPendingConnections) pendingWarned = false;
        };
        stream.once('close', settle);
        coalesceWrites(stream);
        const client = aedes.handle(stream);
        client.once('connected' as never, settle);
        answerUnsupportedVersion(client, stream);
        const limit = () => (identities.has(client) ? maxPayloadBytes + PACKET_OVERHEAD_BYTES : maxConnectBytes);
        limitPacketSize(client, stream, limit, (bytes, max) => {
          const socket = stream as Partial<net.Socket>;
          const what =
            max === maxConnectBytes
              ? `before sign-in (mqtt.maxConnectBytes ${maxConnectBytes})`
              : `over mqtt.maxPayloadBytes (${maxPayloadBytes}) and room for its topic`;
          // At most one line every 10 s: a flood of such packets must not become a flood of lines.
          oversized++;
          if (Date.now() - oversizedLoggedAt < 10_000) return;
          this.logger.warn(
            `MQTT packet of ${bytes} bytes refused at its header from ${client.id ? `client "${client.id}"` : (socket.remoteAddress ?? 'a client')}: ${what}; connection closed${oversized > 1 ? ` (${oversized} such packets since the last line)` : ''}`,
          );
          oversized = 0;
          oversizedLoggedAt = Date.now();
        });
      },
    },

    async started() {
      const options = config.mqtt;
      if (!options) {
        this.logger.info('MQTT broker off (mqtt: null)');
        return;
      }
      persistence = new LevelPersistence(dataPaths(config).db('mqtt'), {
        maxQueuedPerClient: options.maxQueuedPerClient,
        ownerOf: (client) => identities.get(client as Client),
        mayPublishWill: (will) => {
          const owner = will['owner'] as Identity | undefined;
          if (mayPublish(owner, will.topic, will.retain, config.mqtt!.discoveryPrefix)) return true;
          this.logger.warn(`MQTT will refused: ${describe(owner, will['clientId'] as string)} to "${will.topic}"`);
          return false;
        },
        // The box's own snapshot JPEGs: republished with the next event, never worth the flash.
        volatileRetained: (topic) => SNAPSHOT_TOPIC.test(topic),
        isConnected: (clientId) => clientId in connected(),
        onSessionExpired: (clientId) =>
          this.logger.info(
            `MQTT session "${clientId}" expired (its Session Expiry Interval passed while the box was restarting)`,
          ),
        onDrop: (clientId, topic) =>
          this.logger.warn(
            `MQTT queue of offline client "${clientId}" is full (mqtt.maxQueuedPerClient ${options.maxQueuedPerClient}): its oldest message, to "${topic}", was dropped`,
          ),
      });
      aedes = await Aedes.createBroker({
        persistence: persistence as never,
        drainTimeout: options.drainTimeoutMs,
        // A slow reader holds up nobody (the aedes patch in patches/): its writes are buffered up to this.
        maxClientBufferBytes: Math.max(
          options.maxClientBufferBytes,
          2 * (options.maxPayloadBytes + PACKET_OVERHEAD_BYTES),
        ),
        maxClientsIdLength: 128,
        connectTimeout: 10_000,
        // MQTT 5: what the broker offers and bounds, said in each CONNACK.
        topicAliasMaximum: options.topicAliasMaximum,
        maximumPacketSize: options.maxPayloadBytes + PACKET_OVERHEAD_BYTES,
        sessionExpiryIntervalLimit: options.sessionExpiryLimitSeconds,
        pendingSessionsLimit: options.maxPendingSessions,
        // Wills left on disk by a crash go out at aedes' sweep, every 4 heartbeats.
        heartbeatInterval: (options.willGraceSeconds * 1000) / 4,
      } as AedesOptions & { maxClientBufferBytes: number });
      setup(this.broker, this.logger);
      aedes.on('unsubscribe', (topics, client) => {
        for (const topic of topics) grantedTopics.get(client)?.delete(topic);
      });
      // An MQTT 5 session kept after its client left ends at its expiry, across restarts too.
      aedes.on('clientDisconnect', (client) => {
        // A device's last connection gone: its services (USP) know it is offline.
        const who = identities.get(client);
        if (
          who?.kind === 'device' &&
          !clientsOf((i) => i.kind === 'device' && i.id === who.id).some((c) => c !== client)
        ) {
          void this.broker.broadcast('mqtt.device.disconnected', { device: who.id });
        }
        const interval = client.version === 5 && !client.clean ? client.sessionExpiryInterval : 0;
        if (interval > 0 && interval < 0xffffffff)
          void persistence?.setSessionExpiry(client.id, Date.now() + interval * 1000).catch(() => undefined);
      });
      aedes.on('clientReady', (client) => void persistence?.setSessionExpiry(client.id, null).catch(() => undefined));
      aedes.on('clientError', (client, err) => this.logger.debug(`MQTT client ${client?.id}: ${err.message}`));
      // aedes emits its own failures (a will sweep that failed) on itself: unheard, one would end the box.
      (aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
        this.logger.warn(`MQTT broker: ${err.message}`),
      );
      aedes.on('connectionError', (client, err) => this.logger.debug(`MQTT connection ${client?.id}: ${err.message}`));
      const listen = (server: net.Server, port: number) =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, options.host, () => resolve());
        });
      // A port taken (another broker on this machine) costs MQTT, not the box's video.
      const open = async (server: net.Server, port: number, what: string) => {
        try {
          await listen(server, port);
          servers.push(server);
        } catch (err) {
          this.logger.error(
            `MQTT ${what} cannot listen on ${options.host}:${port} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); set mqtt.port / mqtt.tlsPort, or mqtt: null`,
          );
        }
      };
      const handle = (socket: net.Socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        this.handleStream(socket);
      };
      await open(net.createServer(handle), options.port, 'TCP');
      // MQTT over WebSocket: the gateway of this node hands its /mqtt connections over.
      streamEndpoints(this.broker).set('mqtt', {
        accept: (stream) => this.handleStream(stream),
        maxMessageBytes: options.maxPayloadBytes + PACKET_OVERHEAD_BYTES,
      });
      if (options.tlsPort) await open(tls.createServer(await tlsOptions(config), handle), options.tlsPort, 'TLS');
      // Commands: an allowed .../set (authorizePublish checked who) changes the camera's setting
      // as that user, through the cameras service, so the same rules and audit apply as in the API.
      const haStatus = options.discoveryPrefix ? `${options.discoveryPrefix}/status` : undefined;
      aedes.on('publish', (packet, client) => {
        if (!client) return;
        // What a device sends to the box's services (USP records, agent hellos) goes on the bus as agent.message.
        if (packet.topic.startsWith('fogedge/devices/')) {
          const who = identities.get(client);
          const m = AGENT_CHANNEL.exec(packet.topic);
          if (m && who?.kind === 'device' && who.id === m[1]) {
            // Where it wants answers: /reply-to= on 3.1.1 (R-MQTT.24), the Response Topic on 5.
            const replyTo = m[3] ? decodeURIComponent(m[3]) : packet.properties?.responseTopic;
            void this.broker.broadcast('agent.message', {
              device: m[1],
              channel: m[2],
              payloadBase64: packet.payload.toString('base64'),
              ...(replyTo ? { replyTo } : {}),
            });
          }
          return;
        }
        if (packet.topic !== haStatus && !packet.topic.endsWith('/set')) return; // the hot path: most messages are neither
        // Home Assistant restarted: it may have lost what was retained on its side.
        if (packet.topic === haStatus && packet.payload.toString() === 'online') {
          for (const map of retainedOf.values()) map.clear();
          void this.publishCameras();
          return;
        }
        const m = /^fogedge\/cameras\/([a-z0-9-]+)\/([a-z]+)\/set$/.exec(packet.topic);
        const who = client && identities.get(client);
        const sw = m && SWITCHES[m[2]!];
        if (!m || !sw || who?.kind !== 'user') return;
        const value = packet.payload.toString().trim().toUpperCase();
        if (value !== 'ON' && value !== 'OFF')
          return this.logger.warn(`MQTT command ${packet.topic}: "${value}" is neither ON nor OFF`);
        const caller: Caller = { username: who.username, role: who.role, via: 'mqtt' };
        this.broker
          .call('cameras.update', { id: m[1], ...sw.set(value === 'ON') }, { meta: { caller } })
          .catch((err: Error) =>
            this.logger.warn(`MQTT command ${packet.topic} from "${who.username}" failed: ${err.message}`),
          );
      });
      await publish('fogedge/status', 'online', { retain: true, qos: 1 });
      await this.publishCameras();
      this.logger.info(
        `MQTT on ${options.host}:${options.port}${options.tlsPort ? `, TLS on ${options.tlsPort}` : ''}`,
      );
    },

    async stopped() {
      streamEndpoints(this.broker).delete('mqtt');
      await publish('fogedge/status', 'offline', { retain: true, qos: 1 });
      // No new connections; the listeners finish closing once aedes has closed the open ones.
      const closed = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      servers.length = 0;
      await new Promise<void>((r) => (aedes ? aedes.close(() => r()) : r()));
      // Sockets that never sent CONNECT are not aedes clients yet: cut them too.
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      await Promise.all(closed);
      aedes = undefined;
      await persistence?.destroy(); // aedes.close() leaves its persistence open
      persistence = undefined;
    },
  };
}
