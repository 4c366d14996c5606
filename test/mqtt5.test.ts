// MQTT 5 at the box's broker, as third-party clients use it: Debian's mosquitto_sub/_pub with
// -V mqttv5 beside -V mqttv311, mqtt.js as a v5 client, raw packets for what clients will not
// send. The same sign-in and access rules as 3.1.1, with v5's reason codes, properties,
// session and message expiry, topic aliases and server-sent DISCONNECT.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { connectPacket, subackOf } from './helpers/mqtt.ts';
import { PACKET_OVERHEAD_BYTES } from '../services/mqtt/packet-limit.ts';
import { encodePacket } from '../services/mqtt/packet-encoding.ts';

const run = promisify(execFile);
let box: TestBox;
let admin: string;
let port: number;
let tlsPort: number;
let dataDir: string;
const secrets: Record<string, string> = {};
const clients: MqttClient[] = [];

const v5 = async (username: string, password: string, options: IClientOptions = {}) => {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    username,
    password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...options,
  });
  clients.push(client);
  return client;
};
/** A v5 client not connected yet: listeners go on before its CONNACK and first messages. */
const v5Later = (username: string, password: string, options: IClientOptions = {}) => {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    username,
    password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    manualConnect: true,
    ...options,
  });
  clients.push(client);
  return client;
};
type Received = { topic: string; payload: string; properties?: Record<string, any> };
const received = (client: MqttClient) => {
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), properties: packet.properties }),
  );
  return got;
};
/** The reason code of each filter in the SUBACK, subscribing at QoS 1. */
const suback = (client: MqttClient, topics: string[]) => subackOf(client, topics, 1);
const mosquitto = (tool: 'mosquitto_sub' | 'mosquitto_pub', args: string[]) =>
  run(tool, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 15_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startBox() {
  // A long drain timeout: a publisher held up by a slow reader would wait that long.
  box = await testBox({
    dataDir,
    mqtt: {
      host: '127.0.0.1',
      port,
      tlsPort,
      drainTimeoutMs: 60_000,
      maxClientBufferBytes: 48 * 1024 * 1024,
      sessionExpiryLimitSeconds: 600,
    },
  });
}

test.before(async () => {
  [port, tlsPort] = [await freePort(), await freePort()];
  dataDir = await import('./helpers/box.ts').then((m) => m.tempDir());
  await startBox();
  admin = await withAdmin(box);
  for (const id of ['sensor-1', 'sensor-2']) {
    const add = await box.request('POST', '/api/v1/devices', { auth: admin, body: { id, name: id } });
    assert.is(add.status, 201, add.text);
    secrets[id] = add.json.secret;
  }
});
test.after(async () => {
  for (const c of clients) c.end(true);
  await box.stop();
});

test("the broker's own encoding of PUBLISH and its acknowledgements (one write each) is what mqtt-packet makes, or parses back the same; packets with properties are left to mqtt-packet", () => {
  const parsedBack = (buf: Buffer, protocolVersion: 3 | 4 | 5) => {
    const parser = mqttPacket.parser({ protocolVersion });
    const got: mqttPacket.Packet[] = [];
    parser.on('packet', (p) => got.push(p));
    parser.on('error', (e) => assert.unreachable(e.message));
    parser.parse(buf);
    assert.is(got.length, 1);
    return got[0]! as mqttPacket.Packet & Record<string, unknown>;
  };
  const publishes: mqttPacket.IPublishPacket[] = [];
  for (const qos of [0, 1, 2] as const)
    for (const [topic, payload] of [
      ['fogedge/devices/d1/data', Buffer.from('21.5')],
      ['dom/kök/ÿ', Buffer.alloc(0)],
      ['a', Buffer.alloc(200_000, 7)], // a remaining length of three bytes
    ] as const)
      publishes.push({
        cmd: 'publish',
        topic,
        payload,
        qos,
        retain: qos === 1,
        dup: qos === 2,
        ...(qos ? { messageId: 65_535 - qos } : {}),
      });
  publishes.push({ cmd: 'publish', topic: 't', payload: 'text', qos: 0, retain: false, dup: false });
  const withProperties = (properties: mqttPacket.IPublishPacket['properties']): mqttPacket.IPublishPacket => ({
    cmd: 'publish',
    topic: 't',
    payload: Buffer.from('x'),
    qos: 0,
    retain: false,
    dup: false,
    properties,
  });
  // A forwarded MQTT 5 packet whose topic alias was resolved keeps the key, undefined.
  publishes.push(withProperties({ topicAlias: undefined }));
  for (const version of [3, 4, 5] as const) {
    for (const p of publishes) {
      const ours = encodePacket(p, version);
      assert.ok(ours, `${p.topic} QoS ${p.qos} v${version} is encoded`);
      assert.equal(ours, mqttPacket.generate(p, { protocolVersion: version }), `${p.topic} QoS ${p.qos} v${version}`);
    }
    for (const cmd of ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const) {
      const ack = { cmd, messageId: 4242 } as mqttPacket.Packet;
      const back = parsedBack(encodePacket(ack, version)!, version);
      assert.is(back.cmd, cmd);
      assert.is(back.messageId, 4242);
      if (version === 5) assert.is(back.reasonCode ?? 0, 0, 'a v5 acknowledgement without reason code is a success');
      else assert.equal(encodePacket(ack, version), mqttPacket.generate(ack, { protocolVersion: version }));
    }
  }
  // What only mqtt-packet writes: properties, a refusal's reason code, other packets, bad fields.
  const leftToMqttPacket: mqttPacket.Packet[] = [
    withProperties({ contentType: 'text/plain' }),
    { cmd: 'puback', messageId: 1, reasonCode: 0x87 },
    { cmd: 'puback', messageId: 1, properties: { reasonString: 'no' } },
    { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, retain: false, dup: false }, // no message id
    { cmd: 'pingresp' },
  ];
  for (const p of leftToMqttPacket) assert.is(encodePacket(p, 5), undefined, JSON.stringify(p));
});

test('mosquitto_pub -V mqttv5 with user properties reaches a mosquitto_sub -V mqttv5 and a -V mqttv311 subscriber; a wrong secret is refused with a v5 reason', async () => {
  const topic = 'fogedge/devices/sensor-1/temperature';
  const subscribers = ['mqttv5', 'mqttv311'].map((version) =>
    spawn('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-V',
      version,
      '-u',
      'admin',
      '-P',
      admin,
      '-t',
      topic,
      '-C',
      '1',
      '-F',
      version === 'mqttv5' ? '%t %p %P' : '%t %p',
      '-W',
      '10',
    ]),
  );
  const outputs = subscribers.map((p) => {
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    // 'close', not 'exit': at 'exit' the pipe may still hold the message it printed.
    return new Promise<string>((r) => p.once('close', () => r(out.trim())));
  });
  // Published until both have it: a subscriber that is not subscribed yet misses a non-retained message.
  let done = false;
  void Promise.all(outputs).then(() => (done = true));
  for (let i = 0; i < 40 && !done; i++) {
    const pub = await mosquitto('mosquitto_pub', [
      '-V',
      'mqttv5',
      '-u',
      'sensor-1',
      '-P',
      secrets['sensor-1']!,
      '-t',
      topic,
      '-m',
      '21.5',
      '-q',
      '1',
      '-D',
      'publish',
      'user-property',
      'unit',
      'celsius',
    ]);
    assert.is(pub.code, 0, pub.out);
    await sleep(250);
  }
  const [five, three] = await Promise.all(outputs);
  assert.is(five, `${topic} 21.5 unit:celsius`, 'the v5 subscriber gets the user property');
  assert.is(three, `${topic} 21.5`, 'the 3.1.1 subscriber gets the message without properties');

  // MQTT 3.1 (protocol level 3) too, with the same sign-in.
  const old = await mosquitto('mosquitto_sub', [
    '-V',
    'mqttv31',
    '-u',
    'admin',
    '-P',
    admin,
    '-t',
    'fogedge/status',
    '-C',
    '1',
    '-W',
    '10',
  ]);
  assert.is(old.out.trim(), 'online', old.out);

  const refused = await mosquitto('mosquitto_sub', [
    '-V',
    'mqttv5',
    '-u',
    'sensor-1',
    '-P',
    'wrong-secret-000000',
    '-t',
    'x',
    '-C',
    '1',
  ]);
  assert.ok(refused.code !== 0);
  assert.match(refused.out, /not authori[sz]ed/i);
});

