// Review items from the events store's side (the detector's records sent directly): grouping of
// overlapping objects into one item per period of activity, alert or detection by the camera's
// rules, the required zones, what another MQTT client and a phone receive (Debian's
// mosquitto_sub as the other client), marking reviewed, who may see items, and a restart in the
// middle of an item.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { LoggerInstance, ServiceBroker } from 'moleculer';
import mqtt, { type MqttClient } from 'mqtt';
import { Previews } from '../services/events/previews.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import type { ReviewItem } from '../services/events/events.schemas.ts';
import { tempDir, testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { subackOf } from './helpers/mqtt.ts';

let box: TestBox;
let admin: string;
let port: number;
let sub: ChildProcess;
const subLines: string[] = [];
const clients: MqttClient[] = [];
const IDLE_S = 1;

const zone = (name: string) => ({
  name,
  points: [
    [0, 0],
    [0.5, 0],
    [0.5, 1],
    [0, 1],
  ],
});

let seq = 0;
const record = (type: 'start' | 'update' | 'end', id: string, camera: string, label: string, extra: object = {}) =>
  box.broker.call('events.record', {
    type,
    id,
    camera,
    label,
    topScore: 0.5 + (seq++ % 40) / 100,
    box: [0.1, 0.2, 0.3, 0.9],
    zones: [],
    start: new Date(Date.now() - 1000).toISOString(),
    end: type === 'end' ? new Date().toISOString() : null,
    stationary: false,
    ...extra,
  });
const items = async (query = '') => (await box.request('GET', `/api/v1/review${query}`, { auth: admin })).json;
const reviewMessages = (camera: string) =>
  subLines
    .map((l) => {
      const [topic, ...rest] = l.split(' ');
      return { topic: topic!, item: JSON.parse(rest.join(' ')) };
    })
    .filter((m) => m.topic.startsWith(`fogedge/reviews/${camera}/`));

test.before(async () => {
  port = await freePort();
  box = await testBox({
    mqtt: { host: '127.0.0.1', port },
    detector: { reviewIdleSeconds: IDLE_S, reviewMaxSeconds: 3600 },
  });
  admin = await withAdmin(box);
  for (const body of [
    { id: 'yard', name: 'Yard' },
    { id: 'lane', name: 'Lane', detection: { zones: [zone('path'), zone('gate')] }, review: { alertZones: ['path'] } },
    { id: 'shed', name: 'Shed', detection: { zones: [zone('door')] }, review: { requiredZones: ['door'] } },
  ]) {
    const res = await box.request('POST', '/api/v1/cameras', {
      auth: admin,
      body: { enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' }, ...body },
    });
    assert.is(res.status, 201, res.text);
  }
  // Another client, as a homeowner's tool would run it: Debian's mosquitto_sub, signed in as admin.
  sub = spawn('mosquitto_sub', [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-u',
    'admin',
    '-P',
    admin,
    '-v',
    '-t',
    'fogedge/reviews/#',
  ]);
  sub.stdout!.on('data', (d: Buffer) => subLines.push(...d.toString().split('\n').filter(Boolean)));
  await new Promise((r) => setTimeout(r, 500));
});
test.after(async () => {
  sub.kill();
  for (const c of clients) c.end(true);
  await box.stop();
});

test('objects that overlap are one item; it closes once nobody is in view; the next activity is another item', async () => {
  await record('start', 'yard-p1', 'yard', 'person');
  await record('start', 'yard-d1', 'yard', 'dog');
  await record('end', 'yard-p1', 'yard', 'person');
  await record('start', 'yard-p2', 'yard', 'person'); // came while the dog was still there
  await record('end', 'yard-d1', 'yard', 'dog');
  await record('end', 'yard-p2', 'yard', 'person');
  const [first] = await waitUntil('the item closed', async () => {
    const list = await items('?camera=yard');
    return list.length === 1 && list[0].end ? list : undefined;
  });
  assert.equal(
    first.objects.map((o: { event: string }) => o.event),
    ['yard-p1', 'yard-d1', 'yard-p2'],
  );
  assert.equal(first.labels, ['person', 'dog']);
  assert.is(first.severity, 'alert', 'a person is an alert by default');
  assert.is(first.reviewed, false);
  // What another client saw: new, updates, end, all of one item.
  await waitUntil('the end message', () => reviewMessages('yard').some((m) => m.topic.endsWith('/end')));
  const kinds = reviewMessages('yard').map((m) => m.topic.split('/').pop());
  assert.is(kinds[0], 'new');
  assert.is(kinds.at(-1), 'end');
  assert.ok(kinds.includes('update'));
  assert.ok(reviewMessages('yard').every((m) => m.item.id === first.id));
  assert.is(reviewMessages('yard').at(-1)!.item.end, first.end);

  // A dog alone, later: another item, a detection.
  await record('start', 'yard-d2', 'yard', 'dog');
  await record('end', 'yard-d2', 'yard', 'dog');
  const second = await waitUntil('a second item', async () =>
    (await items('?camera=yard')).find((i: { id: string }) => i.id !== first.id),
  );
  assert.is(second.severity, 'detection');
  assert.equal(
    (await items('?camera=yard&severity=alert')).map((i: { id: string }) => i.id),
    [first.id],
  );
  await waitUntil('the second item closed', async () =>
    (await items('?camera=yard')).every((i: { end: string | null }) => i.end),
  );
});

test('alert zones: a person off the path is a detection, an alert once on it; required zones: outside them nothing is reviewed', async () => {
  await record('start', 'lane-p1', 'lane', 'person', { zones: ['gate'] });
  const opened = await waitUntil('the lane item', async () => (await items('?camera=lane'))[0]);
  assert.is(opened.severity, 'detection');
  await record('update', 'lane-p1', 'lane', 'person', { zones: ['gate', 'path'] });
  await waitUntil('an alert now', async () => (await items('?camera=lane'))[0].severity === 'alert');
  await waitUntil('the upgrade on MQTT', () =>
    reviewMessages('lane').some((m) => m.topic.endsWith('/update') && m.item.severity === 'alert'),
  );
  await record('end', 'lane-p1', 'lane', 'person', { zones: ['gate', 'path'] });

  // The shed reviews only what reaches its door.
  await record('start', 'shed-c1', 'shed', 'cat');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await items('?camera=shed'), [], 'not at the door: no item');
  await record('update', 'shed-c1', 'shed', 'cat', { zones: ['door'] });
  await waitUntil('the shed item', async () => (await items('?camera=shed')).length === 1);
  await record('end', 'shed-c1', 'shed', 'cat', { zones: ['door'] });

  // A rule naming a zone the camera does not have is refused, by name.
  const bad = await box.request('PATCH', '/api/v1/cameras/lane', {
    auth: admin,
    body: { review: { alertZones: ['drive'] } },
  });
  assert.is(bad.status, 400, bad.text);
  assert.match(bad.json.error.message, /review\.alertZones names zone "drive".*its zones: path, gate/);
});

test('notifications are per item: two people in one item are one notification', async () => {
  const rules = { enabled: true, rules: [{ cameras: ['yard'], labels: ['person'] }] };
  assert.is((await box.request('PUT', '/api/v1/auth/me/notifications', { auth: admin, body: rules })).status, 200);
  const phone = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'admin',
    password: admin,
    reconnectPeriod: 0,
  });
  clients.push(phone);
  const got: Array<Record<string, any>> = [];
  phone.on('message', (_t, p) => got.push(JSON.parse(p.toString())));
  await phone.subscribeAsync('fogedge/users/admin/notifications', { qos: 1 });
  await record('start', 'yard-c9', 'yard', 'car'); // opens the item; admin asked for people only
  await record('start', 'yard-p8', 'yard', 'person');
  await record('start', 'yard-p9', 'yard', 'person');
  await waitUntil('a notification', () => got.length > 0);
  await new Promise((r) => setTimeout(r, 500));
  assert.is(got.length, 1, 'one notification for the item');
  assert.is(got[0]!.event.id, 'yard-p8', 'naming the object that concerned the user');
  assert.is(got[0]!.title, 'person at Yard');
  assert.equal(got[0]!.review.labels, ['car', 'person']);
  for (const id of ['yard-c9', 'yard-p8', 'yard-p9'])
    await record('end', id, 'yard', id === 'yard-c9' ? 'car' : 'person');
  await waitUntil('all closed', async () => (await items('?camera=yard')).every((i: { end: string | null }) => i.end));
});

