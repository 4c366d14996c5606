// The box's MQTT broker with real clients: mqtt.js over TCP and WebSocket, Debian's
// mosquitto_sub / mosquitto_pub over TCP and TLS.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { connectOutcome, connectPacket, subackOf } from './helpers/mqtt.ts';
import { withinHours } from '../lib/hours.ts';
import { coalesceWrites } from '../services/mqtt/coalesce-writes.ts';
import { mayRead, mayReceive, type Identity } from '../services/mqtt/access-rules.ts';
import { ROLES } from '../lib/permissions.ts';
import { accountsService } from '../services/accounts/accounts.service.ts';

const run = promisify(execFile);
let box: TestBox;
let admin: string;
let port: number;
let tlsPort: number;
let secret = '';
/** Connections not yet signed in that the test broker holds (the denied-device test sends 100 at once). */
const PENDING_CAP = 150;
const clients: MqttClient[] = [];

const connect = async (username: string, password: string, url = `mqtt://127.0.0.1:${port}`) => {
  // A generous bound: on a loaded 2-core machine a CONNACK can take seconds; a refusal is what the tests look at.
  const client = await mqtt.connectAsync(url, { username, password, reconnectPeriod: 0, connectTimeout: 30_000 });
  clients.push(client);
  return client;
};
/** The QoS granted for each filter (128: refused). */
const subscribe = (client: MqttClient, topics: string[]) => subackOf(client, topics);
const refusal = (username: string, password: string) =>
  connectOutcome(`mqtt://127.0.0.1:${port}`, { username, password });
const received = (client: MqttClient) => {
  const got: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
};
/** mosquitto_sub, as a user runs it; resolves with its exit code and output. */
const mosquittoSub = (args: string[]) =>
  run('mosquitto_sub', ['-h', '127.0.0.1', ...args], { timeout: 15_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );

test.before(async () => {
  [port, tlsPort] = [await freePort(), await freePort()];
  box = await testBox({
    mqtt: {
      host: '127.0.0.1',
      port,
      tlsPort,
      maxPayloadBytes: 1024 * 1024,
      drainTimeoutMs: 3000,
      maxPendingConnections: PENDING_CAP,
    },
  });
  admin = await withAdmin(box);
  const add = await box.request('POST', '/api/v1/devices', {
    auth: admin,
    body: { id: 'sensor-1', name: 'Hall sensor' },
  });
  assert.is(add.status, 201, add.text);
  secret = add.json.secret;
  assert.is(
    (await box.request('POST', '/api/v1/devices', { auth: admin, body: { id: 'sensor-2', name: 'Porch sensor' } }))
      .status,
    201,
  );
});
test.after(async () => {
  for (const c of clients) c.end(true);
  await box.stop();
});

test('a device publishes under its own prefix; an app user signed in with a token reads it', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/#');
  const device = await connect('sensor-1', secret);
  await device.publishAsync('fogedge/devices/sensor-1/temperature', '21.5', { qos: 1 });
  await waitUntil(
    'the reading',
    () => got.some((m) => m.topic === 'fogedge/devices/sensor-1/temperature' && m.payload === '21.5'),
    5000,
  );
});

test('a QoS 1 message and a QoS 0 one right after it: subscribers get both (aedes let the second overtake and drop the first)', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#', { qos: 1 });
  const device = await connect('sensor-1', secret);
  // The QoS 1 message is routed once stored, the QoS 0 one at once: the second reaches the
  // subscriber first. Each pair goes out in one write.
  for (let i = 0; i < 20; i++) {
    device.publish('fogedge/devices/sensor-1/door', `open ${i}`, { qos: 1 });
    device.publish('fogedge/devices/sensor-1/motion', `seen ${i}`, { qos: 0 });
    await new Promise((r) => setTimeout(r, 10));
  }
  const doors = () => got.filter((m) => m.topic.endsWith('/door')).map((m) => m.payload);
  await waitUntil('all 40 messages', () => got.length >= 40, 10_000).catch(() =>
    assert.unreachable(`${got.length} of 40 arrived; the QoS 1 ones: ${doors().length}`),
  );
  assert.equal(
    doors(),
    Array.from({ length: 20 }, (_, i) => `open ${i}`),
    'every QoS 1 message, in order',
  );
});

test('a device that sends its backlog right after CONNECT, not waiting for the CONNACK [MQTT-3.1.4], has all of it delivered', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/backlog');
  const device = net.connect(port, '127.0.0.1');
  const hello = connectPacket('sensor-1', { username: 'sensor-1', password: secret, keepalive: 60 });
  const backlog = Array.from({ length: 100 }, (_, i) =>
    mqttPacket.generate({
      cmd: 'publish',
      topic: 'fogedge/devices/sensor-1/backlog',
      payload: Buffer.from(`reading ${i}`),
      qos: 0,
      retain: false,
      dup: false,
    }),
  );
  device.write(Buffer.concat([hello, ...backlog])); // aedes cut off such a client past 42 packets
  await waitUntil('the whole backlog', () => got.length >= 100, 10_000).catch(() =>
    assert.unreachable(`${got.length} of 100 arrived`),
  );
  assert.equal(
    got.map((m) => m.payload),
    Array.from({ length: 100 }, (_, i) => `reading ${i}`),
  );
  device.destroy();
});

