// The broker's connections: its TCP and TLS listeners, and every stream handed to it (those and
// the gateway's WebSocket /mqtt). Before sign-in a connection costs little: a small packet limit,
// and only so many at once; packets over the limits are refused at their header.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Aedes, Client } from 'aedes';
import type { ServiceBroker } from 'moleculer';
import type { Config } from '../../appliance/config.ts';
import type { Identity } from './access-rules.ts';
import { coalesceWrites } from './coalesce-writes.ts';
import { limitPacketSize, PACKET_OVERHEAD_BYTES } from './packet-limit.ts';
import { readHotPacketsDirectly } from './hot-packets.ts';
import { tlsOptions } from './tls-certificate.ts';
import { answerUnsupportedVersion } from './unsupported-version.ts';

export class Connections {
  /** Connections whose CONNECT is not through yet. */
  private pending = 0;
  private pendingWarned = false;
  private oversized = 0;
  private oversizedLoggedAt = 0;
  private readonly servers: net.Server[] = [];
  /** Open TCP and TLS connections, to close them all when the broker stops. */
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly config: Config,
    private readonly aedes: Aedes,
    private readonly identities: WeakMap<Client, Identity>,
    private readonly log: ServiceBroker['logger'],
  ) {}

  /** Opens the TCP listener, and the TLS one when mqtt.tlsPort is set. A port taken costs MQTT, not the box's video. */
  async listen(): Promise<void> {
    const options = this.config.mqtt!;
    const handle = (socket: net.Socket) => {
      // Writes are already gathered per turn of the loop (coalesceWrites): Nagle's algorithm would
      // only hold a PUBACK back until the client's delayed ACK.
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      this.accept(socket);
    };
    await this.open(net.createServer(handle), options.port, 'TCP');
    if (options.tlsPort)
      await this.open(tls.createServer(await tlsOptions(this.config), handle), options.tlsPort, 'TLS');
  }

  /** No new connections; the listeners finish closing once `closeBroker` has closed the open ones. */
  async close(closeBroker: () => Promise<void>): Promise<void> {
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    this.servers.length = 0;
    await closeBroker();
    // Sockets that never sent CONNECT are not aedes clients yet: cut them too.
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await Promise.all(closed);
  }

  /** One connection, from a listener or a WebSocket. */
  accept(stream: Duplex): void {
    const { maxPayloadBytes, maxConnectBytes, maxPendingConnections } = this.config.mqtt!;
    // Before sign-in a connection costs little: a small packet limit, and only so many at once.
    if (this.pending >= maxPendingConnections) {
      if (!this.pendingWarned)
        this.log.warn(
          `MQTT: ${this.pending} connections are not signed in yet (mqtt.maxPendingConnections); new ones are closed`,
        );
      this.pendingWarned = true;
      return void stream.destroy();
    }
    this.pending++;
    let counted = true;
    const settle = () => {
      if (counted) this.pending--;
      counted = false;
      if (this.pending < maxPendingConnections) this.pendingWarned = false;
    };
    stream.once('close', settle);
    coalesceWrites(stream);
    const client = this.aedes.handle(stream);
    client.once('connected' as never, settle);
    answerUnsupportedVersion(client, stream);
    const limit = () => (this.identities.has(client) ? maxPayloadBytes + PACKET_OVERHEAD_BYTES : maxConnectBytes);
    limitPacketSize(client, stream, limit, (bytes, max) => {
      const socket = stream as Partial<net.Socket>;
      const what =
        max === maxConnectBytes
          ? `before sign-in (mqtt.maxConnectBytes ${maxConnectBytes})`
          : `over mqtt.maxPayloadBytes (${maxPayloadBytes}) and room for its topic`;
      // At most one line every 10 s: a flood of such packets must not become a flood of lines.
      this.oversized++;
      if (Date.now() - this.oversizedLoggedAt < 10_000) return;
      this.log.warn(
        `MQTT packet of ${bytes} bytes refused at its header from ${client.id ? `client "${client.id}"` : (socket.remoteAddress ?? 'a client')}: ${what}; connection closed${this.oversized > 1 ? ` (${this.oversized} such packets since the last line)` : ''}`,
      );
      this.oversized = 0;
      this.oversizedLoggedAt = Date.now();
    });
    readHotPacketsDirectly(client, limit);
  }

  private async open(server: net.Server, port: number, what: string) {
    const { host } = this.config.mqtt!;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      this.servers.push(server);
    } catch (err) {
      this.log.error(
        `MQTT ${what} cannot listen on ${host}:${port} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); set mqtt.port / mqtt.tlsPort, or mqtt: null`,
      );
    }
  }
}
