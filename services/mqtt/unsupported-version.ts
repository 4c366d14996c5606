// [MQTT-3.1.2-2] A CONNECT with a protocol level the broker does not speak is answered with
// CONNACK 0x01 (unacceptable protocol version) before the connection closes. mqtt-packet's parser
// refuses such a CONNECT itself, so aedes never sees it and would only drop the connection.
import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';

/** CONNACK, session present 0, return code 0x01: the 3.1.1 form, which every client version reads. */
const CONNACK_UNSUPPORTED_VERSION = Buffer.from([0x20, 0x02, 0x00, 0x01]);

export function answerUnsupportedVersion(client: unknown, stream: Duplex): void {
  const parser = (client as { _parser?: EventEmitter })._parser;
  if (!parser) throw new Error('aedes client without its mqtt-packet parser: a bad protocol level cannot be answered');
  // Before aedes' own listener, which closes the connection.
  parser.prependListener('error', (err: Error) => {
    if (err.message !== 'Invalid protocol version' || stream.destroyed) return;
    stream.write(CONNACK_UNSUPPORTED_VERSION);
    // Out now: writes held for coalescing would be lost when the connection is closed next.
    while (stream.writableCorked) stream.uncork();
  });
}