test('a device cannot spoof another device or read its commands', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/#');
  const device = await connect('sensor-1', secret);
  assert.equal(
    await subscribe(device, ['fogedge/devices/sensor-2/cmd/#', 'fogedge/devices/sensor-1/cmd/#']),
    [128, 0],
    'its own command topic only',
  );
  const closed = new Promise<void>((r) => device.once('close', () => r()));
  device.publish('fogedge/devices/sensor-2/temperature', '99', { qos: 1 });
  await closed; // the broker cuts off a client that publishes where it may not
  await new Promise((r) => setTimeout(r, 300));
  assert.not.ok(got.some((m) => m.topic === 'fogedge/devices/sensor-2/temperature'));
});

test('wrong secret, unknown device, a user with someone else\'s token: "not authorized"', async () => {
  assert.match(await refusal('sensor-1', 'wrong-secret-000000'), /^5: /);
  assert.match(await refusal('ghost', 'whatever-secret-0000'), /^5: /);
  assert.match(await refusal('someone', admin), /^5: /);
  const sub = await mosquittoSub(['-p', String(port), '-u', 'sensor-1', '-P', 'wrong', '-t', 'x', '-C', '1']);
  assert.ok(sub.code !== 0);
  assert.match(sub.out, /not authori[sz]ed/i);
});

test('pairing: an unknown device lands as pending, the installer allows it, then denies it and it is cut off', async () => {
  assert.is((await box.request('POST', '/api/v1/devices/pairing', { auth: admin, body: { seconds: 60 } })).status, 200);
  assert.match(await refusal('door-lock', 'door-lock-secret-1'), /^5: /, 'pending devices may not connect yet');
  const pending = (await box.request('GET', '/api/v1/devices?state=pending', { auth: admin })).json.devices;
  assert.equal(
    pending.map((d: { id: string }) => d.id),
    ['door-lock'],
  );
  assert.is(
    (await box.request('PATCH', '/api/v1/devices/door-lock', { auth: admin, body: { state: 'allowed' } })).status,
    200,
  );
  const lock = await connect('door-lock', 'door-lock-secret-1');
  const closed = new Promise<void>((r) => lock.once('close', () => r()));
  assert.is(
    (await box.request('PATCH', '/api/v1/devices/door-lock', { auth: admin, body: { state: 'denied' } })).status,
    200,
  );
  await closed;
  assert.match(await refusal('door-lock', 'door-lock-secret-1'), /^5: /);
});

test("TLS with the self-signed certificate made at first start: mosquitto_sub reads the box's retained status", async () => {
  const cafile = path.join(box.dataDir, 'tls', 'mqtt.crt');
  // Host name checked (no --insecure): the certificate names the box's addresses and names.
  for (const host of ['127.0.0.1', 'localhost']) {
    const sub = await mosquittoSub([
      '-p',
      String(tlsPort),
      '--cafile',
      cafile,
      '-h',
      host,
      '-u',
      'admin',
      '-P',
      admin,
      '-t',
      'fogedge/status',
      '-C',
      '1',
    ]);
    assert.is(sub.code, 0, `${host}: ${sub.out}`);
    assert.is(sub.out.trim(), 'online');
  }
  const cert = new X509Certificate(await readFile(cafile));
  assert.match(cert.subjectAltName ?? '', /DNS:fogedge\.local/);
  assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  const years = (Date.parse(cert.validTo) - Date.now()) / (365 * 86_400_000);
  assert.ok(years > 9.9, `valid ${years.toFixed(1)} years`);
  // And mosquitto_pub from a device over plain TCP.
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#');
  await run('mosquitto_pub', [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-u',
    'sensor-1',
    '-P',
    secret,
    '-t',
    'fogedge/devices/sensor-1/door',
    '-m',
    'open',
    '-q',
    '1',
  ]);
  await waitUntil('the door reading', () => got.some((m) => m.payload === 'open'), 5000);
});

test("MQTT over WebSocket at the gateway's /mqtt: the web app gets the detector's events", async () => {
  const httpPort = box.broker.getLocalService('api')!.settings['port'];
  const web = await connect('admin', admin, `ws://127.0.0.1:${httpPort}/mqtt`);
  const got = received(web);
  await web.subscribeAsync('fogedge/events/#');
  await box.broker.call('events.record', {
    type: 'start',
    id: 'gate-1',
    camera: 'gate',
    label: 'person',
    topScore: 0.9,
    box: [0, 0, 1, 1],
    zones: [],
    start: new Date().toISOString(),
    end: null,
    stationary: false,
  });
  const msg = await waitUntil(
    'the event over MQTT',
    () => got.find((m) => m.topic === 'fogedge/events/gate/new'),
    5000,
  );
  assert.is(JSON.parse(msg.payload).label, 'person');
  // A family member reads events too; an installer may not subscribe to them.
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'fitter', password: 'installer-pass-1', role: 'installer' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'fitter', password: 'installer-pass-1' },
  });
  const installer = await connect('fitter', box.sessionOf(login.headers)!);
  assert.equal(await subscribe(installer, ['fogedge/events/#', 'fogedge/cameras/+/status']), [128, 0]);
});

