// The broker's commonest packets, PUBLISH and the QoS acknowledgements without properties,
// encoded into one buffer: mqtt-packet writes each field to the socket on its own (six writes
// for an MQTT 5 PUBLISH, four for its PUBACK) and corks and uncorks per packet. Anything else
// is left to mqtt-packet (undefined).
import type { Packet } from 'mqtt-packet';

const ACK_HEADERS: Record<string, number> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 };
const MAX_REMAINING_LENGTH = 268_435_455;

function noProperties(properties: unknown): boolean {
  if (properties === undefined || properties === null) return true;
  if (typeof properties !== 'object') return false;
  // A forwarded packet's resolved topic alias is left as undefined, not deleted.
  for (const key in properties) if ((properties as Record<string, unknown>)[key] !== undefined) return false;
  return true;
}

function varIntLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarInt(buf: Buffer, at: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    buf[at++] = byte;
  } while (n > 0);
  return at;
}

/**
 * The last PUBLISH encoded: a publish goes to each subscriber in turn, and all but its packet id
 * is the same for each of one protocol version. A QoS 0 one is written as the same buffer (nothing
 * changes a buffer once written); a QoS 1 or 2 one is copied and given its packet id.
 */
const last = {
  payload: undefined as Buffer | undefined,
  topic: '',
  header: 0,
  v5: false,
  buf: Buffer.alloc(0),
  idAt: 0,
};

export function encodePacket(packet: Packet, protocolVersion: 3 | 4 | 5): Buffer | undefined {
  const v5 = protocolVersion === 5;
  if (packet.cmd === 'publish') {
    const { topic, payload, qos = 0, messageId } = packet;
    if (typeof topic !== 'string' || (qos > 0 && typeof messageId !== 'number')) return undefined;
    if (v5 && !noProperties(packet.properties)) return undefined;
    const header = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 0x01 : 0);
    if (payload === last.payload && topic === last.topic && header === last.header && v5 === last.v5) {
      if (qos === 0) return last.buf;
      const buf = Buffer.from(last.buf);
      buf.writeUInt16BE(messageId!, last.idAt);
      return buf;
    }
    const topicBytes = Buffer.byteLength(topic);
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (!Buffer.isBuffer(body) && body !== undefined) return undefined;
    const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (v5 ? 1 : 0) + (body?.length ?? 0);
    if (remaining > MAX_REMAINING_LENGTH) return undefined;
    const buf = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining);
    buf[0] = header;
    let at = writeVarInt(buf, 1, remaining);
    buf.writeUInt16BE(topicBytes, at);
    at += 2 + buf.write(topic, at + 2, 'utf8');
    const idAt = at;
    if (qos > 0) at = buf.writeUInt16BE(messageId!, at);
    if (v5) buf[at++] = 0; // no properties
    body?.copy(buf, at);
    if (Buffer.isBuffer(payload)) Object.assign(last, { payload, topic, header, v5, buf, idAt });
    return buf;
  }
  const header = ACK_HEADERS[packet.cmd];
  if (header !== undefined) {
    const { messageId } = packet as { messageId?: number };
    const { reasonCode, properties } = packet as { reasonCode?: number; properties?: unknown };
    if (typeof messageId !== 'number') return undefined;
    // MQTT 5 lets a success without properties leave out the reason code (3.4.2.1).
    if (v5 && ((reasonCode !== undefined && reasonCode !== 0) || !noProperties(properties))) return undefined;
    const dup = packet.cmd === 'pubrel' && (packet as { dup?: boolean }).dup ? 0x08 : 0;
    const buf = Buffer.allocUnsafe(4);
    buf[0] = header | dup;
    buf[1] = 2;
    buf.writeUInt16BE(messageId, 2);
    return buf;
  }
  return undefined;
}