test('v5 reason codes: a forbidden filter gets SUBACK 0x87 (and nothing of it arrives), a forbidden QoS 1 publish PUBACK 0x87 and goes nowhere', async () => {
  const app = await v5('admin', admin);
  const seen = received(app);
  await app.subscribeAsync('fogedge/devices/#', { qos: 1 });
  const device = await v5('sensor-1', secrets['sensor-1']!);
  const got = received(device);
  assert.equal(
    await suback(device, ['fogedge/devices/sensor-1/cmd/#', 'fogedge/devices/sensor-2/#', 'fogedge/events/#']),
    [1, 0x87, 0x87],
  );
  const acks: number[] = [];
  device.on(
    'packetreceive',
    (p: { cmd: string; reasonCode?: number }) => p.cmd === 'puback' && acks.push(p.reasonCode ?? 0),
  );
  await device.publishAsync('fogedge/devices/sensor-2/cmd/unlock', 'now', { qos: 1 }).catch(() => undefined);
  await device.publishAsync('fogedge/devices/sensor-1/ok', 'yes', { qos: 1 });
  assert.equal(acks, [0x87, 0], 'refused, then accepted: the v5 connection stays up');
  const other = await v5('sensor-2', secrets['sensor-2']!);
  await other.publishAsync('fogedge/devices/sensor-2/secret', 'private', { qos: 1 });
  await waitUntil('the allowed message', () => seen.some((m) => m.topic === 'fogedge/devices/sensor-1/ok'), 5000);
  assert.not.ok(
    seen.some((m) => m.topic === 'fogedge/devices/sensor-2/cmd/unlock'),
    'the refused publish went nowhere',
  );
  assert.not.ok(
    got.some((m) => m.topic.startsWith('fogedge/devices/sensor-2/')),
    'the refused filter delivers nothing',
  );
  device.end(true);
  other.end(true);
  app.end(true);
});

