// The load generator's MQTT client for bench:mqtt: CONNECT, SUBSCRIBE, PUBLISH and PUBACK on a raw
// socket, 3.1.1 or 5.0. mqtt.js costs the clients more CPU per message than either broker spends,
// so on a 2-core machine the clients, not the brokers, set the pace and the ratio measures them.
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

export interface LightOptions {
  port: number;
  clientId: string;
  username: string;
  password: string;
  protocolVersion: 4 | 5;
}

function varInt(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

/** The value and the size of the variable byte integer at `at`, or undefined if it is not all there. */
function readVarInt(buf: Buffer, at: number): { value: number; bytes: number } | undefined {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    if (at + i >= buf.length) return undefined;
    const byte = buf[at + i]!;
    value += (byte & 0x7f) * 128 ** i;
    if (byte < 0x80) return { value, bytes: i + 1 };
  }
  throw new Error('malformed remaining length from the broker');
}

export class LightClient {
  /** Each message received: its payload (a view of the read buffer, valid during the call). */
  onMessage: (payload: Buffer) => void = () => undefined;
  private pending: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly acked = new Map<number, () => void>();
  private reply: ((code: number) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly v5: boolean,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => undefined);
  }

  static async connect(o: LightOptions): Promise<LightClient> {
    const socket = net.connect(o.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new LightClient(socket, o.protocolVersion === 5);
    const code = await client.ask(
      mqttPacket.generate(
        {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: o.protocolVersion,
          clean: true,
          clientId: o.clientId,
          keepalive: 0,
          username: o.username,
          password: Buffer.from(o.password),
        },
        { protocolVersion: o.protocolVersion },
      ),
    );
    if (code !== 0) throw new Error(`${o.clientId}: the broker refused the connection (code ${code})`);
    return client;
  }

  async subscribe(filter: string, qos: 0 | 1): Promise<void> {
    const granted = await this.ask(
      mqttPacket.generate(
        { cmd: 'subscribe', messageId: this.id(), subscriptions: [{ topic: filter, qos }] },
        { protocolVersion: this.v5 ? 5 : 4 },
      ),
    );
    if (granted !== qos) throw new Error(`subscribe to ${filter} got ${granted}, not QoS ${qos}`);
  }

  /** QoS 0: written; QoS 1: resolved at its PUBACK. */
  publish(topic: string, payload: string, qos: 0 | 1): Promise<void> | undefined {
    const body = Buffer.from(payload);
    const topicBytes = Buffer.byteLength(topic);
    const remaining = 2 + topicBytes + (qos ? 2 : 0) + (this.v5 ? 1 : 0) + body.length;
    const head = [0x30 | (qos << 1), ...varInt(remaining)];
    const buf = Buffer.allocUnsafe(head.length + remaining);
    buf.set(head);
    let at = buf.writeUInt16BE(topicBytes, head.length);
    at += buf.write(topic, at);
    const id = qos ? this.id() : 0;
    if (qos) at = buf.writeUInt16BE(id, at);
    if (this.v5) buf[at++] = 0; // no properties
    body.copy(buf, at);
    this.socket.write(buf);
    if (!qos) return undefined;
    return new Promise((resolve) => this.acked.set(id, resolve));
  }

  end(): void {
    this.socket.destroy();
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = id === 65_535 ? 1 : id + 1;
    return id;
  }

  /** Sends a CONNECT or SUBSCRIBE; resolves with the CONNACK's or SUBACK's code. */
  private ask(packet: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      this.reply = resolve;
      this.socket.once('close', () => reject(new Error('the broker closed the connection')));
      this.socket.write(packet);
    });
  }

  private read(chunk: Buffer): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = 0;
    const acks: number[] = [];
    for (;;) {
      if (buf.length - at < 2) break;
      const length = readVarInt(buf, at + 1);
      if (!length) break;
      const start = at + 1 + length.bytes;
      const end = start + length.value;
      if (end > buf.length) break;
      const type = buf[at]! >> 4;
      if (type === 3) {
        const qos = (buf[at]! >> 1) & 3;
        let p = start + 2 + buf.readUInt16BE(start);
        if (qos) {
          acks.push(0x40, 2, buf[p]!, buf[p + 1]!);
          p += 2;
        }
        if (this.v5) {
          const props = readVarInt(buf, p)!;
          p += props.bytes + props.value;
        }
        this.onMessage(buf.subarray(p, end));
      } else if (type === 4) {
        const id = buf.readUInt16BE(start);
        this.acked.get(id)?.();
        this.acked.delete(id);
      } else if (type === 2) {
        this.reply?.(buf[start + 1]!);
      } else if (type === 9) {
        // SUBACK: packet id, (5.0: properties), then the granted QoS.
        let p = start + 2;
        if (this.v5) {
          const props = readVarInt(buf, p)!;
          p += props.bytes + props.value;
        }
        this.reply?.(buf[p]!);
      }
      at = end;
    }
    if (acks.length) this.socket.write(Buffer.from(acks));
    this.pending = buf.subarray(at);
  }
}
