// Automations with real parts: a door contact (Debian's mosquitto_pub, with its own device
// credentials) and a siren (mqtt.js, subscribed to its command topic) on the box's broker; a
// real RTSP camera with the street clip, recorded and watched by the detector; a webhook
// receiver on loopback. The example of the issue end to end (the door opens while Away: the
// camera's footage held with pre-roll, the admin told with a picture, the siren ON then OFF;
// the same door at Home does nothing), what the traces say, the owner's permissions, and bad
// input and faults: names that are not there, a loop between two automations, a flood from one
// device, a restart in the middle of a wait.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { mosquittoPub } from './helpers/mqtt.ts';
import { playable, RtspCamera } from './helpers/video.ts';
import { S3rver } from './helpers/storage.ts';
import { AutomationClock } from '../services/automations/clock.ts';
import type { Trigger } from '../services/automations/automations.schemas.ts';
import type { Fact } from '../services/automations/triggers.ts';
import { readState } from '../services/devices/device-states.ts';

let box: TestBox;
let admin: string;
let family: string;
let port: number;
let hookUrl: string;
let cam: RtspCamera;
const clients: MqttClient[] = [];
const secrets: Record<string, string> = {};
/** What the siren received: payload and when. */
const siren: Array<{ payload: string; at: number }> = [];
const hooks: Array<{ method: string; url: string; body: string }> = [];
let hookServer: http.Server;
let s3: S3rver;

const mqttUrl = () => `mqtt://127.0.0.1:${port}`;
const boxConfig = () => ({
  mqtt: { host: '127.0.0.1', port, tlsPort: null },
  video: { segmentSeconds: 2, stallSeconds: 5 },
  detector: { enabled: true, preRollSeconds: 2, postRollSeconds: 2, reviewMaxSeconds: 10 },
  automations: { webhookAllow: [`${hookUrl}/hooks/`], maxRunsPerMinute: 10 },
  sync: { boxId: 'box1', retryMinMs: 200, retryMaxMs: 1000 },
});
const save = (id: string, automation: object, auth = admin) =>
  box.request('PUT', `/api/v1/automations/${id}`, { auth, body: automation });
const traces = async (id: string) =>
  (await box.request('GET', `/api/v1/automations/${id}/traces`, { auth: admin })).json;
const setMode = (mode: string) => box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode } });
const login = async (username: string, password: string) =>
  box.sessionOf((await box.request('POST', '/api/v1/auth/login', { body: { username, password } })).headers)!;
/** The door, as a third-party device client would send: mosquitto_pub with its own credentials. */
const door = (message: string) =>
  mosquittoPub(port, {
    user: 'door',
    password: secrets['door']!,
    clientId: 'door',
    topic: 'fogedge/devices/door/contact',
    message,
  });

async function sirenOnline() {
  const client = await mqtt.connectAsync(mqttUrl(), {
    clientId: 'siren',
    username: 'siren',
    password: secrets['siren'],
    reconnectPeriod: 500,
    // As a siren should: a persistent session, so a command sent while it (or the box) was away arrives.
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
  });
  clients.push(client);
  client.on('message', (_topic, payload) => siren.push({ payload: payload.toString(), at: Date.now() }));
  await client.subscribeAsync('fogedge/devices/siren/cmd/#', { qos: 1 });
  return client;
}

async function startBox(dataDir?: string) {
  box = await testBox({ ...boxConfig(), ...(dataDir ? { dataDir } : {}) });
}