test('request/response: Response Topic, Correlation Data, Content Type and user properties reach the responder as sent', async () => {
  const app = await v5('admin', admin);
  const seen = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#', { qos: 1 });
  const device = await v5('sensor-1', secrets['sensor-1']!);
  const correlation = Buffer.from([0, 1, 2, 250, 255]);
  await device.publishAsync('fogedge/devices/sensor-1/request', '{"q":1}', {
    qos: 1,
    properties: {
      responseTopic: 'fogedge/devices/sensor-1/cmd/answer',
      correlationData: correlation,
      contentType: 'application/json',
      payloadFormatIndicator: true,
      userProperties: { trace: 'abc' },
    },
  });
  await waitUntil('the request', () => seen.some((m) => m.topic === 'fogedge/devices/sensor-1/request'), 5000);
  const p = seen.find((m) => m.topic === 'fogedge/devices/sensor-1/request')!.properties!;
  assert.is(p['responseTopic'], 'fogedge/devices/sensor-1/cmd/answer');
  assert.ok(Buffer.from(p['correlationData']).equals(correlation), 'correlation data byte for byte');
  assert.is(p['contentType'], 'application/json');
  assert.is(p['userProperties']?.trace, 'abc');
  device.end(true);
  app.end(true);
});

test('topic aliases: a v5 publisher may send a topic once and then its alias; an alias cannot carry a publish past the access rules', async () => {
  const app = await v5('admin', admin);
  const seen = received(app);
  await app.subscribeAsync('fogedge/devices/#', { qos: 1 });
  const device = await v5('sensor-1', secrets['sensor-1']!);
  assert.ok((device as unknown as { topicAliasSend?: unknown }) !== undefined);
  await device.publishAsync('fogedge/devices/sensor-1/level', 'one', { qos: 1, properties: { topicAlias: 1 } });
  await device.publishAsync('', 'two', { qos: 1, properties: { topicAlias: 1 } });
  const acks: number[] = [];
  device.on(
    'packetreceive',
    (p: { cmd: string; reasonCode?: number }) => p.cmd === 'puback' && acks.push(p.reasonCode ?? 0),
  );
  await device
    .publishAsync('fogedge/devices/sensor-2/level', 'forged', { qos: 1, properties: { topicAlias: 2 } })
    .catch(() => undefined);
  await device.publishAsync('', 'forged-again', { qos: 1, properties: { topicAlias: 2 } }).catch(() => undefined);
  await waitUntil(
    'both by alias',
    () => seen.filter((m) => m.topic === 'fogedge/devices/sensor-1/level').length === 2,
    5000,
  );
  assert.equal(
    seen.filter((m) => m.topic === 'fogedge/devices/sensor-1/level').map((m) => m.payload),
    ['one', 'two'],
  );
  await sleep(200);
  assert.not.ok(
    seen.some((m) => m.topic.startsWith('fogedge/devices/sensor-2/')),
    'nothing forged arrived',
  );
  assert.ok(
    acks.length === 0 || acks.every((code) => code === 0x87) || device.disconnected,
    'each forged publish refused',
  );
  device.end(true);
  app.end(true);
});