test('switches: .../detection/set OFF from an admin turns detection off; the retained .../state follows; a family member may not', async () => {
  const add = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'porch', name: 'Porch', enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' } },
  });
  assert.is(add.status, 201, add.text);
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/cameras/porch/+/state');
  const state = (name: string) => got.filter((m) => m.topic === `fogedge/cameras/porch/${name}/state`).at(-1)?.payload;
  await waitUntil('the retained states', () => state('detection') === 'ON' && state('recording') === 'ON', 5000);
  await app.publishAsync('fogedge/cameras/porch/detection/set', 'OFF', { qos: 1 });
  await waitUntil('detection OFF', () => state('detection') === 'OFF', 5000);
  assert.is((await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.detection.enabled, false);
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'kid', password: 'family-pass-123', role: 'family' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'kid', password: 'family-pass-123' },
  });
  // A family member's client (Home Assistant, 3.1.1) clicking the switch: acknowledged, dropped,
  // and still connected (its other entities keep working).
  const kid = await connect('kid', box.sessionOf(login.headers)!);
  let kidClosed = false;
  kid.once('close', () => (kidClosed = true));
  await kid.publishAsync('fogedge/cameras/porch/detection/set', 'ON', { qos: 1 });
  kid.publish('fogedge/cameras/porch/detection/set', 'ON', { qos: 0 });
  await kid.subscribeAsync('fogedge/cameras/porch/detection/state');
  assert.not.ok(kidClosed, "the family member's connection stays up");
  assert.is((await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.detection.enabled, false);
  // A new subscriber gets the retained state at once.
  const late = await connect('admin', admin);
  const lateGot = received(late);
  await late.subscribeAsync('fogedge/cameras/porch/detection/state');
  await waitUntil('the retained OFF', () => lateGot.some((m) => m.payload === 'OFF'), 5000);
  // The camera removed: its retained states are cleared, a new subscriber gets none.
  assert.is((await box.request('DELETE', '/api/v1/cameras/porch', { auth: admin })).status, 200);
  await new Promise((r) => setTimeout(r, 300));
  const after = await connect('admin', admin);
  const afterGot = received(after);
  await after.subscribeAsync('fogedge/cameras/porch/+/state');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(
    afterGot.filter((m) => m.payload !== ''),
    [],
  );
});

test('garbage, a truncated CONNECT, a PUBLISH before CONNECT, an oversized payload: those connections go, everyone else is served', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#');
  const raw = async (bytes: Buffer, end: boolean) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(bytes);
    if (end) socket.end();
    return new Promise<void>((r) => socket.once('close', () => r()));
  };
  // Not MQTT at all: the broker drops the connection.
  await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), false);
  // A CONNECT cut off in the middle, then the peer goes.
  await raw(Buffer.from([0x10, 0x30, 0x00, 0x04, 0x4d, 0x51]), true);
  // A PUBLISH before any CONNECT.
  await raw(Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]), false);
  // A payload over mqtt.maxPayloadBytes: that client is disconnected.
  const big = await connect('sensor-1', secret);
  const closed = new Promise<void>((r) => big.once('close', () => r()));
  big.publish('fogedge/devices/sensor-1/blob', Buffer.alloc(2 * 1024 * 1024), { qos: 1 });
  await closed;
  const device = await connect('sensor-1', secret);
  await device.publishAsync('fogedge/devices/sensor-1/still', 'here', { qos: 1 });
  await waitUntil('the broker still serves', () => got.some((m) => m.payload === 'here'), 5000);
});