test.before(async () => {
  port = await freePort();
  hookServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hooks.push({ method: req.method!, url: req.url!, body });
      // An allowed address that sends the box elsewhere is not followed.
      if (req.url?.includes('redirect')) res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}`;
  cam = new RtspCamera(await freePort());
  await cam.start();
  s3 = await S3rver.create(await tempDir(), 'fogedge');
  await startBox();
  admin = await withAdmin(box);
  await box.broker.call('sync.addTarget', s3.target('s3'));
  assert.is(
    (
      await box.request('POST', '/api/v1/users', {
        auth: admin,
        body: { username: 'kid', password: 'kid-password-1', role: 'family' },
      })
    ).status,
    201,
  );
  family = await login('kid', 'kid-password-1');
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'porch', name: 'Porch', source: { kind: 'rtsp', url: cam.url() }, detection: { labels: ['person'] } },
  });
  assert.is(added.status, 201, added.text);
  for (const [id, type] of [
    ['door', 'contact'],
    ['siren', 'generic'],
    ['lamp', 'switch'],
  ] as const) {
    const res = await box.request('POST', '/api/v1/devices', { auth: admin, body: { id, name: id, type } });
    assert.is(res.status, 201, res.text);
    secrets[id] = res.json.secret;
  }
  await sirenOnline();
  await waitUntil(
    'the porch recording',
    async () => (await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.status?.state === 'online',
    30_000,
  );
});

test.after(async () => {
  for (const c of clients) c.end(true);
  await box.stop();
  await cam.stop();
  await s3.stop();
  hookServer.close();
});

const guard = {
  name: 'Door opens while away',
  triggers: [{ kind: 'device.message', device: 'door', topic: 'contact', match: { equals: 'open' } }],
  conditions: [{ kind: 'mode', in: ['away', 'vacation'] }],
  actions: [
    { kind: 'hold', camera: 'porch', preRollSeconds: 10, seconds: 20 },
    { kind: 'notify', title: 'The door opened at {trigger}', camera: 'porch' },
    { kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'ON' },
    { kind: 'wait', seconds: 5 },
    { kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'OFF' },
  ],
};

test('the door opens while Away: footage held with pre-roll, the admin told with a picture, the siren ON then OFF; at Home nothing', async () => {
  const saved = await save('door-away', guard);
  assert.is(saved.status, 200, saved.text);
  assert.is(saved.json.owner, 'admin');
  const phone = await mqtt.connectAsync(mqttUrl(), {
    username: 'admin',
    password: (await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'phone' } })).json.token,
    reconnectPeriod: 0,
  });
  clients.push(phone);
  const told: Array<Record<string, any>> = [];
  phone.on('message', (_t, p) => told.push(JSON.parse(p.toString())));
  await phone.subscribeAsync('fogedge/users/admin/notifications', { qos: 1 });

  // At Home: the door opens, and nothing happens; the trace says why.
  await setMode('home');
  await door('{"contact": false}');
  const skipped = await waitUntil('a skipped run', async () =>
    (await traces('door-away')).find((t: any) => t.result === 'skipped'),
  );
  assert.match(skipped.reason, /mode is home/);
  assert.is(skipped.actions.length, 0);

  // Away: the same door.
  await setMode('away');
  await door('{"contact": true}'); // closed: no match
  const opened = Date.now();
  await door('{"contact": false}');
  await waitUntil('siren ON', () => siren.find((s) => s.payload === 'ON' && s.at >= opened), 15_000);
  const on = siren.find((s) => s.payload === 'ON' && s.at >= opened)!;
  const off = await waitUntil('siren OFF', () => siren.find((s) => s.payload === 'OFF' && s.at >= opened), 20_000);
  assert.ok(off.at - on.at >= 4900, `OFF ${off.at - on.at} ms after ON`);
  assert.is(siren.filter((s) => s.at >= opened).length, 2, 'ON once, OFF once');

  // The admin's phone: a notification with the porch's picture now (a JPEG).
  const note = await waitUntil('a notification', () => told.find((n) => n.from === 'automation:door-away'));
  assert.match(note.title, /door\/contact/);
  assert.is(note.camera, 'porch');
  assert.equal([...Buffer.from(note.snapshotBase64, 'base64').subarray(0, 2)], [0xff, 0xd8], 'a JPEG');

  // The footage: an alert on the porch from 10 s before the door opened, whose clip plays.
  const held = await waitUntil(
    'the hold event',
    async () => (await box.request('GET', '/api/v1/events?camera=porch&label=hold', { auth: admin })).json[0],
  );
  assert.ok(
    Date.parse(held.start) <= opened - 9000,
    `held from ${held.start}, the door opened at ${new Date(opened).toISOString()}`,
  );
  const items = (await box.request('GET', '/api/v1/review?camera=porch&severity=alert', { auth: admin })).json;
  assert.ok(
    items.some((i: any) => i.objects.some((o: any) => o.event === held.id)),
    'an alert item',
  );

  // The trace: the trigger, the condition, each action's result.
  const done = await waitUntil('the finished run', async () =>
    (await traces('door-away')).find((t: any) => t.result === 'done'),
  );
  assert.match(done.trigger.detail, /door\/contact/);
  assert.equal(
    done.conditions.map((c: any) => [c.kind, c.ok]),
    [['mode', true]],
  );
  assert.equal(
    done.actions.map((a: any) => a.kind),
    ['hold', 'notify', 'device.publish', 'wait', 'device.publish'],
  );
  assert.ok(
    done.actions.every((a: any) => a.ok),
    JSON.stringify(done.actions),
  );
  await setMode('home');
});

test("device states: the door's contact read as its type says, kept across a restart, and a condition on another device", async () => {
  assert.equal(readState('contact', '{"contact": true}'), { value: 'closed' });
  assert.equal(readState('contact', 'OPEN'), { value: 'open' });
  assert.equal(readState('switch', '{"state":"ON"}'), { value: 'on' });
  assert.equal(readState('temperature', '21.5'), { value: 21.5 });
  assert.match(readState('contact', 'banana').problem!, /not open or closed/);
  // JSON where it is JSON, the text where it is not (a number, true/false only as JSON has them).
  assert.equal(readState('contact', ' true '), { value: 'open' });
  assert.equal(readState('generic', '-1.5e3'), { value: -1500 });
  assert.equal(readState('generic', '0x10'), { value: '0x10' });
  assert.equal(readState('generic', '12 ms'), { value: '12 ms' });
  assert.equal(readState('generic', ' "quoted" '), { value: 'quoted' });
  assert.equal(readState('generic', '{"broken": '), { value: '{"broken":' });
  assert.equal(readState('generic', '[1,2]'), { value: '[1,2]' });
  const states = (await box.request('GET', '/api/v1/device-states?id=door', { auth: family })).json;
  assert.is(states.door.contact.value, 'open');
  // The lamp on: a rule that wants it off does nothing.
  const lamp = await mqtt.connectAsync(mqttUrl(), {
    clientId: 'lamp',
    username: 'lamp',
    password: secrets['lamp'],
    reconnectPeriod: 0,
  });
  clients.push(lamp);
  await lamp.publishAsync('fogedge/devices/lamp/state', 'ON', { qos: 1, retain: true });
  await waitUntil(
    'lamp on',
    async () =>
      (await box.request('GET', '/api/v1/device-states?id=lamp', { auth: admin })).json.lamp.state?.value === 'on',
  );
  assert.is(
    (
      await save('dark-door', {
        name: 'Door in the dark',
        triggers: [{ kind: 'device.message', device: 'door', topic: 'contact' }],
        conditions: [{ kind: 'device.state', device: 'lamp', equals: 'off' }],
        actions: [{ kind: 'device.publish', device: 'siren', channel: 'chime', payload: 'ding' }],
      })
    ).status,
    200,
  );
  await door('OPEN');
  const trace = await waitUntil('its trace', async () => (await traces('dark-door'))[0]);
  assert.is(trace.result, 'skipped');
  assert.match(trace.conditions[0].detail, /lamp\/state is "on"/);
  await box.request('DELETE', '/api/v1/automations/dark-door', { auth: admin });
});

test('bad input: a camera, device, zone or mode that is not there, a cron that does not parse, a webhook not allowed, each named', async () => {
  const base = { name: 'x', actions: [{ kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'ON' }] };
  const cases: Array<[object, number, RegExp]> = [
    [
      { ...base, triggers: [{ kind: 'event', camera: 'garage' }] },
      400,
      /triggers\.0\.camera: the box has no camera "garage"/,
    ],
    [{ ...base, triggers: [{ kind: 'event', camera: 'porch', zone: 'pool' }] }, 400, /zone "pool"/],
    [{ ...base, triggers: [{ kind: 'device.message', device: 'gnome' }] }, 400, /device "gnome"/],
    [{ ...base, triggers: [{ kind: 'mode', to: 'disco' }] }, 400, /mode "disco"/],
    [{ ...base, triggers: [{ kind: 'schedule', cron: '0 8 * * funday' }] }, 422, /day of week "funday"/],
    [{ ...base, triggers: [{ kind: 'sun', event: 'sunset' }] }, 400, /site's place/],
    [
      { ...base, triggers: [{ kind: 'mode' }], actions: [{ kind: 'webhook', url: 'http://169.254.169.254/latest' }] },
      400,
      /not under an address the admin allowed/,
    ],
    [
      { ...base, triggers: [{ kind: 'mode' }], actions: [{ kind: 'notify', title: 'x', users: ['nobody'] }] },
      400,
      /user "nobody"/,
    ],
    [{ ...base, triggers: [] }, 422, /triggers/],
  ];
  for (const [automation, status, message] of cases) {
    const res = await save('bad', automation);
    assert.is(res.status, status, `${JSON.stringify(automation)}: ${res.text}`);
    assert.match(res.json?.error?.message ?? res.text, message, res.text);
  }
  // A payload match on a field of a message that is not JSON: no match, no error.
  assert.is(
    (
      await save('json-door', {
        ...base,
        triggers: [
          { kind: 'device.message', device: 'door', topic: 'contact', match: { field: 'contact', equals: false } },
        ],
      })
    ).status,
    200,
  );
  await door('not json at all');
  await door('{"contact": false}');
  const trace = await waitUntil('the JSON match', async () => (await traces('json-door'))[0]);
  assert.match(trace.trigger.detail, /"contact": false/);
  assert.is((await traces('json-door')).length, 1, 'the text that is not JSON fired nothing');
  await box.request('DELETE', '/api/v1/automations/json-door', { auth: admin });
});

test('a webhook to an allowed address gets the facts; a redirect elsewhere is not followed; a removed device stops its automations with the reason', async () => {
  const res = await save('hook', {
    name: 'Tell the NAS',
    triggers: [{ kind: 'mode', to: 'night' }],
    actions: [
      { kind: 'webhook', url: `${hookUrl}/hooks/night`, body: { site: 'home' } },
      { kind: 'webhook', url: `${hookUrl}/hooks/redirect` },
    ],
  });
  assert.is(res.status, 200, res.text);
  await setMode('night');
  const trace = await waitUntil(
    'the webhook run',
    async () => (await traces('hook'))[0]?.endedAt && (await traces('hook'))[0],
  );
  const got = hooks.find((h) => h.url === '/hooks/night')!;
  assert.is(got.method, 'POST');
  assert.equal(
    { ...JSON.parse(got.body), at: undefined },
    { automation: 'hook', trigger: 'mode home → night', site: 'home', at: undefined },
  );
  assert.is(trace.actions[1].ok, false);
  assert.match(trace.actions[1].detail, /HTTP 302/);
  assert.is(hooks.filter((h) => h.url === '/').length, 0, 'the redirect was not followed');
  await setMode('home');

  // The lamp removed: an automation that names it stops, and says why.
  assert.is(
    (
      await save('lamp-rule', {
        name: 'Lamp',
        triggers: [{ kind: 'device.connection', device: 'lamp', state: 'offline' }],
        actions: [{ kind: 'notify', title: 'The lamp is gone' }],
      })
    ).status,
    200,
  );
  assert.is((await box.request('DELETE', '/api/v1/devices/lamp', { auth: admin })).status, 200);
  const stopped = await waitUntil(
    'stopped',
    async () => (await box.request('GET', '/api/v1/automations/lamp-rule', { auth: admin })).json.disabledReason,
  );
  assert.match(stopped, /device "lamp" \(triggers\.0\.device\) was removed/);
});

test('a loop between two automations is stopped and flagged; the mode does not flap', async () => {
  await save('night-to-away', {
    name: 'A',
    triggers: [{ kind: 'mode', to: 'night' }],
    actions: [{ kind: 'mode.set', mode: 'away' }],
  });
  await save('away-to-night', {
    name: 'B',
    triggers: [{ kind: 'mode', to: 'away' }],
    actions: [{ kind: 'mode.set', mode: 'night' }],
  });
  await setMode('night');
  const reason = await waitUntil('a flag', async () => {
    const all = (await box.request('GET', '/api/v1/automations', { auth: admin })).json as any[];
    return all.find((a) => a.id.endsWith('-to-away') && a.disabledReason)?.disabledReason;
  });
  assert.match(reason, /led back to itself \(night-to-away → away-to-night → night-to-away\)/, reason);
  const settled = (await box.request('GET', '/api/v1/modes', { auth: admin })).json.active;
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await box.request('GET', '/api/v1/modes', { auth: admin })).json.active, settled, 'the mode stays');
  for (const id of ['night-to-away', 'away-to-night'])
    await box.request('DELETE', `/api/v1/automations/${id}`, { auth: admin });
  await setMode('home');
});

test('10,000 messages a second from one device: the box keeps serving; the bus gets its share; the siren is not stormed', async () => {
  await save('chatty', {
    name: 'Every door message',
    triggers: [{ kind: 'device.message', device: 'door', topic: '#' }],
    actions: [{ kind: 'device.publish', device: 'siren', channel: 'chime', payload: 'ding' }],
  });
  const flood = await mqtt.connectAsync(mqttUrl(), {
    clientId: 'door-flood',
    username: 'door',
    password: secrets['door'],
    reconnectPeriod: 0,
  });
  clients.push(flood);
  const before = siren.length;
  // 10,000 in one second, in batches of 500 every 50 ms; the API asked in the middle of it.
  const answers: number[] = [];
  for (let batch = 0; batch < 20; batch++) {
    for (let i = 0; i < 500; i++) flood.publish('fogedge/devices/door/contact', i % 2 ? 'OPEN' : 'CLOSED', { qos: 0 });
    if (batch === 10) {
      const asked = Date.now();
      assert.is((await box.request('GET', '/api/v1/modes', { auth: admin })).status, 200);
      answers.push(Date.now() - asked);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await flood.endAsync();
  await new Promise((r) => setTimeout(r, 1500));
  // mqtt.deviceMessagesPerSecond (20) reach the services; one run at a time: a few chimes, not 10,000.
  const chimes = siren.length - before;
  assert.ok(chimes >= 1 && chimes <= 45, `${chimes} chimes`);
  assert.ok(answers[0]! < 5000, `the API answered in ${answers[0]} ms during the flood`);
  await box.request('DELETE', '/api/v1/automations/chatty', { auth: admin });
});

test('a loop through a device (it answers each command with a message): stopped after automations.maxRunsPerMinute runs', async () => {
  const echo = await box.request('POST', '/api/v1/devices', { auth: admin, body: { id: 'echo', name: 'Echo' } });
  const device = await mqtt.connectAsync(mqttUrl(), {
    clientId: 'echo',
    username: 'echo',
    password: echo.json.secret,
    reconnectPeriod: 0,
  });
  clients.push(device);
  let heard = 0;
  device.on('message', () => {
    heard++;
    device.publish('fogedge/devices/echo/state', `pong ${heard}`);
  });
  await device.subscribeAsync('fogedge/devices/echo/cmd/#');
  assert.is(
    (
      await save('ping', {
        name: 'Ping',
        triggers: [{ kind: 'device.message', device: 'echo', topic: 'state' }],
        actions: [{ kind: 'device.publish', device: 'echo', channel: 'ping', payload: 'ping' }],
      })
    ).status,
    200,
  );
  device.publish('fogedge/devices/echo/state', 'hello');
  const reason = await waitUntil(
    'ping stopped',
    async () => (await box.request('GET', '/api/v1/automations/ping', { auth: admin })).json.disabledReason,
    20_000,
  );
  assert.match(reason, /ran 11 times in a minute/);
  await new Promise((r) => setTimeout(r, 500));
  const after = heard;
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(heard, after, 'no more pings once stopped');
  assert.ok(heard <= 11, `${heard} pings`);
  const stopped = (await traces('ping'))[0];
  assert.is(stopped.result, 'stopped');
  await box.request('DELETE', '/api/v1/automations/ping', { auth: admin });
});

test("actions run as the owner: a family member's camera change is refused in the trace; they may not change the admin's automations", async () => {
  const kids = await save(
    'kid-rule',
    {
      name: "Kid's",
      triggers: [{ kind: 'mode', to: 'night' }],
      actions: [
        { kind: 'camera.set', camera: 'porch', detection: false },
        { kind: 'device.publish', device: 'siren', channel: 'chime', payload: 'night' },
      ],
    },
    family,
  );
  assert.is(kids.status, 200, kids.text);
  assert.is(kids.json.owner, 'kid');
  assert.is((await save('door-away', guard, family)).status, 403);
  assert.is((await box.request('DELETE', '/api/v1/automations/door-away', { auth: family })).status, 403);
  await setMode('night');
  const trace = await waitUntil(
    'the kid rule ran',
    async () => (await traces('kid-rule'))[0]?.endedAt && (await traces('kid-rule'))[0],
  );
  assert.is(trace.actions[0].ok, false);
  assert.match(trace.actions[0].detail, /Role "family" may not call cameras.update/);
  assert.is(trace.actions[1].ok, true);
  assert.is((await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.detection.enabled, true);
  await setMode('home');
  await box.request('DELETE', '/api/v1/automations/kid-rule', { auth: family });
});

test('a person on the porch camera (the street clip through the detector) fires an event trigger with its picture', async () => {
  await save('person-porch', {
    name: 'Person on the porch',
    triggers: [{ kind: 'event', camera: 'porch', label: 'person', minScore: 0.5 }],
    actions: [{ kind: 'notify', title: '{label} on {camera}' }],
    cooldownSeconds: 3600,
  });
  const trace = await waitUntil(
    'a person run',
    async () => (await traces('person-porch'))[0]?.endedAt && (await traces('person-porch'))[0],
    60_000,
    500,
  );
  assert.match(trace.trigger.detail, /^person start on porch \(event /);
  assert.match(trace.actions[0].detail, /told admin with event .* picture/);
  // The cooldown: one run while people keep walking by.
  await new Promise((r) => setTimeout(r, 3000));
  assert.is((await traces('person-porch')).length, 1);
  await box.request('DELETE', '/api/v1/automations/person-porch', { auth: admin });
});

test('a count crossing a value, an object that stays (loitering), a camera that goes offline', async () => {
  // The yard: a camera that cannot be reached (it goes offline); its objects come from the events store's own input.
  const yard = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: {
      id: 'yard',
      name: 'Yard',
      source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/none' },
      detection: { enabled: false },
    },
  });
  assert.is(yard.status, 201, yard.text);
  const chime = (id: string, trigger: object) =>
    save(id, {
      name: id,
      triggers: [trigger],
      actions: [{ kind: 'device.publish', device: 'siren', channel: id, payload: id }],
    });
  assert.is((await chime('crowd', { kind: 'count', camera: 'yard', label: 'person', above: 1 })).status, 200);
  assert.is(
    (await chime('lurker', { kind: 'event', on: 'loiter', camera: 'yard', label: 'person', loiterSeconds: 2 })).status,
    200,
  );
  assert.is((await chime('yard-down', { kind: 'camera.status', camera: 'yard', state: 'offline' })).status, 200);
  const heard = (payload: string) => siren.filter((s) => s.payload === payload).length;
  await waitUntil('the yard offline', () => heard('yard-down') === 1, 30_000);

  const person = (id: string, type: 'start' | 'end', start: string) =>
    box.broker.call('events.record', {
      type,
      id,
      camera: 'yard',
      label: 'person',
      topScore: 0.8,
      box: [0.1, 0.1, 0.2, 0.5],
      zones: [],
      start,
      end: type === 'end' ? new Date().toISOString() : null,
      stationary: false,
    });
  const t0 = new Date().toISOString();
  await person('yard-a', 'start', t0);
  await new Promise((r) => setTimeout(r, 300));
  assert.is(heard('crowd'), 0, 'one person is not a crowd');
  await person('yard-b', 'start', t0);
  await waitUntil('a crowd', () => heard('crowd') === 1);
  await person('yard-b', 'end', t0);
  // Still one person there past 2 s: loitering, told once.
  await waitUntil('a lurker', () => heard('lurker') === 1, 10_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.is(heard('lurker'), 1);
  await person('yard-a', 'end', t0);
  // Two again: the count crosses 1 once more.
  await person('yard-c', 'start', new Date().toISOString());
  await person('yard-d', 'start', new Date().toISOString());
  await waitUntil('a second crowd', () => heard('crowd') === 2);
  for (const id of ['crowd', 'lurker', 'yard-down'])
    await box.request('DELETE', `/api/v1/automations/${id}`, { auth: admin });
});

test('the disk full fires a system trigger; a clip now, run by hand, keeps the last seconds as an alert', async () => {
  assert.is(
    (
      await save('disk', {
        name: 'Disk full',
        triggers: [{ kind: 'system', what: 'disk.low' }],
        actions: [{ kind: 'device.publish', device: 'siren', channel: 'disk', payload: 'disk-full' }],
      })
    ).status,
    200,
  );
  // What the recorder tells when the disk is under its floor with nothing left to delete.
  await box.broker.broadcast('recording.disk.changed', { full: true, freeBytes: 1, minFreeBytes: 2 });
  await waitUntil('the disk-full chime', () => siren.some((s) => s.payload === 'disk-full'));
  assert.is(
    (
      await save('clipper', {
        name: 'Clip now',
        triggers: [{ kind: 'mode', to: 'vacation' }],
        actions: [{ kind: 'clip', camera: 'porch', seconds: 15 }],
      })
    ).status,
    200,
  );
  const asked = Date.now();
  const ran = await box.request('POST', '/api/v1/automations/clipper/run', { auth: admin });
  assert.is(ran.status, 200, ran.text);
  assert.is(ran.json.result, 'done', JSON.stringify(ran.json));
  assert.match(ran.json.trigger.detail, /run by hand by admin/);
  const held = (await box.request('GET', '/api/v1/events?camera=porch&label=hold', { auth: admin })).json.find(
    (e: any) => Date.parse(e.start) >= asked - 16_000 && Date.parse(e.start) <= asked - 14_000,
  );
  assert.ok(held, 'a hold from 15 s before');
  assert.ok(held.hasSnapshot, "with the porch's picture");
  // It ends 5 s on; the sync plan (events, snapshots, clips) sends its clip to the cloud (s3rver).
  const name = `box1/porch/${held.start.slice(0, 10)}/${held.id}/clip.mp4`;
  await waitUntil('the clip in S3', async () => (await s3.list(name)).length === 1, 60_000, 500);
  const clip = await s3.download(name);
  const file = path.join(await tempDir(), 'clip.mp4');
  await writeFile(file, clip);
  const { seconds } = await playable(file);
  assert.ok(seconds >= 15, `the clip holds the ${seconds} s from the pre-roll on`);
  for (const id of ['disk', 'clipper']) await box.request('DELETE', `/api/v1/automations/${id}`, { auth: admin });
});

test('a restart in the middle of a wait: the rest is done when it was due, once; nothing before it again', async () => {
  await save('restart', {
    name: 'Siren for 12 s',
    triggers: [{ kind: 'device.message', device: 'door', topic: 'contact', match: { equals: 'open' } }],
    actions: [
      { kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'ON' },
      { kind: 'wait', seconds: 12 },
      { kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'OFF' },
    ],
  });
  await door('CLOSED');
  const opened = Date.now();
  await door('OPEN');
  await waitUntil('ON', () => siren.find((s) => s.at >= opened && s.payload === 'ON'));
  const { dataDir } = box;
  await box.stop({ keepData: true });
  await new Promise((r) => setTimeout(r, 2000));
  await startBox(dataDir);
  admin = await login('admin', 'admin-password-1');
  const off = await waitUntil(
    'OFF after the restart',
    () => siren.find((s) => s.at >= opened && s.payload === 'OFF'),
    30_000,
  );
  assert.ok(off.at - opened >= 11_900, `OFF ${off.at - opened} ms after the door`);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(
    siren.filter((s) => s.at >= opened).map((s) => s.payload),
    ['ON', 'OFF'],
  );
  const [trace] = await traces('restart');
  assert.is(trace.result, 'done');
  // The door's state was kept through the restart.
  assert.is(
    (await box.request('GET', '/api/v1/device-states?id=door', { auth: admin })).json.door.contact.value,
    'open',
  );
});

test("the clock: schedules at their minute, sunrise and sunset with an offset at the site's place", () => {
  const facts: Fact[] = [];
  const triggers: Trigger[] = [
    { kind: 'schedule', cron: '30 6 * * *' },
    { kind: 'sun', event: 'sunset', offsetMinutes: -30 },
  ];
  const clock = new AutomationClock(
    () => triggers,
    { latitude: 51.5, longitude: -0.12 },
    (f) => facts.push(f),
    () => {},
  );
  clock.tick(new Date(2026, 5, 21, 6, 30).getTime());
  assert.equal(facts, [{ kind: 'schedule', cron: '30 6 * * *' }]);
  facts.length = 0;
  // London's sunset at midsummer is about 20:21 UTC: 30 min before is about 19:51 UTC.
  let fired: number | undefined;
  for (let m = Date.parse('2026-06-21T19:40:00Z'); m < Date.parse('2026-06-21T20:05:00Z'); m += 60_000) {
    clock.tick(m);
    if (facts.length && fired === undefined) fired = m;
  }
  assert.is(facts.length, 1);
  assert.ok(Math.abs(fired! - Date.parse('2026-06-21T19:51:00Z')) <= 3 * 60_000, new Date(fired!).toISOString());
});

test.run();
