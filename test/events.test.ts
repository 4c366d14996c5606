// The events store on its own (no detector): what the detector records, the queries, and
// event retention with the snapshots on disk.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';

let box: TestBox;
let admin: string;
const DAY = 86_400_000;
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xd9]).toString('base64');

const record = (id: string, camera: string, startMsAgo: number, extra: object = {}) =>
  box.broker.call('events.record', {
    type: 'start',
    id,
    camera,
    label: 'person',
    topScore: 0.8,
    box: [0.1, 0.2, 0.3, 0.9],
    zones: [],
    start: new Date(Date.now() - startMsAgo).toISOString(),
    end: null,
    stationary: false,
    snapshot: JPEG,
    ...extra,
  });

test.before(async () => {
  box = await testBox({ video: { retentionIntervalSeconds: 1 } });
  admin = await withAdmin(box);
  const add = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: {
      id: 'gate',
      name: 'Gate',
      enabled: false,
      source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' },
      recording: { eventRetainDays: 2 },
    },
  });
  assert.is(add.status, 201, add.text);
});
test.after(() => box.stop());

test("events past their camera's eventRetainDays go with their snapshots; newer ones stay", async () => {
  await record('gate-old', 'gate', 3 * DAY);
  await record('gate-new', 'gate', DAY);
  const snapshot = (id: string) => path.join(box.dataDir, 'snapshots', 'gate', `${id}.jpg`);
  assert.ok(existsSync(snapshot('gate-old')));
  await waitUntil(
    'the old event removed',
    async () => (await box.request('GET', '/api/v1/events/gate-old', { auth: admin })).status === 404,
    10_000,
    200,
  );
  assert.not.ok(existsSync(snapshot('gate-old')));
  assert.is((await box.request('GET', '/api/v1/events/gate-new', { auth: admin })).status, 200);
  assert.ok(existsSync(snapshot('gate-new')));
});

test('an event ends once; a late update does not reopen it; queries by time and label', async () => {
  await record('gate-a', 'gate', 60_000);
  await record('gate-a', 'gate', 60_000, { type: 'end', end: new Date().toISOString() });
  await record('gate-a', 'gate', 60_000, { type: 'update', topScore: 0.9 });
  const e = (await box.request('GET', '/api/v1/events/gate-a', { auth: admin })).json;
  assert.ok(e.end !== null, 'still ended');
  assert.is(e.topScore, 0.9);
  const recent = (
    await box.request('GET', `/api/v1/events?from=${new Date(Date.now() - 120_000).toISOString()}`, { auth: admin })
  ).json;
  assert.equal(
    recent.map((x: { id: string }) => x.id),
    ['gate-a'],
  );
  assert.equal((await box.request('GET', '/api/v1/events?label=car', { auth: admin })).json, []);
});

test('an update (with its snapshot) and the end of one event at once: stored in order, the event stays ended', async () => {
  const big = Buffer.alloc(2 * 1024 * 1024, 0xab).toString('base64'); // a snapshot that takes a while to write
  await record('gate-b', 'gate', 10_000);
  // As the detector sends them when a camera is removed: the last update, then the end, without waiting.
  const update = record('gate-b', 'gate', 10_000, { type: 'update', topScore: 0.95, snapshot: big });
  const end = record('gate-b', 'gate', 10_000, {
    type: 'end',
    topScore: 0.95,
    end: new Date().toISOString(),
    snapshot: undefined,
  });
  await Promise.all([update, end]);
  const e = (await box.request('GET', '/api/v1/events/gate-b', { auth: admin })).json;
  assert.ok(e.end !== null, `the end stays: ${JSON.stringify(e.end)}`);
  assert.is(e.topScore, 0.95);
});

test('events.record checks what it is given: a start missing its label or with a score out of range is refused by field; a partial update of an unknown event stores nothing', async () => {
  const refused = async (params: object) => {
    try {
      await box.broker.call('events.record', params);
    } catch (err) {
      return err as { type: string; data?: Array<{ field: string }> };
    }
    assert.unreachable(`accepted: ${JSON.stringify(params)}`);
  };
  const noLabel = await refused({
    type: 'start',
    id: 'gate-bad-1',
    camera: 'gate',
    topScore: 0.8,
    box: [0, 0, 1, 1],
    zones: [],
    start: new Date().toISOString(),
    end: null,
    stationary: false,
  });
  assert.is(noLabel!.type, 'VALIDATION_ERROR');
  assert.ok(
    noLabel!.data!.some((i) => i.field === 'label'),
    JSON.stringify(noLabel),
  );
  const score = await refused({
    type: 'start',
    id: 'gate-bad-2',
    camera: 'gate',
    label: 'person',
    topScore: 7,
    box: [0, 0, 1, 1],
    zones: [],
    start: new Date().toISOString(),
    end: null,
    stationary: false,
  });
  assert.ok(
    score!.data!.some((i) => i.field === 'topScore'),
    JSON.stringify(score),
  );
  const unknown = await refused({ type: 'update', id: 'gate-never-started', camera: 'gate', snapshot: JPEG });
  assert.is(unknown!.type, 'EVENT_NOT_FOUND', JSON.stringify(unknown));
  assert.not.ok(
    existsSync(path.join(box.dataDir, 'snapshots', 'gate', 'gate-never-started.jpg')),
    'no orphan snapshot',
  );
  for (const id of ['gate-bad-1', 'gate-bad-2', 'gate-never-started'])
    assert.is((await box.request('GET', `/api/v1/events/${id}`, { auth: admin })).status, 404);
});

test.run();
