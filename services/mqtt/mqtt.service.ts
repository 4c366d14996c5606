// mqtt: the site's MQTT broker (aedes) on TCP and TLS (and WebSocket at the gateway's
// /mqtt). Devices sign in with their own id and secret and may publish only under
// fogedge/devices/<id>/; app users sign in with their user name and an API token and
// read what their role may see. The box publishes its state and the detector's events.
// The work is in its parts: access-rules, broker-guard (sign-in and the hooks), connections,
// camera-topics (what the box publishes), level-persistence; this file wires them.
import { Aedes, type AedesOptions, type Client, type PublishPacket } from 'aedes';
import type { ServiceSchema } from 'moleculer';
import { action } from '../../lib/actions.ts';
import { broadcast, call, callIfRunning, on } from '../../lib/bus.ts';
import type {} from '../push/push.schemas.ts';
import { can } from '../../lib/permissions.ts';
import { NotReadyError } from '../../lib/errors.ts';
import { streamEndpoints } from '../../lib/stream-endpoints.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { describe, mayPublish, type Identity } from './access-rules.ts';
import { BrokerGuard } from './broker-guard.ts';
import { CameraTopics, type LiveEvent } from './camera-topics.ts';
import { Connections } from './connections.ts';
import { LevelPersistence } from './level-persistence.ts';
import { CommandInput, NotifyUsersInput, SendToDeviceInput } from './mqtt.schemas.ts';
import { DeviceMessages } from './device-messages.ts';
import { encodePacket } from './packet-encoding.ts';
import { ModeTopics } from './mode-topics.ts';
import { PACKET_OVERHEAD_BYTES } from './packet-limit.ts';
import { AGENT_CHANNEL, SNAPSHOT_TOPIC, topics } from '../../lib/topics.ts';

/** MQTT 5 DISCONNECT reason: the broker's administrator ended the connection (a revoked credential). */
const ADMINISTRATIVE_ACTION = 0x98;

/** Topics under which devices talk to the box's services (and the hot path skips). */
const DEVICES_PREFIX = topics.device('');