test('a packet announcing 200 MB is cut off at its header: the broker never reads (or buffers) its body', async () => {
  const str = (v: string) => {
    const b = Buffer.from(v);
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  // CONNECT (MQTT 3.1.1, clean session, user name and password) written out by hand.
  const body = Buffer.concat([
    str('MQTT'),
    Buffer.from([0x04, 0xc2, 0x00, 0x3c]),
    str('sensor-raw'),
    str('sensor-1'),
    str(secret),
  ]);
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  const connack = new Promise<Buffer>((r) => socket.once('data', r));
  socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
  assert.equal([...(await connack)], [0x20, 0x02, 0x00, 0x00], 'signed in');
  const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
  // PUBLISH QoS 0 whose remaining length says 200,000,000 bytes (variable byte integer), then 64 KiB of it.
  let n = 200_000_000;
  const length: number[] = [];
  do {
    length.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  const sentAt = Date.now();
  socket.write(
    Buffer.concat([Buffer.from([0x30, ...length]), str('fogedge/devices/sensor-1/blob'), Buffer.alloc(64 * 1024)]),
  );
  const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
  assert.ok(at > 0 && at - sentAt < 5000, 'closed by the broker while the body was still to come');
  const device = await connect('sensor-1', secret);
  await device.publishAsync('fogedge/devices/sensor-1/still', 'here too', { qos: 1 });
  await device.endAsync();
});

test('a secret guessed over and over: that client is held off, the device stays allowed', async () => {
  const fresh = (await box.request('POST', '/api/v1/devices/sensor-2/secret', { auth: admin })).json.secret;
  for (let i = 0; i < 10; i++) assert.match(await refusal('sensor-2', `guess-${i}-xxxxxxxxxx`), /^5: /);
  assert.match(await refusal('sensor-2', fresh), /^5: /, 'held off for a while even with the right secret');
  const list = (await box.request('GET', '/api/v1/devices', { auth: admin })).json.devices;
  assert.is(list.find((d: { id: string }) => d.id === 'sensor-2').state, 'allowed');
  // Everyone else is served meanwhile.
  const other = await connect('sensor-1', secret);
  assert.ok(other.connected);
});

test('client ids: the same device reconnecting takes its connection over; another identity with that id is refused', async () => {
  const url = `mqtt://127.0.0.1:${port}`;
  const first = await mqtt.connectAsync(url, {
    clientId: 'sensor-1',
    username: 'sensor-1',
    password: secret,
    reconnectPeriod: 0,
  });
  clients.push(first);
  const firstClosed = new Promise<void>((r) => first.once('close', () => r()));
  const second = await mqtt.connectAsync(url, {
    clientId: 'sensor-1',
    username: 'sensor-1',
    password: secret,
    reconnectPeriod: 0,
  });
  clients.push(second);
  await firstClosed;
  const borrowed = await connectOutcome(url, { clientId: 'sensor-1', username: 'admin', password: admin });
  assert.match(borrowed, /^2: /, 'identifier rejected');
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(second.connected, 'the device keeps its connection');
});

test('thousands of subscriptions from one client: past mqtt.maxSubscriptionsPerClient they are refused, the client is still served', async () => {
  const app = await connect('admin', admin);
  const got = received(app);
  const filters = Array.from({ length: 2000 }, (_, i) => `fogedge/devices/sensor-1/f${i}`);
  const granted = [...(await subscribe(app, filters.slice(0, 1000))), ...(await subscribe(app, filters.slice(1000)))];
  assert.is(granted.filter((g) => g !== 128).length, 500);
  assert.is(granted.filter((g) => g === 128).length, 1500);
  const device = await connect('sensor-1', secret);
  await device.publishAsync('fogedge/devices/sensor-1/f7', 'seven', { qos: 1 });
  await waitUntil('a message on a granted filter', () => got.some((m) => m.payload === 'seven'), 5000);
  // Unsubscribing frees room.
  await app.unsubscribeAsync(filters.slice(0, 10));
  assert.equal(await subscribe(app, ['fogedge/devices/sensor-1/f1999']), [0]);
});

test('a client that never reads is disconnected after mqtt.drainTimeoutMs; everyone else keeps getting messages', async () => {
  // A raw socket that subscribes and then stops reading, so the broker's writes back up.
  const slow = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => slow.once('connect', () => r()));
  slow.write(connectPacket('slow-reader', { username: 'admin', password: admin }));
  slow.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: 'fogedge/devices/sensor-1/#', qos: 0 }],
    } as never),
  );
  const acks: string[] = [];
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p) => acks.push(p.cmd === 'suback' ? `suback:${String(p.granted)}` : p.cmd));
  slow.on('data', (d) => parser.parse(d));
  await waitUntil('CONNACK and SUBACK', () => acks.length >= 2, 5000);
  assert.equal(acks, ['connack', 'suback:0']);
  slow.removeAllListeners('data');
  slow.pause();
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#');
  const device = await connect('sensor-1', secret);
  const t0 = Date.now();
  const chunk = Buffer.alloc(256 * 1024, 1);
  for (let i = 0; i < 200; i++) await device.publishAsync('fogedge/devices/sensor-1/bulk', chunk, { qos: 1 });
  await device.publishAsync('fogedge/devices/sensor-1/after', 'still here', { qos: 1 });
  await waitUntil('the other subscriber got everything', () => got.some((m) => m.payload === 'still here'), 20_000);
  assert.is(got.filter((m) => m.topic.endsWith('/bulk')).length, 200);
  // Past its drain timeout the broker has hung up: reading now, the slow client finds the end
  // of the stream well before the 50 MB that were published.
  await new Promise((r) => setTimeout(r, Math.max(0, 3500 - (Date.now() - t0))));
  let bytes = 0;
  slow.on('data', (d: Buffer) => (bytes += d.length));
  slow.resume();
  const ended = await Promise.race([
    new Promise<boolean>((r) => slow.once('close', () => r(true))),
    new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
  ]);
  assert.ok(ended, 'the broker disconnected the slow reader');
  assert.ok(bytes < 25 * 1024 * 1024, `it was not sent everything (${bytes} bytes)`);
  slow.destroy();
});

