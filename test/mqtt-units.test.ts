// The broker's parts, run in Node: a publish encoded once for its many subscribers, PUBLISH and
// PUBACK read without mqtt-packet's parser (the same packets as with it), what devices
// send batched onto the bus, and aedes (as patched) acknowledging a QoS 1 publish once it is stored
// and delivering every message, however QoS 0 and QoS 1 publishes interleave.
// What a client receives from the box end to end is in mqtt.test and mqtt5.test.
import net from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet';
import type { LoggerInstance } from 'moleculer';
import { encodePacket } from '../services/mqtt/packet-encoding.ts';
import { readHotPacketsDirectly } from '../services/mqtt/hot-packets.ts';
import { BATCH_MS, DeviceMessages } from '../services/mqtt/device-messages.ts';
import type { DeviceMessage } from '../services/mqtt/mqtt.schemas.ts';
import { connectPacket } from './helpers/mqtt.ts';

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

/** A small seeded generator: a failure shows the same stream again. */
function random(seed: number) {
  return () => (seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32;
}

/** Random packets a broker reads, hot ones and others, as one byte stream. */
function packetStream(version: 3 | 4 | 5, rnd: () => number, count: number) {
  const opts = { protocolVersion: version };
  const bufs: Buffer[] = [];
  /** Bytes of the packets mqtt-packet still reads: QoS 2, MQTT 5 properties or reason codes, the rest. */
  let otherBytes = 0;
  for (let i = 0; i < count; i++) {
    const r = rnd();
    const messageId = 1 + Math.floor(rnd() * 65535);
    const payload = Buffer.alloc(Math.floor(rnd() * (rnd() < 0.1 ? 300 : 40)), i % 256);
    const topic = `fogedge/devices/dev${i % 7}/${rnd() < 0.2 ? 'ünïcode' : 'data'}`;
    let packet: Packet;
    if (r < 0.45) {
      const qos = Math.floor(rnd() * 3) as 0 | 1 | 2;
      packet = { cmd: 'publish', topic, payload, qos, retain: rnd() < 0.2, dup: rnd() < 0.1, messageId };
      if (version === 5 && rnd() < 0.3)
        packet.properties = { contentType: 'application/json', userProperties: { a: 'b' } };
    } else if (r < 0.85) {
      packet = { cmd: 'puback', messageId };
      if (version === 5 && rnd() < 0.3) packet.reasonCode = rnd() < 0.5 ? 0 : 0x10;
      if (version === 5 && rnd() < 0.1) packet.properties = { reasonString: 'why' };
    } else if (r < 0.9) packet = { cmd: 'subscribe', messageId, subscriptions: [{ topic: 'a/#', qos: 1 }] };
    else if (r < 0.95) packet = { cmd: 'pingreq' };
    else packet = { cmd: 'pubrel', messageId };
    const bytes = mqttPacket.generate(packet, opts);
    const hot =
      (packet.cmd === 'publish' && packet.qos < 2 && !packet.properties) ||
      (packet.cmd === 'puback' && !packet.properties && !packet.reasonCode);
    if (!hot) otherBytes += bytes.length;
    bufs.push(bytes);
  }
  return { stream: Buffer.concat(bufs), otherBytes };
}

/** What a parser emits for these chunks: packets (Buffers as hex), errors, and the bytes mqtt-packet itself got. */
function parsed(chunks: Buffer[], version: 3 | 4 | 5, direct: boolean, limit = 1 << 20) {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const out: string[] = [];
  parser.on('packet', (p) =>
    out.push(JSON.stringify(p, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v))),
  );
  parser.on('error', (e) => out.push(`error: ${e.message}`));
  let byParser = 0;
  const parse = parser.parse.bind(parser);
  parser.parse = (b: Buffer) => ((byParser += b.length), parse(b));
  if (direct) readHotPacketsDirectly({ _parser: parser }, () => limit);
  for (const c of chunks) parser.parse(c);
  return { out, byParser };
}

test('PUBLISH and PUBACK read directly: the same packets as mqtt-packet gives, in 3.1, 3.1.1 and 5.0, however the stream is cut', () => {
  for (const version of [3, 4, 5] as const) {
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = random(seed * 31 + version);
      const { stream, otherBytes } = packetStream(version, rnd, 200);
      // Cut anywhere, as TCP may: mostly whole packets, some mid-header, mid-topic, mid-payload.
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length;) {
        const size = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 8 : 400));
        chunks.push(stream.subarray(at, at + size));
        at += size;
      }
      const reference = parsed([stream], version, false);
      const direct = parsed(chunks, version, true);
      assert.is(reference.out.length, 200);
      assert.equal(direct.out, reference.out, `version ${version}, seed ${seed}`);
      // Most of it did not go through mqtt-packet at all.
      // Read whole, the hot packets never reach mqtt-packet.
      const whole = parsed([stream], version, true);
      assert.equal(whole.out, reference.out);
      assert.is(whole.byParser, otherBytes);
    }
  }
});

