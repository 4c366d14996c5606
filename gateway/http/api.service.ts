// api: the node's HTTP listener (Hono). Run it on the node(s) that face the LAN.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dataPaths } from '../../appliance/data-dir.ts';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';
import type { ServiceSchema } from 'moleculer';
import type { Config } from '../../appliance/config.ts';
import { buildApp } from './app.ts';
import { attachWebSockets, type WebSockets } from './websockets.ts';
import { setTunnelEndpoint } from '../../lib/stream-endpoints.ts';
import { serveTunnel } from './tunnel.ts';

/** How long an idle keep-alive connection is held (ms). */
export const KEEP_ALIVE_MS = 65_000;

export function apiService(config: Config): ServiceSchema {
  let server: ServerType | undefined;
  let webSockets: WebSockets | undefined;
  const forward = (ctx: { eventName: string; params: unknown }) => webSockets?.publish(ctx.eventName, ctx.params);

  return {
    name: 'api',

    // What /api/v1/updates clients hear about.
    events: {
      'event.**': forward,
      'review.**': forward,
      'camera.**': forward,
      // Not device.message: the devices' raw messages; device.reported is their state.
      'device.added': forward,
      'device.updated': forward,
      'device.removed': forward,
      'device.pending': forward,
      'device.pairing': forward,
      'device.reported': forward,
      'mode.applied': forward,
      'automation.ran': forward,
      'automation.stopped': forward,
      'sync.status.changed': forward,
      'admp.status.changed': forward,
      'recording.archive.changed': forward,
      'recording.disk.changed': forward,
    },

    async started() {
      // Segments and clips are served from here: a new box has no media folder yet.
      await mkdir(dataPaths(config).media, { recursive: true });
      const app = buildApp(this.broker, config);
      const { host, port, tls } = config.http;
      const options = tls
        ? {
            createServer: createHttpsServer,
            serverOptions: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) },
          }
        : {};
      await new Promise<void>((resolve, reject) => {
        server = serve({ fetch: app.fetch, hostname: host, port, ...options }, () => resolve());
        server.once('error', reject);
      });
      // An idle keep-alive connection is held 65 s, not Node's 5 s: a client that sends on it as the
      // server closes it gets ECONNRESET, and clients (scripts, integrations) that keep connections
      // in a pool do not all retry. Their idle timeouts are commonly 60 s or less, so they close first.
      (server as Server).keepAliveTimeout = KEEP_ALIVE_MS;
      (server as Server).headersTimeout = KEEP_ALIVE_MS + 1000;
      const sockets = (webSockets = attachWebSockets(server as Server, this.broker));
      // A remote browser's data channel (webrtc service): the same app, as the paired user.
      setTunnelEndpoint(this.broker, {
        accept: (channel, caller) =>
          serveTunnel(channel, caller, (request, who) => app.fetch(request, { tunnelCaller: who }), {
            add: (client, who) => sockets.addUpdatesClient(client, who),
          }),
      });
      const address = server!.address() as AddressInfo;
      this.settings['port'] = address.port; // the real one when configured as 0 (tests)
      this.logger.info({ port: address.port }, `HTTP${tls ? 'S' : ''} listening on ${host}:${address.port}`);
    },

    async stopped() {
      setTunnelEndpoint(this.broker, undefined);
      if (!server) return;
      webSockets?.close();
      webSockets = undefined;
      const closing = new Promise<void>((resolve) => server!.close(() => resolve()));
      // Keep-alive sockets would hold the close open: end them.
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closing;
      server = undefined;
    },
  };
}
