// The broker's parts, run in Node: a publish encoded once for its many subscribers, what devices
// send batched onto the bus, and aedes (as patched) acknowledging a QoS 1 publish once it is stored.
// What a client receives from the box end to end is in mqtt.test and mqtt5.test.
import net from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet';
import type { LoggerInstance } from 'moleculer';
import { encodePacket } from '../services/mqtt/packet-encoding.ts';
import { BATCH_MS, DeviceMessages } from '../services/mqtt/device-messages.ts';
import type { DeviceMessage } from '../services/mqtt/mqtt.schemas.ts';

/** What a client of this protocol version reads from these bytes (mqtt-packet's own parser). */
function decoded(buf: Buffer, protocolVersion: 4 | 5): IPublishPacket {
  const parser = mqttPacket.parser({ protocolVersion });
  const packets: Packet[] = [];
  parser.on('packet', (p) => packets.push(p));
  parser.on('error', (e) => assert.unreachable(e.message));
  parser.parse(buf);
  assert.is(packets.length, 1);
  return packets[0] as IPublishPacket;
}

const publish = (qos: 0 | 1, payload = Buffer.from('{"door":"open"}')) =>
  ({ cmd: 'publish', topic: 'fogedge/devices/door/state', payload, qos, retain: false, dup: false }) as IPublishPacket;

test('one QoS 1 publish to three subscribers: each gets its own packet id, the same topic and payload', () => {
  const packet = publish(1);
  const bufs = [7, 8, 9].map((messageId) => encodePacket({ ...packet, messageId }, 4)!);
  assert.equal(
    bufs.map((b) => decoded(b, 4).messageId),
    [7, 8, 9],
  );
  for (const b of bufs) {
    assert.is(decoded(b, 4).topic, packet.topic);
    assert.is(decoded(b, 4).payload.toString(), '{"door":"open"}');
  }
});

test('one QoS 0 publish to 3.1.1, 5.0 and 3.1.1 subscribers in turn: each reads it in its version', () => {
  const packet = publish(0);
  const v4 = encodePacket(packet, 4)!;
  const v5 = encodePacket(packet, 5)!;
  const v4again = encodePacket(packet, 4)!;
  assert.is(v5.length, v4.length + 1); // the empty properties
  assert.is(decoded(v5, 5).payload.toString(), '{"door":"open"}');
  assert.is(decoded(v4again, 4).payload.toString(), '{"door":"open"}');
  assert.is(decoded(v4again, 4).topic, packet.topic);
});

test('the next publish to the same topic is encoded anew, not the last one sent again', () => {
  assert.is(decoded(encodePacket(publish(0, Buffer.from('open')), 4)!, 4).payload.toString(), 'open');
  assert.is(decoded(encodePacket(publish(0, Buffer.from('shut')), 4)!, 4).payload.toString(), 'shut');
  // The same bytes in a new buffer, retained this time: the flag is in what is sent.
  const retained = { ...publish(0, Buffer.from('shut')), retain: true };
  assert.is(decoded(encodePacket(retained, 4)!, 4).retain, true);
});

const quietLog = { warn: () => undefined } as unknown as LoggerInstance;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('device messages: a lone one goes on at once; a flood goes as few bus events and loses nothing', async () => {
  const events: DeviceMessage[][] = [];
  const messages = new DeviceMessages(10_000, (m) => events.push(m), quietLog);
  messages.published('door', 'state', Buffer.from('open'), false);
  await sleep(5);
  assert.is(events.length, 1, 'a lone message waited for a batch');
  // 100 ms of messages, one every millisecond or so.
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < 100) {
    messages.published('door', 'state', Buffer.from(String(sent++)), false);
    await sleep(1);
  }
  await sleep(BATCH_MS + 5);
  const flood = events.slice(1);
  assert.ok(flood.length <= Math.ceil(100 / BATCH_MS) + 2, `${flood.length} bus events for 100 ms of messages`);
  assert.equal(
    flood.flat().map((m) => m.payload),
    Array.from({ length: sent }, (_, i) => String(i)),
  );
  messages.close();
});

test('aedes as patched: a QoS 1 PUBACK comes once the message is queued for an offline persistent session, not before', async () => {
  const broker = await Aedes.createBroker();
  const { persistence } = broker as unknown as {
    persistence: { outgoingEnqueueCombi(subs: unknown[], packet: unknown): Promise<void> };
  };
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence);
  let stored = false;
  // A slow disk: the queueing takes 300 ms.
  persistence.outgoingEnqueueCombi = async (subs, packet) => {
    await sleep(300);
    await enqueue(subs, packet);
    stored = true;
  };
  const server = net.createServer((socket) => broker.handle(socket));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  try {
    const phone = await mqtt.connectAsync(url, { clientId: 'phone', clean: false, reconnectPeriod: 0 });
    await phone.subscribeAsync('alarm/siren', { qos: 1 });
    await phone.endAsync();
    const panel = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    await panel.publishAsync('alarm/siren', 'on', { qos: 1 });
    assert.ok(stored, 'the PUBACK came before the message was queued for the offline session');
    await panel.endAsync();
    const back = await mqtt.connectAsync(url, { clientId: 'phone', clean: false, reconnectPeriod: 0 });
    const message = await new Promise<string>((r) => back.once('message', (_t, payload) => r(payload.toString())));
    assert.is(message, 'on');
    await back.endAsync();
  } finally {
    server.close();
    await new Promise<void>((r) => broker.close(() => r()));
  }
});

test.run();