test('Home Assistant discovery, objects in view and snapshots per label: a camera appears, counts follow its events, removing it clears everything', async () => {
  const spec = {
    id: 'yard',
    name: 'Yard',
    enabled: false,
    source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' },
    detection: {
      labels: ['person', 'car'],
      zones: [
        {
          name: 'drive',
          points: [
            [0, 0],
            [1, 0],
            [1, 1],
          ],
        },
      ],
    },
  };
  assert.is((await box.request('POST', '/api/v1/cameras', { auth: admin, body: spec })).status, 201);
  const ha = await connect('admin', admin);
  const got = received(ha);
  const snapshots: Buffer[] = [];
  ha.on('message', (topic, payload) => topic === 'fogedge/cameras/yard/person/snapshot' && snapshots.push(payload));
  await ha.subscribeAsync(['homeassistant/#', 'fogedge/cameras/yard/#']);
  const last = (topic: string) => got.filter((m) => m.topic === topic).at(-1)?.payload;
  const config = (topic: string) => JSON.parse(last(`homeassistant/${topic}/config`) ?? 'null');
  await waitUntil('the discovery configs', () => config('switch/fogedge_yard/recording'), 5000);
  assert.is(config('binary_sensor/fogedge_yard/motion').state_topic, 'fogedge/cameras/yard/motion');
  assert.is(config('binary_sensor/fogedge_yard/occupancy').device_class, 'occupancy');
  assert.is(config('sensor/fogedge_yard/car_count').state_topic, 'fogedge/cameras/yard/car/count');
  assert.is(config('camera/fogedge_yard/person_snapshot').topic, 'fogedge/cameras/yard/person/snapshot');
  assert.is(config('switch/fogedge_yard/detection').command_topic, 'fogedge/cameras/yard/detection/set');
  assert.equal(config('switch/fogedge_yard/detection').device.identifiers, ['fogedge_yard']);
  // Today's discovery keys: default_entity_id with its domain (object_id is gone in HA 2026.4), the origin.
  const motion = config('binary_sensor/fogedge_yard/motion');
  assert.is(motion.default_entity_id, 'binary_sensor.fogedge_yard_motion');
  assert.not.ok('object_id' in motion);
  assert.is(motion.origin.name, 'FogEdge');
  // Available while the box is up and the camera itself online (its status topic's JSON "state").
  assert.is(motion.availability_mode, 'all');
  assert.equal(
    motion.availability.map((a: { topic: string }) => a.topic),
    ['fogedge/status', 'fogedge/cameras/yard/status'],
  );
  assert.match(motion.availability[1].value_template, /value_json\.state == 'online'/);
  await waitUntil('the camera status', () => last('fogedge/cameras/yard/status'), 5000);
  assert.type(JSON.parse(last('fogedge/cameras/yard/status')!).state, 'string');
  assert.equal(
    config('switch/fogedge_yard/detection').availability.map((a: { topic: string }) => a.topic),
    ['fogedge/status'],
    "switches are the box's: there while it is up",
  );
  assert.is(last('fogedge/cameras/yard/person/count'), '0');
  assert.is(last('fogedge/cameras/yard/motion'), 'OFF');

  // A person walks into the drive.
  const jpeg = (
    await run(
      'ffmpeg',
      ['-v', 'error', '-f', 'lavfi', '-i', 'color=red:s=64x48', '-frames:v', '1', '-f', 'mjpeg', '-'],
      { encoding: 'buffer' },
    )
  ).stdout as Buffer;
  const event = {
    id: 'yard-1',
    camera: 'yard',
    label: 'person',
    topScore: 0.8,
    box: [0.2, 0.2, 0.4, 0.9],
    zones: ['drive'],
    start: new Date().toISOString(),
    end: null,
    stationary: false,
  };
  await box.broker.call('events.record', { type: 'start', ...event, snapshot: jpeg.toString('base64') });
  await waitUntil(
    'a person in view',
    () =>
      last('fogedge/cameras/yard/person/count') === '1' &&
      last('fogedge/cameras/yard/zones/drive/person/count') === '1',
    5000,
  );
  assert.is(last('fogedge/cameras/yard/motion'), 'ON');
  assert.is(last('fogedge/cameras/yard/occupancy'), 'ON');
  assert.is(last('fogedge/cameras/yard/car/count'), '0');
  const snapshot = await waitUntil('the snapshot', () => snapshots.at(-1), 5000);
  assert.ok(snapshot.equals(jpeg), "the retained snapshot is the event's JPEG");
  // The person stands still, then leaves.
  await box.broker.call('events.record', { type: 'update', ...event, stationary: true });
  await waitUntil(
    'motion OFF, still occupied',
    () => last('fogedge/cameras/yard/motion') === 'OFF' && last('fogedge/cameras/yard/occupancy') === 'ON',
    5000,
  );
  await box.broker.call('events.record', { type: 'end', ...event, end: new Date().toISOString() });
  await waitUntil(
    'nobody in view',
    () => last('fogedge/cameras/yard/person/count') === '0' && last('fogedge/cameras/yard/occupancy') === 'OFF',
    5000,
  );

  // Home Assistant announces itself: the configs come again, and it stays connected.
  const before = got.filter((m) => m.topic.startsWith('homeassistant/')).length;
  await ha.publishAsync('homeassistant/status', 'online', { qos: 1 });
  await waitUntil(
    'the configs again',
    () => got.filter((m) => m.topic.startsWith('homeassistant/')).length > before,
    5000,
  );
  assert.ok(ha.connected);

  // The camera removed: a new subscriber finds nothing retained for it.
  assert.is((await box.request('DELETE', '/api/v1/cameras/yard', { auth: admin })).status, 200);
  await new Promise((r) => setTimeout(r, 500));
  const late = await connect('admin', admin);
  const lateGot = received(late);
  await late.subscribeAsync(['homeassistant/+/fogedge_yard/#', 'fogedge/cameras/yard/#']);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(
    lateGot.map((m) => m.topic),
    [],
  );
});