test('an event deleted leaves its item, which then shows its next object; the last one takes the item with it', async () => {
  await record('start', 'yard-p30', 'yard', 'person', { topScore: 0.9 });
  await record('start', 'yard-c30', 'yard', 'cat', { topScore: 0.6 });
  await record('end', 'yard-p30', 'yard', 'person', { topScore: 0.9 });
  await record('end', 'yard-c30', 'yard', 'cat', { topScore: 0.6 });
  const item = await waitUntil('the item closed', async () =>
    (await items('?camera=yard')).find(
      (i: { objects: Array<{ event: string }>; end: string | null }) =>
        i.end && i.objects.some((o) => o.event === 'yard-p30'),
    ),
  );
  assert.is(item.thumbnailEvent, 'yard-p30');
  assert.is((await box.request('DELETE', '/api/v1/events/yard-p30', { auth: admin })).status, 200);
  const after = (await box.request('GET', `/api/v1/review/${item.id}`, { auth: admin })).json;
  assert.equal(
    after.objects.map((o: { event: string }) => o.event),
    ['yard-c30'],
  );
  assert.is(after.thumbnailEvent, 'yard-c30');
  assert.is(after.severity, 'detection', 'no person left in it');
  assert.is((await box.request('DELETE', '/api/v1/events/yard-c30', { auth: admin })).status, 200);
  assert.is((await box.request('GET', `/api/v1/review/${item.id}`, { auth: admin })).status, 404);
});