export function mqttService(config: Config): ServiceSchema {
  let aedes: Aedes | undefined;
  let persistence: LevelPersistence | undefined;
  let cameraTopics: CameraTopics | undefined;
  let connections: Connections | undefined;
  let modeTopics: ModeTopics | undefined;
  let deviceMessages: DeviceMessages | undefined;
  const identities = new WeakMap<Client, Identity>();
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
  /** Whether a device has a connection besides this one: its first opening and last closing tell its services. */
  const otherConnection = (device: string, client: Client) =>
    clientsOf((i) => i.kind === 'device' && i.id === device).some((c) => c !== client);
  /**
   * Ends the connections of whoever `pick` names at once. An MQTT 5 client is told why first
   * (DISCONNECT 0x98, administrative action, with the reason); a 3.1.1 client is just closed.
   */
  const cutOff = (pick: (id: Identity) => boolean, why: string) => {
    for (const client of clientsOf(pick))
      client.disconnect({ reasonCode: ADMINISTRATIVE_ACTION, properties: { reasonString: why } });
  };

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
                  ...(responseChannel ? { responseTopic: `${topics.device(device)}/${responseChannel}` } : {}),
                }
              : undefined;
          await publish(topics.deviceCommand(device, channel), Buffer.from(ctx.params.payloadBase64, 'base64'), {
            qos: ctx.params.qos,
            properties,
          });
          return { ok: true as const };
        },
      }),

      // A command to a device on its command topic, as text: an automation's siren, a user's light.
      command: action({
        input: CommandInput,
        permission: 'devices.command',
        async handler(ctx) {
          if (!aedes) throw new NotReadyError('The MQTT broker is off on this node', 'MQTT_OFF');
          const { device, channel, payload, qos } = ctx.params;
          await publish(topics.deviceCommand(device, channel), payload, { qos });
          return { ok: true as const };
        },
      }),

      // Internal: a notification to users on their own topic; only to those whose role may see events.
      notifyUsers: action({
        input: NotifyUsersInput,
        async handler(ctx) {
          const { users, ...notification } = ctx.params;
          const roles = new Map((await call(ctx.broker, 'accounts.listUsers', {})).map((u) => [u.username, u.role]));
          const sent = users.filter((u) => {
            const role = roles.get(u);
            return role !== undefined && can(role, 'events.view');
          });
          for (const user of sent) {
            await publish(
              `${topics.user(user)}/notifications`,
              { ...notification, at: new Date().toISOString() },
              { qos: 1 },
            );
            // The other channels (Web Push) carry the same.
            void broadcast(ctx, 'user.notified', { username: user, ...notification });
          }
          return { sent };
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
      ...on('camera.added', ({ id }) => cameraTopics?.publishCameras(id)),
      ...on('camera.updated', ({ id }) => cameraTopics?.publishCameras(id)),
      ...on('camera.removed', ({ id }) => cameraTopics?.cameraRemoved(id)),
      ...on('camera.status.changed', ({ id, status }) => cameraTopics?.cameraStatus(id, status)),
      ...on('mode.applied', ({ active, mode, options }) => {
        cameraTopics?.modeApplied(mode.notifyUsers);
        return modeTopics?.applied(active.id, options);
      }),
      ...on('device.removed', ({ id }) => deviceMessages?.forget(id)),
      async 'event.**'(ctx: { eventName: string; params: LiveEvent }) {
        await cameraTopics?.event(ctx.eventName, ctx.params);
      },
      ...on('review.opened', (item) => cameraTopics?.review('new', item)),
      ...on('review.updated', (item) => cameraTopics?.review('update', item)),
      ...on('review.closed', (item) => cameraTopics?.review('end', item)),
      'account.**'(ctx: { eventName: string }) {
        if (/^account\.(notifications\.changed|created|updated|deleted)$/.test(ctx.eventName))
          cameraTopics?.accountsChanged();
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
        // PUBLISH and its acknowledgements in one write each (the aedes patch in patches/).
        encodePacket,
        maxClientsIdLength: 128,
        // What a client sends after its CONNECT, before the CONNACK, waits in a queue (the aedes
        // patch in patches/): room for a device's backlog, bounded like the CONNECT itself.
        queueLimit: 1000,
        queueLimitBytes: options.maxConnectBytes,
        connectTimeout: 10_000,
        // MQTT 5: what the broker offers and bounds, said in each CONNACK.
        topicAliasMaximum: options.topicAliasMaximum,
        maximumPacketSize: options.maxPayloadBytes + PACKET_OVERHEAD_BYTES,
        sessionExpiryIntervalLimit: options.sessionExpiryLimitSeconds,
        pendingSessionsLimit: options.maxPendingSessions,
        // Wills left on disk by a crash go out at aedes' sweep, every 4 heartbeats.
        heartbeatInterval: (options.willGraceSeconds * 1000) / 4,
      } as AedesOptions & { maxClientBufferBytes: number; queueLimitBytes: number; encodePacket: typeof encodePacket });
      new BrokerGuard({
        config,
        broker: this.broker,
        log: this.logger,
        identities,
        persistence,
        connected,
      }).install(aedes);
      // An MQTT 5 session kept after its client left ends at its expiry, across restarts too.
      aedes.on('clientDisconnect', (client) => {
        // A device's last connection gone: its services (USP) know it is offline.
        const who = identities.get(client);
        if (who?.kind === 'device' && !otherConnection(who.id, client)) {
          void this.broker.broadcast('mqtt.device.disconnected', { device: who.id });
        }
        const interval = client.version === 5 && !client.clean ? client.sessionExpiryInterval : 0;
        if (interval > 0 && interval < 0xffffffff)
          void persistence?.setSessionExpiry(client.id, Date.now() + interval * 1000).catch(() => undefined);
      });
      aedes.on('clientReady', (client) => {
        void persistence?.setSessionExpiry(client.id, null).catch(() => undefined);
        // A device's first connection: the automations know it is online.
        const who = identities.get(client);
        if (who?.kind === 'device' && !otherConnection(who.id, client))
          void this.broker.broadcast('mqtt.device.connected', { device: who.id });
      });
      aedes.on('clientError', (client, err) => this.logger.debug(`MQTT client ${client?.id}: ${err.message}`));
      // aedes emits its own failures (a will sweep that failed) on itself: unheard, one would end the box.
      (aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
        this.logger.warn(`MQTT broker: ${err.message}`),
      );
      aedes.on('connectionError', (client, err) => this.logger.debug(`MQTT connection ${client?.id}: ${err.message}`));
      connections = new Connections(config, aedes, identities, this.logger);
      await connections.listen();
      // MQTT over WebSocket: the gateway of this node hands its /mqtt connections over.
      const accepting = connections;
      streamEndpoints(this.broker).set('mqtt', {
        accept: (stream) => accepting.accept(stream),
        maxMessageBytes: options.maxPayloadBytes + PACKET_OVERHEAD_BYTES,
      });
      // Commands: an allowed .../set (authorizePublish checked who) changes the camera's setting
      // as that user, through the cameras service, so the same rules and audit apply as in the API.
      const haStatus = options.discoveryPrefix ? `${options.discoveryPrefix}/status` : undefined;
      aedes.on('publish', (packet, client) => {
        if (!client) return;
        // What a device sends to the box's services (USP records, agent hellos) goes on the bus as agent.message.
        if (packet.topic.startsWith(DEVICES_PREFIX)) {
          const who = identities.get(client);
          const m = AGENT_CHANNEL.exec(packet.topic);
          // Its own topics, not those to the box's services: its states, for the devices service and the automations.
          if (!m && who?.kind === 'device' && packet.topic.startsWith(who.prefix)) {
            const below = packet.topic.slice(who.prefix.length);
            if (!below.startsWith('cmd/'))
              deviceMessages?.published(who.id, below, packet.payload as Buffer, packet.retain);
            return;
          }
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
        if (packet.topic === haStatus) {
          if (packet.payload.toString() === 'online') {
            void cameraTopics?.homeAssistantOnline();
            void modeTopics?.publishDiscovery();
          }
        } else if (packet.topic === topics.modeSet)
          modeTopics?.command(packet.payload as Buffer, identities.get(client));
        else if (packet.topic.endsWith('/set'))
          cameraTopics?.command(packet.topic, packet.payload, identities.get(client));
      });
      await publish(topics.status, 'online', { retain: true, qos: 1 });
      cameraTopics = new CameraTopics(config, this.broker, this.logger, publish);
      await cameraTopics.publishCameras();
      deviceMessages = new DeviceMessages(
        options.deviceMessagesPerSecond,
        (messages) => void this.broker.broadcast('device.messages', { messages }),
        this.logger,
      );
      modeTopics = new ModeTopics(config, this.broker, this.logger, publish);
      // The mode in force, if the modes service started first (otherwise its mode.applied comes).
      const modes = await callIfRunning(this.broker, 'modes.list', {});
      if (modes) {
        cameraTopics.modeApplied(modes.modes.find((m) => m.id === modes.active.id)?.notifyUsers ?? null);
        await modeTopics.applied(
          modes.active.id,
          modes.modes.map((m) => m.id),
        );
      }
      this.logger.info(
        `MQTT on ${options.host}:${options.port}${options.tlsPort ? `, TLS on ${options.tlsPort}` : ''}`,
      );
    },

    async stopped() {
      streamEndpoints(this.broker).delete('mqtt');
      deviceMessages?.close();
      await publish(topics.status, 'offline', { retain: true, qos: 1 });
      const broker = aedes;
      await connections?.close(() => new Promise<void>((r) => (broker ? broker.close(() => r()) : r())));
      connections = undefined;
      cameraTopics = undefined;
      modeTopics = undefined;
      deviceMessages = undefined;
      aedes = undefined;
      await persistence?.destroy(); // aedes.close() leaves its persistence open
      persistence = undefined;
    },
  };
}
