// A packet larger than the box takes is cut off at its fixed header, before its body is read:
// mqtt-packet's parser would otherwise buffer the whole of it (up to 256 MiB) before aedes and
// authorizePublish ever see it. The stream goes; aedes closes that client as for any drop.
import type { Duplex } from 'node:stream';

/** The part of mqtt-packet's parser (one per aedes client) this needs. */
interface Parser {
  packet: { length: number };
  _parseLength(): boolean;
}

/** Room for a PUBLISH's topic, packet id and MQTT 5 properties beside its payload. */
export const PACKET_OVERHEAD_BYTES = 70 * 1024;

/** `maxBytes` is asked at each packet: before sign-in it is smaller (a CONNECT), after it the payload limit. */
export function limitPacketSize(
  client: unknown,
  stream: Duplex,
  maxBytes: () => number,
  onRefused: (bytes: number, max: number) => void,
): void {
  const parser = (client as { _parser?: Parser })._parser;
  if (!parser) throw new Error('aedes client without its mqtt-packet parser: the packet size limit cannot be applied');
  const parseLength = parser._parseLength.bind(parser);
  let refused = false;
  parser._parseLength = () => {
    if (refused) return false;
    const done = parseLength();
    const max = maxBytes();
    if (!done || parser.packet.length <= max) return done;
    refused = true;
    onRefused(parser.packet.length, max);
    stream.destroy();
    return false; // parse no further: the rest of this packet is never read
  };
}