test('message expiry: a queued message whose interval passed is not delivered; one within it arrives with what is left of its interval', async () => {
  const app = await v5('admin', admin, {
    clientId: 'phone-expiry',
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  await app.subscribeAsync('fogedge/devices/sensor-1/#', { qos: 1 });
  await app.endAsync();
  const device = await v5('sensor-1', secrets['sensor-1']!);
  await device.publishAsync('fogedge/devices/sensor-1/short', 'gone', {
    qos: 1,
    properties: { messageExpiryInterval: 1 },
  });
  await device.publishAsync('fogedge/devices/sensor-1/long', 'kept', {
    qos: 1,
    properties: { messageExpiryInterval: 100 },
  });
  device.end(true);
  await sleep(2200);
  const back = v5Later('admin', admin, {
    clientId: 'phone-expiry',
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  const got = received(back);
  back.connect();
  await waitUntil('the kept message', () => got.some((m) => m.topic === 'fogedge/devices/sensor-1/long'), 5000);
  await sleep(300);
  assert.not.ok(
    got.some((m) => m.topic === 'fogedge/devices/sensor-1/short'),
    'the expired message was not delivered',
  );
  const left = got.find((m) => m.topic === 'fogedge/devices/sensor-1/long')!.properties?.['messageExpiryInterval'];
  assert.ok(left <= 98 && left > 0, `what is left of the interval is sent on (${left})`);
  back.end(true);
});

test('session expiry: a session is kept for its interval and gone after it, also when the box restarts in between', async () => {
  // Kept: back within the interval, the session is present and its queued message arrives.
  const connectPhone = async (clientId: string, interval: number) => {
    const phone = v5Later('admin', admin, { clientId, clean: false, properties: { sessionExpiryInterval: interval } });
    const got = received(phone);
    const connack = new Promise<{ sessionPresent: boolean }>((r) => phone.once('connect', (p) => r(p as never)));
    phone.connect();
    return { phone, got, sessionPresent: (await connack).sessionPresent };
  };
  const first = await connectPhone('phone-kept', 60);
  await first.phone.subscribeAsync('fogedge/devices/sensor-2/#', { qos: 1 });
  const second = await connectPhone('phone-short', 2);
  await second.phone.subscribeAsync('fogedge/devices/sensor-2/#', { qos: 1 });
  await first.phone.endAsync();
  await second.phone.endAsync();
  const device = await v5('sensor-2', secrets['sensor-2']!);
  await device.publishAsync('fogedge/devices/sensor-2/door', 'open', { qos: 1 });
  device.end(true);

  // The box restarts while both sessions are away; phone-short's 2 s pass meanwhile.
  await box.stop({ keepData: true });
  await startBox();
  await sleep(2500);
  const kept = await connectPhone('phone-kept', 60);
  assert.ok(kept.sessionPresent, 'within its interval: the session is there');
  await waitUntil('the queued message', () => kept.got.some((m) => m.topic === 'fogedge/devices/sensor-2/door'), 5000);
  const expired = await connectPhone('phone-short', 2);
  assert.not.ok(expired.sessionPresent, 'past its interval: no session, though the box restarted in between');
  await sleep(300);
  assert.equal(expired.got, [], 'and nothing of it is delivered');
  kept.phone.end(true);
  expired.phone.end(true);
});

test('server-sent DISCONNECT: a revoked token ends the v5 connection with reason 0x98 (administrative action) and says why', async () => {
  const made = await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'home-assistant-v5' } });
  assert.is(made.status, 201, made.text);
  const ha = await v5('admin', made.json.token);
  const disconnect = new Promise<{ reasonCode: number; properties?: { reasonString?: string } }>((r) =>
    ha.once('disconnect', (p) => r(p as never)),
  );
  assert.is((await box.request('DELETE', `/api/v1/tokens/${made.json.info.id}`, { auth: admin })).status, 200);
  const packet = await Promise.race([disconnect, sleep(3000).then(() => undefined)]);
  assert.ok(packet, 'a DISCONNECT came within 3 s');
  assert.is(packet!.reasonCode, 0x98);
  assert.is(packet!.properties?.reasonString, 'token revoked');
});

test('CONNACK: a v5 client is told what the broker offers; an unknown protocol level gets 0x01 [MQTT-3.1.2-2]', async () => {
  const client = v5Later('sensor-1', secrets['sensor-1']!);
  const connack = new Promise<{ properties?: Record<string, unknown> }>((r) =>
    client.once('connect', (p) => r(p as never)),
  );
  client.connect();
  const p = (await connack).properties ?? {};
  assert.is(p['topicAliasMaximum'], 64);
  assert.is(p['maximumPacketSize'], 1024 * 1024 + PACKET_OVERHEAD_BYTES, 'mqtt.maxPayloadBytes and room for a topic');
  client.end(true);

  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  const answer = new Promise<Buffer>((r) => socket.once('data', r));
  const connect = connectPacket('level-6', { keepalive: 30 });
  connect[8] = 6; // the protocol level byte: 6 is no MQTT version
  socket.write(connect);
  const bytes = [...(await Promise.race([answer, sleep(3000).then(() => Buffer.alloc(0))]))];
  socket.destroy();
  assert.equal(bytes, [0x20, 0x02, 0x00, 0x01]);
});

test("MQTT 5 over TLS and over the gateway's WebSocket, with the same sign-in and rules", async () => {
  const tls = await run(
    'mosquitto_sub',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(tlsPort),
      '--cafile',
      `${box.dataDir}/tls/mqtt.crt`,
      '-V',
      'mqttv5',
      '-u',
      'admin',
      '-P',
      admin,
      '-t',
      'fogedge/status',
      '-C',
      '1',
      '-W',
      '10',
    ],
    { timeout: 15_000 },
  );
  assert.is(tls.stdout.trim(), 'online');
  const httpPort = box.broker.getLocalService('api')!.settings['port'];
  const web = await mqtt.connectAsync(`ws://127.0.0.1:${httpPort}/mqtt`, {
    protocolVersion: 5,
    username: 'sensor-1',
    password: secrets['sensor-1'],
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  clients.push(web);
  assert.equal(await suback(web, ['fogedge/status', 'fogedge/devices/sensor-2/#']), [1, 0x87]);
  const got = received(web);
  await waitUntil(
    'the retained status over WebSocket',
    () => got.some((m) => m.topic === 'fogedge/status' && m.payload === 'online'),
    5000,
  );
  web.end(true);
});

test("shared subscriptions: a group's members take the messages in turn, each once; a persistent member away loses the group nothing and is a member again when back; the rules hold; bad share names are refused", async () => {
  const members = await Promise.all(['worker-a', 'worker-b'].map((clientId) => v5('admin', admin, { clientId })));
  const got = members.map((m) => received(m));
  for (const m of members) assert.equal(await suback(m, ['$share/workers/fogedge/devices/sensor-1/jobs/#']), [1]);
  const plain = await v5('admin', admin);
  const plainGot = received(plain);
  await plain.subscribeAsync('fogedge/devices/sensor-1/jobs/#', { qos: 1 });
  const device = await v5('sensor-1', secrets['sensor-1']!);
  for (let i = 0; i < 10; i++) await device.publishAsync(`fogedge/devices/sensor-1/jobs/${i}`, String(i), { qos: 1 });
  await waitUntil(
    'all ten to the group and to the plain subscriber',
    () => got[0]!.length + got[1]!.length === 10 && plainGot.length === 10,
    5000,
  );
  assert.equal(
    [...got[0]!, ...got[1]!].map((m) => Number(m.payload)).sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    'each message to one member, once',
  );
  assert.ok(
    got[0]!.length > 0 && got[1]!.length > 0,
    `both members took some (${got[0]!.length} and ${got[1]!.length})`,
  );

  // A device may not share its way into what it may not read; malformed share names are refused.
  const other = await v5('sensor-2', secrets['sensor-2']!);
  // (mqtt.js itself will not send a wildcard inside a share name.)
  assert.equal(
    await suback(other, ['$share/g/fogedge/devices/sensor-1/#', '$share//x', '$share/onlygroup']),
    [0x87, 0x8f, 0x8f],
  );

  // A member with a persistent session that is away: the group's messages go to the members that
  // are there, none lost; back, its stored share makes it a member again.
  const away = await v5('admin', admin, {
    clientId: 'worker-c',
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  await away.subscribeAsync('$share/night/fogedge/devices/sensor-1/batch', { qos: 1 });
  await away.endAsync();
  const stays = await v5('admin', admin, { clientId: 'worker-d' });
  const staysGot = received(stays);
  await stays.subscribeAsync('$share/night/fogedge/devices/sensor-1/batch', { qos: 1 });
  for (let i = 0; i < 4; i++) await device.publishAsync('fogedge/devices/sensor-1/batch', `b${i}`, { qos: 1 });
  await waitUntil('the four to the member that is there', () => staysGot.length === 4, 5000);
  const back = v5Later('admin', admin, {
    clientId: 'worker-c',
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  const backGot = received(back);
  back.connect();
  await new Promise((r) => back.once('connect', r));
  for (let i = 4; i < 10; i++) await device.publishAsync('fogedge/devices/sensor-1/batch', `b${i}`, { qos: 1 });
  await waitUntil('the six across the two', () => staysGot.length + backGot.length === 10, 5000);
  assert.ok(backGot.length > 0, 'back, the member takes its turn again (its share came with its session)');
  assert.equal([...staysGot, ...backGot].map((m) => m.payload).sort(), [
    'b0',
    'b1',
    'b2',
    'b3',
    'b4',
    'b5',
    'b6',
    'b7',
    'b8',
    'b9',
  ]);
  for (const c of [...members, plain, device, other, stays, back]) c.end(true);
});

test('a subscriber that stops reading holds up nobody: the QoS 1 publisher gets every PUBACK, others every message, and the slow reader, reading again, gets them all', async () => {
  // A raw 3.1.1 socket that subscribes and then stops reading: the broker's writes to it back up.
  const slow = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => slow.once('connect', () => r()));
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const slowGot: string[] = [];
  parser.on('packet', (p: { cmd: string; topic?: string }) => slowGot.push(p.cmd === 'publish' ? p.topic! : p.cmd));
  slow.on('data', (d) => parser.parse(d));
  slow.write(connectPacket('slow-reader-5', { username: 'admin', password: admin }));
  slow.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: 'fogedge/devices/sensor-1/bulk', qos: 0 }],
    } as never),
  );
  await waitUntil('CONNACK and SUBACK', () => slowGot.length >= 2, 5000);
  slow.pause();
  const app = await v5('admin', admin);
  let appGot = 0;
  app.on('message', () => appGot++);
  await app.subscribeAsync('fogedge/devices/sensor-1/bulk', { qos: 1 });
  const device = await v5('sensor-1', secrets['sensor-1']!);
  // 24 MiB: more than loopback's socket buffers take, so the slow reader's writes back up.
  const chunk = Buffer.alloc(256 * 1024, 7);
  const count = 96;
  let acked = 0;
  const published = (async () => {
    for (let i = 0; i < count; i++)
      await device.publishAsync('fogedge/devices/sensor-1/bulk', chunk, { qos: 1 }).then(() => acked++);
  })();
  published.catch(() => undefined); // awaited below; a failure here is the test's, not a crash
  // Held up by the slow reader, the publisher would wait mqtt.drainTimeoutMs (60 s) for it.
  await waitUntil('every PUBACK', () => acked === count, 20_000);
  await published;
  await waitUntil('every message at the reading subscriber', () => appGot === count, 20_000);
  slow.resume();
  await waitUntil(
    'the slow reader, reading again, gets every message',
    () => slowGot.filter((t) => t === 'fogedge/devices/sensor-1/bulk').length === count,
    20_000,
  );
  slow.destroy();
  device.end(true);
  app.end(true);
});

test.run();
