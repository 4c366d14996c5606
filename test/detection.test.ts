// Detection end to end: real RTSP cameras (GStreamer) playing the real street clip and a
// still clip, the real ffmpeg, the real ONNX model; events through the API and the bus.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { pictureSize, playable, RtspCamera, stillClip } from './helpers/video.ts';
import { WebSocket } from 'ws';

let box: TestBox;
let admin: string;
const cameras: RtspCamera[] = [];
const busEvents: Array<{ name: string; camera: string; id: string }> = [];
let updates: WebSocket;
const pushed: Array<{ type: string; data: Record<string, any> }> = [];
// The left third of the frame, full height.
const LEFT = [
  [0, 0],
  [0.33, 0],
  [0.33, 1],
  [0, 1],
];

const get = (url: string, auth = admin) => box.request('GET', url, { auth });
const events = async (query = '') => (await get(`/api/v1/events${query}`)).json as Array<Record<string, any>>;

test.before(async () => {
  box = await testBox({
    video: { segmentSeconds: 2, stallSeconds: 5 },
    // Review items of at most 10 s: the looping street is never empty long enough to close one.
    detector: { enabled: true, preRollSeconds: 2, postRollSeconds: 2, reviewMaxSeconds: 10 },
  });
  admin = await withAdmin(box);
  box.broker.createService({
    name: 'bus-spy',
    events: {
      'event.*'(ctx: { eventName: string; params: { camera: string; id: string } }) {
        busEvents.push({ name: ctx.eventName, camera: ctx.params.camera, id: ctx.params.id });
      },
    },
  });
  const port = box.broker.getLocalService('api')!.settings['port'];
  updates = new WebSocket(`ws://127.0.0.1:${port}/api/v1/updates`, { headers: { authorization: `Bearer ${admin}` } });
  updates.on('message', (m) => pushed.push(JSON.parse(m.toString())));
  await new Promise((r) => updates.once('open', r));
  const street = new RtspCamera(await freePort());
  const still = new RtspCamera(await freePort(), { clip: await stillClip() });
  cameras.push(street, still);
  await Promise.all(cameras.map((c) => c.start()));
  const add = (id: string, cam: RtspCamera, detection: object = {}) =>
    box.request('POST', '/api/v1/cameras', {
      auth: admin,
      body: { id, name: id, source: { kind: 'rtsp', url: cam.url() }, detection },
    });
  assert.is((await add('street', street, { labels: ['person'], zones: [{ name: 'left', points: LEFT }] })).status, 201);
  assert.is((await add('still', still)).status, 201);
});
test.after(async () => {
  updates.close();
  await box.stop();
  await Promise.all(cameras.map((c) => c.stop()));
});

test('people walking down the street become person events, on the bus and in the API', async () => {
  const found = await waitUntil(
    'a person event',
    async () => {
      const list = (await events('?camera=street&label=person')).filter((e) => e.hasSnapshot);
      return list.length ? list : undefined;
    },
    40_000,
    500,
  );
  const e = found[0]!;
  assert.is(e.label, 'person');
  assert.ok(e.topScore >= 0.5);
  assert.ok(
    e.box.every((v: number) => v >= 0 && v <= 1),
    'box relative to the frame',
  );
  assert.ok(
    busEvents.some((b) => b.name === 'event.started' && b.id === e.id),
    'event.started on the bus',
  );
  const one = await get(`/api/v1/events/${e.id}`);
  assert.is(one.json.id, e.id);
  // Pushed to signed-in WebSocket clients as it happened, camera status changes too.
  assert.is(pushed[0]!.type, 'hello');
  assert.ok(pushed.some((p) => p.type === 'event.started' && p.data.id === e.id));
  assert.ok(
    pushed.some(
      (p) => p.type === 'camera.status.changed' && p.data.id === 'street' && p.data.status.state === 'online',
    ),
  );
});