test("notifications: each user is told of the events they chose, on their own topic; a camera's switch turns them off", async () => {
  assert.is(
    (
      await box.request('POST', '/api/v1/cameras', {
        auth: admin,
        body: { id: 'gate2', name: 'Gate', enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' } },
      })
    ).status,
    201,
  );
  const bad = await box.request('PUT', '/api/v1/auth/me/notifications', {
    auth: admin,
    body: { enabled: true, rules: [{ labels: ['person'], from: '25:00' }] },
  });
  assert.is(bad.status, 422);
  assert.match(bad.text, /from/);
  const rules = { enabled: true, rules: [{ cameras: ['gate2'], labels: ['person'] }] };
  assert.equal(
    (await box.request('PUT', '/api/v1/auth/me/notifications', { auth: admin, body: rules })).json.rules[0].labels,
    ['person'],
  );
  assert.equal((await box.request('GET', '/api/v1/auth/me/notifications', { auth: admin })).json.enabled, true);
  // An installer who turned notifications on still may not see events.
  const fitter = (
    await box.request('POST', '/api/v1/auth/login', { body: { username: 'fitter', password: 'installer-pass-1' } })
  ).headers;
  assert.is(
    (
      await box.request('PUT', '/api/v1/auth/me/notifications', {
        auth: box.sessionOf(fitter)!,
        body: { enabled: true },
      })
    ).status,
    200,
  );

  const phone = await connect('admin', admin);
  const got = received(phone);
  assert.equal(
    await subscribe(phone, ['fogedge/users/admin/notifications', 'fogedge/users/fitter/#']),
    [0, 128],
    'only your own',
  );
  const installer = await connect('fitter', box.sessionOf(fitter)!);
  const installerGot = received(installer);
  await installer.subscribeAsync('fogedge/users/fitter/#');
  const event = (id: string, camera: string, label: string) =>
    box.broker.call('events.record', {
      type: 'start',
      id,
      camera,
      label,
      topScore: 0.9,
      box: [0, 0, 1, 1],
      zones: [],
      start: new Date().toISOString(),
      end: null,
      stationary: false,
    });
  await event('n-1', 'gate2', 'car');
  await event('n-2', 'porch9', 'person');
  await event('n-3', 'gate2', 'person');
  const first = await waitUntil(
    'the notification',
    () => got.find((m) => m.topic === 'fogedge/users/admin/notifications'),
    5000,
  );
  assert.is(JSON.parse(first.payload).event.id, 'n-3');
  assert.is(JSON.parse(first.payload).title, 'person at Gate');
  // The camera's notifications switched off over MQTT: nothing more from it.
  await phone.publishAsync('fogedge/cameras/gate2/notifications/set', 'OFF', { qos: 1 });
  await waitUntil(
    'the camera setting',
    async () => (await box.request('GET', '/api/v1/cameras/gate2', { auth: admin })).json.notifications === false,
    5000,
  );
  await event('n-4', 'gate2', 'person');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(
    got.filter((m) => m.topic.startsWith('fogedge/users/')).map((m) => JSON.parse(m.payload).event.id),
    ['n-3'],
  );
  assert.equal(installerGot, []);
});

test('a denied device retrying fast: every try refused, everyone else served, nothing retained lost', async () => {
  await box.request('POST', '/api/v1/devices', { auth: admin, body: { id: 'rogue', name: 'Rogue plug' } });
  assert.is(
    (await box.request('PATCH', '/api/v1/devices/rogue', { auth: admin, body: { state: 'denied' } })).status,
    200,
  );
  const app = await connect('admin', admin);
  const got = received(app);
  await app.subscribeAsync('fogedge/devices/sensor-1/#');
  const device = await connect('sensor-1', secret);
  await device.publishAsync('fogedge/devices/sensor-1/kept', 'retained-before', { qos: 1, retain: true });
  // 100 at once: each answered, however busy the machine (a CONNACK timeout would not be a refusal).
  const tries = Array.from({ length: 100 }, () =>
    connectOutcome(`mqtt://127.0.0.1:${port}`, {
      username: 'rogue',
      password: 'rogue-secret-000000',
      connectTimeout: 30_000,
    }),
  );
  for (let i = 0; i < 20; i++) await device.publishAsync('fogedge/devices/sensor-1/live', `m${i}`, { qos: 1 });
  const results = await Promise.all(tries);
  assert.ok(
    results.every((r) => /^5: /.test(r)),
    'every try refused: ' + [...new Set(results)].join(' / '),
  );
  await waitUntil(
    'all 20 messages',
    () => got.filter((m) => m.topic.endsWith('/live')).length === 20 || undefined,
    5000,
  );
  const late = await connect('admin', admin);
  const lateGot = received(late);
  await late.subscribeAsync('fogedge/devices/sensor-1/kept');
  await waitUntil('the retained message', () => lateGot.some((m) => m.payload === 'retained-before'), 5000);
});

test('packets to one client in one turn of the event loop go out as one write, in order', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const reader = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const writer = await accepted;
  coalesceWrites(writer);
  const writes: number[] = [];
  const handle = writer as unknown as {
    _handle: { writev: (...a: unknown[]) => unknown; writeBuffer: (...a: unknown[]) => unknown };
  };
  for (const name of ['writev', 'writeBuffer'] as const) {
    const original = handle._handle[name].bind(handle._handle);
    handle._handle[name] = (...a: unknown[]) => (writes.push(1), original(...a));
  }
  const received: Buffer[] = [];
  reader.on('data', (d: Buffer) => received.push(d));
  // As aedes writes a fan-out: each packet from its own callback (the publishers' sockets'
  // reads in one poll phase), with mqtt-packet's cork until the next tick between them.
  for (let i = 0; i < 100; i++) {
    setImmediate(() =>
      mqttPacket.writeToStream(
        {
          cmd: 'publish',
          topic: `t/${i}`,
          payload: Buffer.from(String(i)),
          qos: 0,
          retain: false,
          dup: false,
        } as mqttPacket.IPublishPacket,
        writer,
      ),
    );
  }
  await waitUntil('all 100 packets read', () => Buffer.concat(received).length >= 100 * 7);
  assert.is(writes.length, 1, 'one system call for the 100 packets');
  const parser = mqttPacket.parser();
  const topics: string[] = [];
  parser.on('packet', (p: mqttPacket.Packet) => topics.push((p as mqttPacket.IPublishPacket).topic));
  parser.parse(Buffer.concat(received));
  assert.equal(
    topics,
    Array.from({ length: 100 }, (_, i) => `t/${i}`),
  );
  reader.destroy();
  writer.destroy();
  server.close();
});

