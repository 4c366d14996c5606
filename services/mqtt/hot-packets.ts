// The packets nearly all of a busy broker's input is made of, PUBLISH at QoS 0 or 1 and PUBACK, are
// read straight from the socket's chunk when they come whole. mqtt-packet's parser reads through a
// buffer list that makes a Buffer view for each field it reads: under QoS 1 load that was a tenth
// of the broker's CPU and much of its garbage. Anything else (CONNECT, SUBSCRIBE, QoS 2, MQTT 5
// properties, a packet cut across chunks, anything malformed) goes to mqtt-packet as before, so
// the packets aedes gets, and the errors, are the same.
import type { EventEmitter } from 'node:events';

/** The part of mqtt-packet's parser (one per aedes client) this needs. */
interface Parser extends EventEmitter {
  /** The CONNECT packet once it is read: its protocolVersion. */
  settings: { protocolVersion?: number };
  /** The packet being read: its remaining length once known. */
  packet: { length: number };
  /** Bytes of the packet being read it holds (those after its fixed header, once that is read). */
  _list: { length: number };
  /** 0: between packets; 1: the remaining length is being read; 2: the rest of the packet. */
  _stateCounter: number;
  error: Error | null;
  parse(buf: Buffer): number;
  _emitError(err: Error): void;
}

/** The same fields, in the same order, as mqtt-packet's own packets. */
interface ReadPacket {
  cmd: 'publish' | 'puback';
  retain: boolean;
  qos: number;
  dup: boolean;
  length: number;
  topic: string | null;
  payload: Buffer | null;
  messageId?: number;
  reasonCode?: number;
}

/** A fixed header is at most five bytes: a type byte and a remaining length of four. */
const MAX_FIXED_HEADER = 5;

/** `maxBytes` is the packet limit of packet-limit.ts: a longer packet is left to it. */
export function readHotPacketsDirectly(client: unknown, maxBytes: () => number): void {
  const parser = (client as { _parser?: Parser })._parser;
  if (!parser) throw new Error('aedes client without its mqtt-packet parser');
  const parse = parser.parse.bind(parser);
  parser.parse = (buf: Buffer) => {
    const version = parser.settings.protocolVersion;
    // Before CONNECT, or after an error (mqtt-packet starts over): all of it to mqtt-packet.
    if (!version || parser.error) return parse(buf);
    const limit = maxBytes();
    let at = 0;
    while (at < buf.length) {
      if (parser._stateCounter === 0 && parser._list.length === 0) {
        const end = readOne(buf, at, version, limit, parser);
        if (end < 0) break; // malformed: the parser's error closes the connection
        if (end) {
          at = end;
          continue;
        }
      }
      // mqtt-packet reads this packet: it is given only the bytes up to its end, so that the next
      // one starts between packets again.
      let give = 1;
      if (parser._stateCounter === 2) give = Math.max(1, parser.packet.length - parser._list.length);
      else if (parser._list.length >= MAX_FIXED_HEADER) give = buf.length - at;
      parse(buf.subarray(at, at + give));
      at += give;
      // An error ends the chunk, as in mqtt-packet (the connection is closed).
      if (parser.error) break;
    }
    return parser._list.length;
  };
}

/**
 * Reads one whole PUBLISH (QoS 0/1) or PUBACK at `at` and hands it on: the offset after it; 0: left
 * to mqtt-packet; -1: malformed, and the parser's error emitted.
 */
function readOne(buf: Buffer, at: number, version: number, limit: number, parser: Parser): number {
  const first = buf[at]!;
  const type = first >> 4;
  const qos = (first >> 1) & 3;
  if (!((type === 3 && qos < 2) || first === 0x40)) return 0;
  // Remaining length: a variable byte integer of at most four bytes.
  let length = 0;
  let p = at + 1;
  for (let shift = 0; ; shift += 7) {
    if (p >= buf.length || shift > 21) return 0;
    const byte = buf[p++]!;
    length += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) break;
  }
  const end = p + length;
  if (end > buf.length || length > limit) return 0;
  if (type === 4) {
    // PUBACK: its packet id; in MQTT 5 a Success reason code and no properties may follow.
    if (length < 2) return malformed(parser, 'Cannot parse messageId');
    if (length > 2 && !(version === 5 && length <= 4 && buf[p + 2] === 0 && (length === 3 || buf[p + 3] === 0)))
      return 0;
    const packet: ReadPacket = {
      cmd: 'puback',
      retain: false,
      qos: 0,
      dup: false,
      length,
      topic: null,
      payload: null,
      messageId: buf.readUInt16BE(p),
    };
    if (version === 5) packet.reasonCode = 0;
    parser.emit('packet', packet);
    return end;
  }
  const topicEnd = length < 2 ? end + 1 : p + 2 + buf.readUInt16BE(p);
  if (topicEnd > end) return malformed(parser, 'Cannot parse topic');
  let payloadAt = topicEnd + (qos ? 2 : 0);
  // mqtt-packet would read this packet id from the next packet's bytes.
  if (payloadAt > end) return malformed(parser, 'Cannot parse messageId');
  if (version === 5) {
    // Only a PUBLISH without properties (a property length of 0).
    if (payloadAt >= end || buf[payloadAt] !== 0) return 0;
    payloadAt++;
  }
  const packet: ReadPacket = {
    cmd: 'publish',
    retain: (first & 1) !== 0,
    qos,
    dup: (first & 8) !== 0,
    length,
    topic: buf.toString('utf8', p + 2, topicEnd),
    payload: null,
  };
  if (qos) packet.messageId = buf.readUInt16BE(topicEnd);
  packet.payload = buf.subarray(payloadAt, end);
  parser.emit('packet', packet);
  return end;
}

function malformed(parser: Parser, message: string): -1 {
  parser._emitError(new Error(message));
  return -1;
}
