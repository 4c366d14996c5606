// The box's WebSockets, both signed in like the rest of the API:
// - /api/v1/updates: JSON messages {type, data} as things happen (events of the detector,
//   cameras going on- or offline, devices asking to pair, the sync backlog), each only to
//   users whose role may see it.
// - /api/v1/cameras/{id}/live: live view (below).
//
// Live view: GET /api/v1/cameras/{id}/live upgraded to a WebSocket. The first message
// is JSON {type:'init', mime} for MediaSource.addSourceBuffer; then binary messages,
// each appendable as is: the init segment (again after a camera restart), then
// fragments (moof+mdat). The bytes come from the streams service, on this node or over
// NATS, from the one ffmpeg that records the camera.
import { call } from '../../lib/bus.ts';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ServiceBroker } from 'moleculer';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { relayLive, webSocketSink } from './live-relay.ts';
import { streamEndpoints } from '../../lib/stream-endpoints.ts';
import { SLUG } from '../../lib/ids.ts';
import type { Caller } from '../../lib/actions.ts';
import { can, type Permission } from '../../lib/permissions.ts';
import { ForbiddenError } from '../../lib/errors.ts';
import { classify } from './middleware/error-handler.ts';
import { credentialOf, signInRequired } from './middleware/authenticate.ts';

const LIVE_PATH = new RegExp(`^/api/v1/cameras/(${SLUG})/live$`);
const UPDATES_PATH = '/api/v1/updates';
const MQTT_PATH = '/mqtt';
/** Who may get which updates, by the bus event's name. */
const UPDATE_PERMISSIONS: Array<[RegExp, Permission]> = [
  [/^event\./, 'events.view'],
  [/^review\./, 'events.view'],
  [/^camera\./, 'live.view'],
  [/^device\./, 'devices.manage'],
  [/^mode\.applied$/, 'live.view'],
  [/^automation\./, 'automations.manage'],
  [/^sync\.status\./, 'system.view'],
  [/^admp\.status\./, 'system.view'],
  [/^recording\.(archive|disk)\.changed$/, 'system.view'],
];
/** An updates client this far behind (bytes queued on its socket) is cut off. */
const SOCKET_BACKLOG_BYTES = 4 * 1024 * 1024;

