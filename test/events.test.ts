// The events store on its own (no detector): what the detector records, the queries, and
// event retention with the snapshots on disk.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';

let box: TestBox;
let admin: string;
const DAY = 86_400_000;
const run = promisify(execFile);
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

/** A real 640x360 JPEG of one colour. */
async function pictureOf(colour: string): Promise<Buffer> {
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', '-f', 'lavfi', '-i', `color=c=${colour}:s=640x360`, '-frames:v', '1', '-f', 'mjpeg', 'pipe:1'],
    { encoding: 'buffer' },
  );
  return stdout;
}

/** What a JPEG shows, as a browser would decode it: its size and its average colour. */
async function look(jpeg: Buffer): Promise<{ width: number; rgb: number[] }> {
  const file = path.join(box.dataDir, `look-${Math.random().toString(36).slice(2)}.jpg`);
  await writeFile(file, jpeg);
  const size = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=width', '-of', 'csv=p=0', file]);
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', '-i', file, '-vf', 'scale=1:1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
    { encoding: 'buffer' },
  );
  return { width: Number(size.stdout.trim()), rgb: [...stdout] };
}

test('a better picture is a new version: new ETag and ?v= URL, a revalidated copy is refetched, the thumbnail follows', async () => {
  const [red, blue] = [await pictureOf('red'), await pictureOf('blue')];
  await record('gate-pic', 'gate', 5_000, { snapshot: red.toString('base64') });
  const get = (file: string, headers: Record<string, string> = {}) =>
    box.app.request(`/api/v1/events/gate-pic/${file}`, { headers: { authorization: `Bearer ${admin}`, ...headers } });
  const first = await get('snapshot.jpg');
  assert.is(first.status, 200);
  assert.is(first.headers.get('cache-control'), 'private, no-cache', 'a browser asks again before using its copy');
  const firstTag = first.headers.get('etag')!;
  assert.ok(Buffer.from(await first.arrayBuffer()).equals(red));
  assert.is((await get('snapshot.jpg', { 'if-none-match': firstTag })).status, 304, 'unchanged: 304');
  const thumb = await look(Buffer.from(await (await get('thumbnail.jpg')).arrayBuffer()));
  assert.is(thumb.width, 320);
  assert.ok(thumb.rgb[0]! > 200 && thumb.rgb[2]! < 60, `the thumbnail is the red picture: ${thumb.rgb}`);
  assert.is((await box.request('GET', '/api/v1/events/gate-pic', { auth: admin })).json.snapshotVersion, 1);

  // The detector finds a better frame: the picture, its version, the thumbnail all change.
  await record('gate-pic', 'gate', 5_000, { type: 'update', topScore: 0.9, snapshot: blue.toString('base64') });
  assert.is((await box.request('GET', '/api/v1/events/gate-pic', { auth: admin })).json.snapshotVersion, 2);
  const again = await get('snapshot.jpg', { 'if-none-match': firstTag });
  assert.is(again.status, 200, 'the old copy is stale');
  assert.not.equal(again.headers.get('etag'), firstTag);
  assert.ok(Buffer.from(await again.arrayBuffer()).equals(blue));
  const newThumb = await look(Buffer.from(await (await get('thumbnail.jpg')).arrayBuffer()));
  assert.ok(newThumb.rgb[2]! > 200 && newThumb.rgb[0]! < 60, `the thumbnail is the blue picture: ${newThumb.rgb}`);
  // An update without a picture keeps the version (and the URLs).
  await record('gate-pic', 'gate', 5_000, { type: 'update', topScore: 0.95, snapshot: undefined });
  assert.is((await box.request('GET', '/api/v1/events/gate-pic', { auth: admin })).json.snapshotVersion, 2);
});

test.run();
