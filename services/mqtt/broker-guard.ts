// Who may connect, publish, subscribe and be sent what: the broker's hooks. Devices sign in with
// their id and secret, app users with their name and an API token; a client id belongs to one
// identity; every delivery is checked against what its client may read now.
import mqttPacket from 'mqtt-packet';
import type { Aedes, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import type { ServiceBroker } from 'moleculer';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { call } from '../../lib/bus.ts';
import { isRefusal, unlessRefused } from '../../lib/refusals.ts';
import type { Config } from '../../appliance/config.ts';
import { describe, identityKey, mayPublish, mayRead, mayReceive, type Identity } from './access-rules.ts';
import type { LevelPersistence } from './level-persistence.ts';
import { topics } from '../../lib/topics.ts';

export function notAuthorized(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 5 }) as AuthenticateError;
}

/** CONNACK 3 (MQTT 3.1.1) / 0x88 (MQTT 5): the broker cannot serve now. */
function serverUnavailable(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 3 }) as AuthenticateError;
}

function identifierRejected(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 2 }) as AuthenticateError;
}

export interface GuardParts {
  config: Config;
  broker: ServiceBroker;
  log: ServiceBroker['logger'];
  /** Who each signed-in client is. */
  identities: WeakMap<Client, Identity>;
  persistence: LevelPersistence;
  /** Connected clients by client id. */
  connected(): Record<string, Client>;
}

export class BrokerGuard {
  /** The filters each client holds: counted against mqtt.maxSubscriptionsPerClient. */
  private readonly grantedTopics = new WeakMap<Client, Set<string>>();
  /** When a client's dropped publish was last logged: one line a minute, whatever it sends. */
  private readonly refusedLoggedAt = new WeakMap<Client, number>();
  /** Refused sign-ins per address and name: a client guessing secrets is slowed, the device stays allowed. */
  private readonly failures = new RateLimiterMemory({ points: 10, duration: 60 });

  constructor(private readonly p: GuardParts) {}

  install(a: Aedes): void {
    const { config, broker, log, identities } = this.p;
    const { failures, refusedLoggedAt, grantedTopics } = this;
    const claimClientId = (client: Client, identity: Identity) => this.claimClientId(client, identity);
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
          identity = { kind: 'device', id: found.id, grants: found.grants, prefix: `${topics.device(found.id)}/` };
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
    a.on('unsubscribe', (topics, client) => {
      for (const topic of topics) grantedTopics.get(client)?.delete(topic);
    });
  }

  /**
   * Takeover rules: a client id is held by one identity. The same device or user reconnecting
   * takes its connection over (MQTT's rule); anyone else is refused, so nobody can kick a
   * device off or inherit its persistent session by borrowing its client id.
   */
  private async claimClientId(client: Client, identity: Identity) {
    const { identities, persistence, connected } = this.p;
    const key = identityKey(identity);
    const current = connected()[client.id];
    const holder = current && current !== client ? identities.get(current) : undefined;
    if (holder && identityKey(holder) !== key)
      throw identifierRejected(`client id "${client.id}" is in use by another device or user`);
    const owner = persistence.sessionOwner(client.id);
    if (owner && owner !== key)
      throw identifierRejected(`client id "${client.id}" has a stored session of another device or user`);
    if (!client.clean) await persistence.setSessionOwner(client.id, key);
  }
}