test('notification hours: a window past midnight wraps', () => {
  assert.ok(withinHours(23 * 60, '22:00', '06:00'));
  assert.ok(withinHours(5 * 60, '22:00', '06:00'));
  assert.not.ok(withinHours(12 * 60, '22:00', '06:00'));
  assert.ok(withinHours(12 * 60, '08:00', '18:00'));
  assert.not.ok(withinHours(18 * 60, '08:00', '18:00'));
  assert.ok(withinHours(3, undefined, undefined));
});

test('the read check at delivery (compiled once per client) gives the same answer as the full check for every identity and topic', () => {
  const identities: Identity[] = [
    { kind: 'device', id: 'cam-1', grants: [], prefix: 'fogedge/devices/cam-1/' },
    {
      kind: 'device',
      id: 'hub',
      grants: ['fogedge/devices/+/motion', 'fogedge/events/#', 'site/a.b/+/x'],
      prefix: 'fogedge/devices/hub/',
    },
    { kind: 'device', id: 'gates', grants: ['fogedge/+/gate/#', '+/status'], prefix: 'fogedge/devices/gates/' },
    ...ROLES.map((role) => ({ kind: 'user' as const, username: 'bob', role })),
  ];
  const topics = [
    'fogedge/status',
    'fogedge/status/x',
    'fogedge',
    'fogedge/devices',
    'fogedge/devices/cam-1/cmd',
    'fogedge/devices/cam-1/cmd/usp',
    'fogedge/devices/cam-1/cmdx',
    'fogedge/devices/cam-2/cmd/usp',
    'fogedge/devices/cam-2/motion',
    'fogedge/devices/cam-2/motion/x',
    'fogedge/devices//motion',
    'fogedge/events',
    'fogedge/events/gate/new',
    'fogedge/cameras/gate/person/snapshot',
    'homeassistant',
    'homeassistant/sensor/x/config',
    'fogedge/users/bob',
    'fogedge/users/bob/notifications',
    'fogedge/users/bobby/notifications',
    'site/a.b/1/x',
    'site/aXb/1/x',
    '$SYS/broker/uptime',
    '',
  ];
  for (const who of identities)
    for (const topic of topics)
      assert.is(mayReceive(who, topic), mayRead(who, topic), `${JSON.stringify(who)} on "${topic}"`);
  assert.ok(mayReceive(identities[1], 'fogedge/devices/cam-9/motion'), 'a + grant');
  assert.not.ok(mayReceive(identities[1], 'site/aXb/1/x'), 'a dot in a grant is a dot');
  const everything: Identity = { kind: 'device', id: 'all', grants: ['#'], prefix: 'fogedge/devices/all/' };
  assert.ok(mayReceive(everything, 'site/a/b'));
  assert.not.ok(mayReceive(everything, '$SYS/broker/uptime'), "'#' matches no $ topic [MQTT-4.7.2-1]");
});

test('[MQTT-3.1.3-8] an empty client id with CleanSession 0 gets CONNACK 0x02 (identifier rejected); with CleanSession 1 the broker names it', async () => {
  const connackOf = async (clean: boolean) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    const answer = new Promise<Buffer>((r) => socket.once('data', r));
    // Written by hand: mqtt-packet will not make this packet (it is the client's error to send it).
    const str = (v: string) =>
      Buffer.concat([Buffer.from([Buffer.byteLength(v) >> 8, Buffer.byteLength(v) & 0xff]), Buffer.from(v)]);
    const body = Buffer.concat([
      str('MQTT'),
      Buffer.from([0x04, 0xc0 | (clean ? 0x02 : 0), 0x00, 0x1e]),
      str(''),
      str('sensor-1'),
      str(secret),
    ]);
    socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    const bytes = [...(await answer)];
    socket.destroy();
    return bytes;
  };
  assert.equal(await connackOf(false), [0x20, 0x02, 0x00, 0x02]);
  assert.equal(await connackOf(true), [0x20, 0x02, 0x00, 0x00]);
});

/** A CONNECT from a chosen loopback address (127.0.0.x): the CONNACK's return code. */
async function connackFrom(
  localAddress: string,
  username: string,
  password: string,
  clientId = `c-${Math.random().toString(36).slice(2)}`,
): Promise<number> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  const answer = new Promise<Buffer>((r) => socket.once('data', r));
  socket.write(connectPacket(clientId, { username, password, keepalive: 30 }));
  const code = (await answer)[3]!;
  socket.destroy();
  return code;
}