test("PUBLISH and PUBACK read directly: malformed and oversized ones get mqtt-packet's own answer", () => {
  const cases: Array<[string, number[], string?]> = [
    ['topic longer than the packet', [0x30, 0x03, 0x00, 0x05, 0x61]],
    // With a third entry: mqtt-packet reads on into the next packet's bytes; the box refuses it.
    ['QoS 1 without room for its packet id', [0x32, 0x04, 0x00, 0x01, 0x61, 0x00], 'Cannot parse messageId'],
    ['both QoS bits', [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ['a remaining length of five bytes', [0x30, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ['PUBACK with flags', [0x42, 0x02, 0x00, 0x01]],
    ['PUBACK too short', [0x40, 0x01, 0x00], 'Cannot parse messageId'],
    ['MQTT 5 PUBACK with a bad reason code', [0x40, 0x03, 0x00, 0x01, 0x01]],
    [
      'MQTT 5 PUBLISH with a property length past its end',
      [0x30, 0x05, 0x00, 0x01, 0x61, 0x09, 0x01],
      'Cannot parse property code type',
    ],
    ['an empty PUBLISH', [0x30, 0x00]],
  ];
  for (const version of [4, 5] as const) {
    for (const [what, bytes, refused] of cases) {
      if (what.startsWith('MQTT 5') && version !== 5) continue;
      const good = mqttPacket.generate({ cmd: 'puback', messageId: 9 }, { protocolVersion: version });
      const chunk = Buffer.concat([good, Buffer.from(bytes), good]);
      const direct = parsed([chunk], version, true).out;
      if (refused) assert.equal(direct, [parsed([good], version, false).out[0], `error: ${refused}`], what);
      else assert.equal(direct, parsed([chunk], version, false).out, `${what}, version ${version}`);
    }
  }
  // Longer than the box takes now: left to mqtt-packet, where the packet limit cuts it off.
  const big = mqttPacket.generate({
    cmd: 'publish',
    topic: 't',
    payload: Buffer.alloc(500),
    qos: 0,
    retain: false,
    dup: false,
  });
  assert.is(parsed([big], 4, true, 100).byParser, big.length);
  assert.is(parsed([big], 4, true, 1000).byParser, 0);
});

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

test('aedes as patched: QoS 1 and QoS 0 publishes in one write all reach a subscriber, in order for each QoS, each QoS 1 one with its own id', async () => {
  const broker = await Aedes.createBroker();
  const server = net.createServer((socket) => broker.handle(socket));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const phone = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    await phone.subscribeAsync('hall/#', { qos: 1 });
    const got: Array<{ topic: string; qos: number; messageId?: number; payload: string }> = [];
    const all = new Promise<void>((resolve) =>
      phone.on('packetreceive', (p) => {
        if (p.cmd !== 'publish') return;
        got.push({ topic: p.topic, qos: p.qos, messageId: p.messageId, payload: p.payload.toString() });
        if (got.length === 80) resolve();
      }),
    );
    // A panel, once signed in, sends 40 QoS 1 and 40 QoS 0 publishes in one write: the broker
    // handles them in one turn.
    const panel = net.connect(port, '127.0.0.1');
    panel.write(connectPacket('panel'));
    await new Promise((r) => panel.once('data', r)); // its CONNACK
    const packets = Array.from({ length: 80 }, (_, i) => {
      const qos = i < 40 ? 1 : 0;
      const packet = { ...publish(qos, Buffer.from(String(i))), topic: `hall/${qos}` };
      return mqttPacket.generate(qos ? { ...packet, messageId: i + 1 } : packet);
    });
    panel.write(Buffer.concat(packets));
    await all;
    const sent = (qos: number) => Array.from({ length: 40 }, (_, i) => String(qos ? i : 40 + i));
    const byQos = (qos: number) => got.filter((p) => p.qos === qos);
    assert.equal(
      byQos(1).map((p) => p.payload),
      sent(1),
      'the QoS 1 messages in the order published',
    );
    assert.equal(
      byQos(0).map((p) => p.payload),
      sent(0),
      'the QoS 0 messages in the order published',
    );
    assert.is(new Set(byQos(1).map((p) => p.messageId)).size, 40, 'each QoS 1 packet has its own id');
    panel.destroy();
    await phone.endAsync();
  } finally {
    server.close();
    await new Promise<void>((r) => broker.close(() => r()));
  }
});

test('aedes as patched: before the CONNACK, a queue bounded in bytes; past it the client is cut off and nothing of it published', async () => {
  for (const [queueLimitBytes, expected] of [
    [100_000, 20],
    [1000, 0],
  ] as const) {
    const broker = await Aedes.createBroker({
      queueLimit: 1000,
      queueLimitBytes,
      // A slow sign-in: what the client sends meanwhile waits in the queue.
      authenticate: (_client: unknown, _user: unknown, _password: unknown, done: (e: null, ok: boolean) => void) =>
        setTimeout(() => done(null, true), 300),
    } as never);
    const published: string[] = [];
    broker.on('publish', (packet) => {
      if (packet.topic === 'hall/log') published.push(packet.payload.toString());
    });
    const server = net.createServer((socket) => broker.handle(socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const device = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    try {
      const closed = new Promise<boolean>((r) => device.once('close', () => r(true)));
      device.on('error', () => undefined);
      // 20 publishes of about 100 bytes: 2 KB waiting for the CONNACK.
      const backlog = Array.from({ length: 20 }, (_, i) =>
        mqttPacket.generate({ ...publish(0, Buffer.alloc(90, i)), topic: 'hall/log' }),
      );
      device.write(Buffer.concat([connectPacket('logger'), ...backlog]));
      const cut = await Promise.race([closed, sleep(1500).then(() => false)]);
      assert.is(published.length, expected, `queueLimitBytes ${queueLimitBytes}`);
      assert.is(cut, expected === 0, expected ? 'the client is still connected' : 'the client is cut off');
    } finally {
      device.destroy();
      server.close();
      await new Promise<void>((r) => broker.close(() => r()));
    }
  }
});

test.run();