test('marking reviewed: one item, then all up to now of a severity; who may not see items gets nothing', async () => {
  const all = await items();
  assert.ok(all.length >= 4);
  const one = all.find((i: { severity: string }) => i.severity === 'alert');
  const marked = await box.request('POST', '/api/v1/review/reviewed', { auth: admin, body: { ids: [one.id] } });
  assert.equal(marked.json, { marked: 1 });
  assert.is((await box.request('GET', `/api/v1/review/${one.id}`, { auth: admin })).json.reviewed, true);
  const alerts = await box.request('POST', '/api/v1/review/reviewed', {
    auth: admin,
    body: { before: new Date().toISOString(), severity: 'alert' },
  });
  assert.is(alerts.status, 200);
  const left = await items('?reviewed=false');
  assert.ok(
    left.length > 0 && left.every((i: { severity: string }) => i.severity === 'detection'),
    JSON.stringify(left),
  );
  const bad = await box.request('POST', '/api/v1/review/reviewed', { auth: admin, body: { before: 'yesterday' } });
  assert.is(bad.status, 422);

  // No sign-in: nothing; an installer may not see events, nor review items, nor their topics.
  assert.is((await box.request('GET', '/api/v1/review')).status, 401);
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'fitter', password: 'installer-pass-1', role: 'installer' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'fitter', password: 'installer-pass-1' },
  });
  const fitter = box.sessionOf(login.headers)!;
  assert.is((await box.request('GET', '/api/v1/review', { auth: fitter })).status, 403);
  assert.is((await box.request('GET', `/api/v1/review/${one.id}/preview.mp4`, { auth: fitter })).status, 403);
  const installer = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'fitter',
    password: fitter,
    reconnectPeriod: 0,
  });
  clients.push(installer);
  assert.equal(await subackOf(installer, ['fogedge/reviews/#']), [128], 'refused');
});

test('a restart in the middle of an item: it is closed where it was last changed', async () => {
  await record('start', 'yard-p20', 'yard', 'person');
  const open = await waitUntil('an open item', async () =>
    (await items('?camera=yard')).find((i: { end: string | null }) => i.end === null),
  );
  const dataDir = box.dataDir;
  await box.stop({ keepData: true });
  subLines.length = 0;
  box = await testBox({ dataDir, mqtt: { host: '127.0.0.1', port }, detector: { reviewIdleSeconds: IDLE_S } });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'admin', password: 'admin-password-1' },
  });
  admin = box.sessionOf(login.headers)!;
  const after = await box.request('GET', `/api/v1/review/${open.id}`, { auth: admin });
  assert.is(after.status, 200);
  assert.ok(after.json.end !== null, 'closed');
  assert.ok(Date.parse(after.json.end) >= Date.parse(open.start));
});

test('a box that stops while a preview is being made: its ffmpeg is stopped and waited for, nothing is recorded after', async () => {
  // The recorder's side stubbed: a clip whose bytes come slowly, as from a busy disk.
  const slow = new PassThrough();
  const clip = await readFile(DEMO_CLIP);
  let sent = 0;
  const feed = setInterval(() => {
    slow.write(clip.subarray(sent, sent + 16_384));
    sent += 16_384;
  }, 50);
  const recorder = {
    call: async (name: string) => (name === 'recorder.clip' ? { name: 'x.mp4', bytes: clip.length } : slow),
  } as unknown as ServiceBroker;
  const dir = await tempDir();
  const log = { info: () => undefined, warn: () => undefined } as unknown as LoggerInstance;
  const previews = new Previews(recorder, 'ffmpeg', dir, 0, log);
  let made = 0;
  const item = { id: 'yard-x', camera: 'yard', start: new Date(Date.now() - 20_000).toISOString() } as ReviewItem;
  previews.schedule({ ...item, end: new Date().toISOString() }, async () => void made++);
  try {
    await waitUntil('the preview being made', () => sent > 100_000);
    const t0 = Date.now();
    await previews.stop();
    assert.ok(Date.now() - t0 < 3000, 'stopped at once, not after the clip');
    // The rest of the clip arrives: an ffmpeg left running would finish its preview now.
    clearInterval(feed);
    slow.end(clip.subarray(sent));
    await new Promise((r) => setTimeout(r, 4000));
    assert.is(made, 0, 'nothing recorded after the stop');
    assert.equal(await readdir(path.join(dir, 'yard')).catch(() => []), [], 'no preview, no work file left');
  } finally {
    clearInterval(feed);
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