test("as an outsider: the pairing window cannot make a device of a user's name, and guessing a device's secret from one address does not lock it out from another", async () => {
  assert.is((await box.request('POST', '/api/v1/devices/pairing', { auth: admin, body: { seconds: 60 } })).status, 200);
  // A wrong "token" for the admin's name: refused, and no pending device "admin" is made.
  assert.is(await connackFrom('127.0.0.3', 'admin', 'not-the-admins-token-000'), 5);
  const devices = (await box.request('GET', '/api/v1/devices', { auth: admin })).json.devices as Array<{ id: string }>;
  assert.not.ok(
    devices.some((d) => d.id === 'admin'),
    'no device took the name of a user',
  );
  assert.is(await connackFrom('127.0.0.3', 'admin', admin), 0, 'the admin still signs in');
  const named = await box.request('POST', '/api/v1/devices', {
    auth: admin,
    body: { id: 'admin', name: 'Not the admin' },
  });
  assert.is(named.status, 409);
  assert.is(named.json.error.type, 'NAME_OF_A_USER');
  await box.request('POST', '/api/v1/devices/pairing', { auth: admin, body: { seconds: 0 } });

  // Someone at 127.0.0.4 guesses sensor-1's secret until held back; the sensor at 127.0.0.5 goes on.
  for (let i = 0; i < 12; i++) await connackFrom('127.0.0.4', 'sensor-1', `guess-${i}-00000000`);
  assert.is(
    await connackFrom('127.0.0.4', 'sensor-1', secret),
    5,
    'the guessing address is held back, even with the right secret',
  );
  assert.is(await connackFrom('127.0.0.5', 'sensor-1', secret), 0, 'the device itself is not locked out');
});

test('a revoked token, a deleted user or a changed role ends its MQTT connections at once', async () => {
  const made = await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'home-assistant' } });
  assert.is(made.status, 201, made.text);
  const ha = await connect('admin', made.json.token);
  const closed = new Promise<void>((r) => ha.once('close', () => r()));
  ha.options.reconnectPeriod = 0;
  assert.is((await box.request('DELETE', `/api/v1/tokens/${made.json.info.id}`, { auth: admin })).status, 200);
  await Promise.race([
    closed,
    new Promise((_, reject) => setTimeout(() => reject(new Error('still connected 3 s after the revocation')), 3000)),
  ]);
  assert.match(await refusal('admin', made.json.token), /^5: /, 'and it cannot sign in again');

  assert.is(
    (
      await box.request('POST', '/api/v1/users', {
        auth: admin,
        body: { username: 'lodger', password: 'lodger-password-1', role: 'family' },
      })
    ).status,
    201,
  );
  const lodgerSession = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'lodger', password: 'lodger-password-1' } }))
      .headers,
  )!;
  const lodgerToken = (await box.request('POST', '/api/v1/tokens', { auth: lodgerSession, body: { name: 'phone' } }))
    .json.token;
  for (const change of [
    () => box.request('PATCH', '/api/v1/users/lodger', { auth: admin, body: { role: 'installer' } }),
    () => box.request('DELETE', '/api/v1/users/lodger', { auth: admin }),
  ]) {
    const phone = await connect('lodger', lodgerToken);
    const gone = new Promise<void>((r) => phone.once('close', () => r()));
    assert.ok([200, 204].includes((await change()).status));
    await Promise.race([
      gone,
      new Promise((_, reject) => setTimeout(() => reject(new Error('still connected 3 s after the change')), 3000)),
    ]);
  }
});

test('the accounts service away: a user signing in is told "server unavailable" (3), not "not authorized", and no failed sign-in is counted; back, the same token works', async () => {
  const made = await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'while-away' } });
  assert.is(made.status, 201, made.text);
  await box.broker.destroyService(box.broker.getLocalService('accounts')!);
  try {
    // More tries than the per-client failure limit: none may count against the owner.
    for (let i = 0; i < 12; i++) assert.match(await refusal('admin', made.json.token), /^3: /);
  } finally {
    box.broker.createService(accountsService(box.config));
    await box.broker.waitForServices(['accounts'], 10_000);
  }
  assert.is(await refusal('admin', made.json.token), 'connected');
});

test('before sign-in a connection costs little: a 1 MiB CONNECT is cut off at its header, and connections past mqtt.maxPendingConnections are closed at once', async () => {
  const open = async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    await new Promise((r) => socket.once('connect', r));
    return { socket, closed };
  };
  // CONNECT whose remaining length says 1 MiB, then 32 KiB of it.
  const big = await open();
  const got: Buffer[] = [];
  big.socket.on('data', (d: Buffer) => got.push(d));
  const sentAt = Date.now();
  big.socket.write(Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x40]), Buffer.alloc(32 * 1024)]));
  const at = await Promise.race([big.closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
  assert.ok(at > 0 && at - sentAt < 3000, 'closed while its body was still to come');
  assert.equal(got, [], 'no CONNACK: it never got as far as a sign-in');

  // Connections that never sign in fill the broker's room for them; one more is closed at once.
  const idle = await Promise.all(Array.from({ length: PENDING_CAP }, open));
  await new Promise((r) => setTimeout(r, 200));
  const extra = await open();
  const extraAt = await Promise.race([extra.closed, new Promise<number>((r) => setTimeout(() => r(-1), 2000))]);
  assert.ok(extraAt > 0, 'the connection past the cap is closed');
  for (const c of idle) c.socket.destroy();
  await Promise.all(idle.map((c) => c.closed));
  await waitUntil(
    'room again for a device',
    async () => (await refusal('sensor-1', secret)) === 'connected',
    5000,
    100,
  );
});

test.run();