test('the snapshot is the best frame, clean or with its box drawn', async () => {
  const [e] = (await events('?camera=street')).filter((x) => x.hasSnapshot);
  const clean = await box.app.request(`/api/v1/events/${e!.id}/snapshot.jpg`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  const boxed = await box.app.request(`/api/v1/events/${e!.id}/snapshot.jpg?boxes=true`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(clean.status, 200);
  assert.is(clean.headers.get('content-type'), 'image/jpeg');
  const [a, b] = [Buffer.from(await clean.arrayBuffer()), Buffer.from(await boxed.arrayBuffer())];
  assert.ok(!a.equals(b), 'the box changes the picture');
  const size = await pictureSize(a);
  assert.is(size, '960,540');
});

test('the still camera: frames are decoded, there is no motion, no inference, no event', async () => {
  const status = await waitUntil(
    'the still camera decoded',
    async () => {
      const s = (await get('/api/v1/detector/status')).json.cameras.still;
      return s && s.frames >= 25 ? s : undefined;
    },
    30_000,
    500,
  );
  assert.is(status.motionFrames, 0);
  assert.is(status.inferences, 0);
  assert.equal(await events('?camera=still'), []);
  // The recordings timeline shows where the picture moved: along the street, nowhere on the still.
  const range = `from=${new Date(Date.now() - 600_000).toISOString()}&to=${new Date(Date.now() + 60_000).toISOString()}`;
  const moved = await waitUntil(
    "the street's motion on its timeline",
    async () => {
      const t = (await get(`/api/v1/cameras/street/timeline?${range}`)).json;
      return t.motion.length > 0 ? t.motion : undefined;
    },
    90_000,
    1000,
  );
  assert.ok(moved.every((r: { start: string; end: string }) => Date.parse(r.end) > Date.parse(r.start)));
  assert.equal((await get(`/api/v1/cameras/still/timeline?${range}`)).json.motion, []);
  const street = (await get('/api/v1/detector/status')).json.cameras.street;
  assert.ok(street.inferences > 0 && street.motionFrames > 0);
  assert.ok(street.inferenceMs > 0);
});

test('a zone over part of the frame gets only the events in it', async () => {
  const all = await waitUntil(
    'several street events',
    async () => {
      const list = await events('?camera=street');
      return list.length >= 4 && list.some((e) => e.zones.includes('left')) ? list : undefined;
    },
    40_000,
    500,
  );
  const inZone = await events('?camera=street&zone=left');
  assert.ok(inZone.length > 0 && inZone.length < all.length, `${inZone.length} of ${all.length} in the zone`);
  assert.ok(inZone.every((e) => e.zones.includes('left')));
  assert.ok(all.filter((e) => !e.zones.includes('left')).every((e) => !inZone.some((z) => z.id === e.id)));
});

test('an ended event has a clip from the recordings with pre- and post-roll', async () => {
  const ended = await waitUntil(
    'an event ended a while ago',
    async () => (await events('?camera=street')).find((e) => e.end && Date.now() - Date.parse(e.end) > 8000),
    60_000,
    1000,
  );
  const res = await box.app.request(`/api/v1/events/${ended.id}/clip.mp4`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(res.status, 200, await res.clone().text());
  const file = path.join(box.dataDir, 'event.mp4');
  await writeFile(file, Buffer.from(await res.arrayBuffer()));
  const { seconds, codec } = await playable(file);
  assert.is(codec, 'h264');
  const lasted = (Date.parse(ended.end) - Date.parse(ended.start)) / 1000;
  assert.ok(seconds >= lasted + 2, `clip ${seconds} s for an event of ${lasted} s plus roll`);
});

test("the street's activity is a few review items, not an item per person; each closed one has a preview that plays", async () => {
  const withPreview = await waitUntil(
    'a review item with its preview',
    async () => {
      const list = (await get('/api/v1/review?camera=street')).json as Array<Record<string, any>>;
      return list.find((i) => i.hasPreview);
    },
    60_000,
    1000,
  );
  assert.ok(withPreview.objects.length >= 2, `${withPreview.objects.length} objects in one item`);
  assert.is(withPreview.severity, 'alert', 'people are alerts by default');
  const items = (await get('/api/v1/review?camera=street')).json as Array<Record<string, any>>;
  const inItems = new Set(items.flatMap((i) => i.objects.map((o: { event: string }) => o.event)));
  assert.ok(items.length < inItems.size, `${items.length} items for ${inItems.size} events`);
  const res = await box.app.request(`/api/v1/review/${withPreview.id}/preview.mp4`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(res.status, 200);
  const file = path.join(box.dataDir, 'preview.mp4');
  await writeFile(file, Buffer.from(await res.arrayBuffer()));
  const { seconds, codec, width } = await playable(file);
  assert.is(codec, 'h264');
  assert.is(width, 320, 'small');
  assert.ok(seconds > 0.5 && seconds <= 10.5, `${seconds} s`);
});

test('review, filter by review state, delete; the installer may not see events', async () => {
  const [e] = await events('?camera=street');
  const reviewed = await box.request('POST', `/api/v1/events/${e!.id}/review`, {
    auth: admin,
    body: { reviewed: true },
  });
  assert.is(reviewed.json.reviewed, true);
  assert.not.ok((await events('?camera=street&reviewed=false')).some((x) => x.id === e!.id));
  assert.is((await box.request('DELETE', `/api/v1/events/${e!.id}`, { auth: admin })).status, 200);
  assert.is((await get(`/api/v1/events/${e!.id}`)).status, 404);
  assert.is((await get('/api/v1/events?limit=0')).status, 422);
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'fitter', password: 'installer-pass-1', role: 'installer' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'fitter', password: 'installer-pass-1' },
  });
  const installer = box.sessionOf(login.headers)!;
  assert.is((await get('/api/v1/events', installer)).status, 403);
  // ... nor get them pushed: only camera updates reach the installer's socket.
  const port = box.broker.getLocalService('api')!.settings['port'];
  const theirs = new WebSocket(`ws://127.0.0.1:${port}/api/v1/updates`, {
    headers: { authorization: `Bearer ${installer}` },
  });
  const got: string[] = [];
  theirs.on('message', (m) => got.push(JSON.parse(m.toString()).type));
  await new Promise((r) => theirs.once('open', r));
  const before = pushed.length;
  await waitUntil(
    'more events pushed to the admin',
    () => pushed.slice(before).some((p) => p.type.startsWith('event.')),
    20_000,
  );
  await box.request('PATCH', '/api/v1/cameras/still', { auth: admin, body: { name: 'Still life' } });
  await waitUntil('the camera change pushed to the installer', () => got.includes('camera.updated'), 5000);
  assert.not.ok(
    got.some((t) => t.startsWith('event.')),
    `the installer got ${got.join(', ')}`,
  );
  theirs.close();
  const anonymous = new WebSocket(`ws://127.0.0.1:${port}/api/v1/updates`);
  const status = await new Promise((r) => anonymous.once('unexpected-response', (_q, res) => r(res.statusCode)));
  assert.is(status, 401);
  assert.is((await get('/api/v1/events')).status, 200);
});

test('a camera that stalls mid-event: its open events end where the objects were last seen', async () => {
  await waitUntil(
    'an open street event',
    async () => (await events('?camera=street')).some((e) => e.end === null),
    30_000,
    500,
  );
  cameras[0]!.pause(); // the camera keeps its connection open and sends nothing
  try {
    await waitUntil(
      'every street event ended',
      async () => (await events('?camera=street')).every((e) => e.end !== null),
      20_000,
      500,
    );
  } finally {
    cameras[0]!.resume();
  }
});

test('a camera removed mid-event: its open events end', async () => {
  await waitUntil(
    'an open street event',
    async () => (await events('?camera=street')).some((e) => e.end === null),
    30_000,
    500,
  );
  assert.is((await box.request('DELETE', '/api/v1/cameras/street', { auth: admin })).status, 200);
  await waitUntil(
    'every street event ended',
    async () => (await events('?camera=street')).every((e) => e.end !== null),
    15_000,
    500,
  );
});

test.run();