function refuse(socket: Duplex, err: Error): void {
  const { status, type, message } = classify(err);
  const body = JSON.stringify({ error: { type, message } });
  socket.end(
    `HTTP/1.1 ${status} ${type}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Who is asking: a bearer token, or the session cookie of a page from this box's own origin. */
async function callerOf(broker: ServiceBroker, req: IncomingMessage): Promise<Caller> {
  const credential = credentialOf(req.headers.authorization, req.headers.cookie);
  if (!credential) throw signInRequired();
  if (credential.from === 'cookie') {
    // Browsers send cookies on cross-site WebSockets too: only the box's own pages may use them.
    const origin = req.headers.origin;
    if (!origin || !URL.canParse(origin) || new URL(origin).host !== req.headers.host) {
      throw new ForbiddenError(
        'Live view with a session cookie is only for pages of this box (Origin does not match)',
        { origin: origin ?? null },
      );
    }
  }
  const auth = await call(broker, 'accounts.authenticate', {
    credential: credential.value,
  });
  return {
    username: auth.user.username,
    role: auth.user.role,
    ip: req.socket.remoteAddress ?? 'unknown',
    via: 'http',
    credential: auth.credentialId,
  };
}

/** Who hears the updates: a WebSocket here, or a remote browser's data channel. */
export interface UpdatesClient {
  send(text: string): void;
  /** Bytes queued for it. */
  backlog(): number;
  terminate(): void;
}

export interface WebSockets {
  /** Sends a bus event to every updates client allowed to see it. */
  publish(type: string, data: unknown): void;
  /** Adds an updates client (it gets "hello" at once); returns its removal. */
  addUpdatesClient(client: UpdatesClient, caller: Caller): () => void;
  close(): void;
}

export function attachWebSockets(server: Server, broker: ServiceBroker): WebSockets {
  const sockets = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  // MQTT over WebSocket: clients ask for the "mqtt" subprotocol; a frame may be as large as the broker's packets.
  const mqttSockets = new Map<number, WebSocketServer>();
  const mqttSocketsUpTo = (maxPayload: number) => {
    let wss = mqttSockets.get(maxPayload);
    if (!wss)
      mqttSockets.set(
        maxPayload,
        (wss = new WebSocketServer({
          noServer: true,
          maxPayload,
          handleProtocols: (p) => (p.has('mqtt') ? 'mqtt' : false),
        })),
      );
    return wss;
  };
  const updateClients = new Map<UpdatesClient, Caller>();
  const addUpdatesClient = (client: UpdatesClient, caller: Caller) => {
    updateClients.set(client, caller);
    client.send(JSON.stringify({ type: 'hello', data: { username: caller.username, role: caller.role } }));
    return () => void updateClients.delete(client);
  };
  const log = broker.getLogger('websocket');

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://box');
    const pathname = url.pathname;
    if (pathname === MQTT_PATH) {
      // The broker signs the client in from its CONNECT packet, as on TCP.
      const mqtt = streamEndpoints(broker).get('mqtt');
      if (!mqtt) return refuse(socket, Object.assign(new Error('No MQTT broker on this node'), { code: 404 }));
      mqttSocketsUpTo(mqtt.maxMessageBytes).handleUpgrade(req, socket, head, (ws) =>
        mqtt.accept(createWebSocketStream(ws)),
      );
      return;
    }
    const id = LIVE_PATH.exec(pathname)?.[1];
    if (!id && pathname !== UPDATES_PATH)
      return refuse(socket, Object.assign(new Error('No WebSocket at this path'), { code: 404 }));
    socket.on('error', () => undefined);
    void (async () => {
      const caller = await callerOf(broker, req);
      if (!id) {
        sockets.handleUpgrade(req, socket, head, (ws) => {
          const remove = addUpdatesClient(
            { send: (text) => ws.send(text), backlog: () => ws.bufferedAmount, terminate: () => ws.terminate() },
            caller,
          );
          ws.on('close', remove);
          ws.on('message', () => undefined);
        });
        return;
      }
      const viewer = randomUUID();
      // ?stream=sub: the camera's sub-stream (grid thumbnails), when it has one.
      const stream = url.searchParams.get('stream') === 'sub' ? 'sub' : 'main';
      const feed = await call(broker, 'streams.live', { id, viewer, stream }, { meta: { caller } });
      if (socket.destroyed) {
        feed.destroy();
        return;
      }
      sockets.handleUpgrade(req, socket, head, (ws) =>
        relayLive(
          webSocketSink(ws),
          feed,
          () =>
            void broker
              .call('streams.liveStop', { viewer }, { meta: { caller } })
              .catch((err: Error) =>
                log.debug(`live ${id}: the feed was not told the viewer left (its node is away?): ${err.message}`),
              ),
        ),
      );
    })().catch((err: Error) => {
      if ((err as { code?: number }).code === undefined || classify(err).status >= 500)
        log.warn(`${pathname}: ${err.message}`);
      refuse(socket, err);
    });
  });

  return {
    publish(type, data) {
      const permission = UPDATE_PERMISSIONS.find(([pattern]) => pattern.test(type))?.[1];
      if (!permission || updateClients.size === 0) return;
      const message = JSON.stringify({ type, data });
      for (const [client, caller] of updateClients) {
        // A client that does not read is not worth the box's memory.
        if (client.backlog() > SOCKET_BACKLOG_BYTES) client.terminate();
        else if (caller.role && can(caller.role, permission)) client.send(message);
      }
    },
    addUpdatesClient,
    close() {
      const mqtt = [...mqttSockets.values()];
      for (const ws of [...sockets.clients, ...mqtt.flatMap((wss) => [...wss.clients])]) ws.close(1001, 'box stopping');
      sockets.close();
      for (const wss of mqtt) wss.close();
    },
  };
}
