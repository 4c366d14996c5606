// Retention on real files and a real LevelDB index; then a live camera under a small quota.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Store } from '../lib/store.ts';
import { SegmentIndex } from '../services/recorder/segment-index.ts';
import type { Segment } from '../services/recorder/recorder.schemas.ts';
import { DiskWatch } from '../services/recorder/disk-watch.ts';
import { Retention } from '../services/recorder/retention.ts';
import { seenRanges } from '../services/recorder/seen-ranges.ts';
import { CameraInput } from '../services/cameras/cameras.schemas.ts';
import { CAMERA_MOTION } from '../services/events/events.schemas.ts';
import { testBox, tempDir, withAdmin } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { RtspCamera } from './helpers/video.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-11-22T12:00:00Z');

async function fixture() {
  const dir = await tempDir();
  const media = path.join(dir, 'media');
  const store = await Store.open(path.join(dir, 'db'));
  const index = new SegmentIndex(store.collection<Segment>('segments'));
  const add = async (camera: string, start: number, bytes = 1000) => {
    const day = new Date(start).toISOString().slice(0, 10);
    const name = `${new Date(start).toISOString().slice(0, 19).replace(/:/g, '-')}-run.mp4`;
    await mkdir(path.join(media, camera, day), { recursive: true });
    await writeFile(path.join(media, camera, day, name), Buffer.alloc(bytes));
    const s: Segment = { camera, path: path.join(camera, day, name), start, end: start + 10_000, bytes };
    await index.add(s);
    return s;
  };
  const done = async () => (await store.close(), await rm(dir, { recursive: true, force: true }));
  return { media, index, add, done };
}

test('by age: each camera keeps its own number of days; removed cameras get the default', async () => {
  const f = await fixture();
  const old = await f.add('front', NOW - 3 * DAY);
  const recent = await f.add('front', NOW - 1 * DAY);
  const yard = await f.add('yard', NOW - 3 * DAY);
  const gone = await f.add('removed', NOW - 8 * DAY);
  const days: Record<string, number> = { front: 2, yard: 30 };
  const retention = new Retention(f.index, f.media, {
    retainDays: (c) => days[c] ?? 7,
    quotaBytes: null,
    minFreeBytes: 0,
  });
  const r = await retention.run(NOW);
  assert.is(r.byAge, 2);
  assert.not.ok(existsSync(path.join(f.media, old.path)));
  assert.not.ok(existsSync(path.join(f.media, gone.path)));
  assert.ok(existsSync(path.join(f.media, recent.path)));
  assert.ok(existsSync(path.join(f.media, yard.path)));
  assert.equal(await f.index.cameras(), ['front', 'yard']);
  await f.done();
});

test('events mode: only footage around events (with their roll) stays, once no event can claim it any more', async () => {
  const f = await fixture();
  const MIN = 60_000;
  const before = await f.add('porch', NOW - 50 * MIN);
  const during = await f.add('porch', NOW - 40 * MIN);
  const after = await f.add('porch', NOW - 30 * MIN);
  const justNow = await f.add('porch', NOW - 30_000); // an event may still claim it
  const asked: Array<[number, number]> = [];
  const retention = new Retention(f.index, f.media, {
    retainDays: () => 7,
    eventRetainDays: () => 30,
    eventsOnly: (c) => c === 'porch',
    eventClaimMs: 2 * MIN,
    eventRanges: async (_c, from, to) => (asked.push([from, to]), [[NOW - 40 * MIN - 5000, NOW - 40 * MIN + 3000]]),
    quotaBytes: null,
    minFreeBytes: 0,
  });
  const r = await retention.run(NOW);
  assert.is(r.byAge, 2);
  assert.not.ok(existsSync(path.join(f.media, before.path)));
  assert.ok(existsSync(path.join(f.media, during.path)), 'the segment with the event stays');
  assert.not.ok(existsSync(path.join(f.media, after.path)));
  assert.ok(existsSync(path.join(f.media, justNow.path)), 'recent footage waits: an event may still claim it');
  assert.ok(asked.every(([from, to]) => from <= before.start && to >= after.end));
  await f.done();
});

test('continuous mode: footage around events is kept for eventRetainDays; unknown events keep everything', async () => {
  const f = await fixture();
  const withEvent = await f.add('yard', NOW - 3 * DAY);
  const plain = await f.add('yard', NOW - 3 * DAY + 60_000);
  const tooOld = await f.add('yard', NOW - 31 * DAY);
  const policy = {
    retainDays: () => 2,
    eventRetainDays: () => 30,
    eventRanges: async (): Promise<Array<[number, number]>> => [
      [withEvent.start, withEvent.end],
      [tooOld.start, tooOld.end],
    ],
    quotaBytes: null,
    minFreeBytes: 0,
  };
  assert.is((await new Retention(f.index, f.media, policy).run(NOW)).byAge, 2);
  assert.ok(existsSync(path.join(f.media, withEvent.path)));
  assert.not.ok(existsSync(path.join(f.media, plain.path)));
  assert.not.ok(existsSync(path.join(f.media, tooOld.path)), 'past eventRetainDays even with an event');
  // The events service unreachable: nothing goes by age before eventRetainDays.
  const kept = await f.add('yard', NOW - 4 * DAY);
  assert.is(
    (await new Retention(f.index, f.media, { ...policy, eventRanges: async () => undefined }).run(NOW)).byAge,
    0,
  );
  assert.ok(existsSync(path.join(f.media, kept.path)));
  await f.done();
});

test('retention by what was seen: alerts, detections, motion and plain footage each keep their own days', async () => {
  const f = await fixture();
  const at = (days: number, offsetMs = 0) => f.add('drive', NOW - days * DAY + offsetMs);
  // Footage 10, 45 and 70 days old, each with an alert, a detection, the camera's motion, or nothing.
  const cases = [] as Array<{ segment: Awaited<ReturnType<typeof at>>; kind: string; age: number }>;
  for (const age of [10, 45, 70])
    for (const [i, kind] of ['alert', 'detection', 'motion', 'plain'].entries())
      cases.push({ segment: await at(age, i * 60_000), kind, age });
  const days: Record<string, number> = { alert: 60, detection: 30, motion: 5 };
  const policy = {
    retainDays: () => 2,
    eventRetainDays: () => 30,
    eventRanges: async () =>
      cases
        .filter((c) => c.kind !== 'plain')
        .map((c) => [c.segment.start, c.segment.end, days[c.kind]!] as [number, number, number]),
    quotaBytes: null,
    minFreeBytes: 0,
  };
  await new Retention(f.index, f.media, policy).run(NOW);
  const kept = cases.filter((c) => existsSync(path.join(f.media, c.segment.path))).map((c) => `${c.kind} ${c.age}`);
  assert.equal(kept, ['alert 10', 'detection 10', 'alert 45']);
  await f.done();
});

test('the disk watch: retention runs at once when the disk fills fast or is under its floor, and not in a loop when nothing frees', async () => {
  const MB = 1_000_000;
  let free = 1000 * MB;
  const runs: number[] = [];
  let frees = 10 * MB;
  const watch = new DiskWatch({
    freeBytes: async () => free,
    floorBytes: 100 * MB,
    regularMs: 60_000,
    runNow: async () => (runs.push(free), frees),
  });
  assert.not.ok(await watch.check(0), 'plenty of room');
  free = 990 * MB;
  assert.not.ok(await watch.check(2000), '5 MB/s: the regular run is early enough');
  free = 700 * MB;
  assert.ok(await watch.check(4000), '145 MB/s: the floor would be crossed before the next regular run');
  free = 50 * MB; // under the floor, and nothing of ours left to free
  frees = 0;
  assert.ok(await watch.check(6000));
  assert.not.ok(await watch.check(8000), 'it freed nothing: not again before the next regular run');
  assert.not.ok(await watch.check(60_000));
  assert.ok(await watch.check(66_001), 'a minute later it tries again');
  assert.equal(runs.length, 3);
});

test('by quota: the oldest of any camera goes first until the recordings fit', async () => {
  const f = await fixture();
  const a = await f.add('a', NOW - 5000_000, 4000);
  const b = await f.add('b', NOW - 4000_000, 4000);
  const c = await f.add('a', NOW - 3000_000, 4000);
  const d = await f.add('b', NOW - 2000_000, 4000);
  assert.is(await f.index.totalBytes(), 16_000);
  const retention = new Retention(f.index, f.media, { retainDays: () => 30, quotaBytes: 9000, minFreeBytes: 0 });
  const r = await retention.run(NOW);
  assert.is(r.bySpace, 2);
  assert.is(r.bytesFreed, 8000);
  assert.is(await f.index.totalBytes(), 8000);
  // What each camera's recordings take (the System page), kept up to date as segments go.
  assert.equal(await f.index.usage(), {
    a: { bytes: 4000, segments: 1, oldest: c.start, archivedBytes: 0 },
    b: { bytes: 4000, segments: 1, oldest: d.start, archivedBytes: 0 },
  });
  for (const [s, kept] of [
    [a, false],
    [b, false],
    [c, true],
    [d, true],
  ] as const) {
    assert.is(existsSync(path.join(f.media, s.path)), kept, s.path);
  }
  await f.done();
});

test('recordings waiting to go up to the cloud stay past their days and over the quota, but not below the free-space floor', async () => {
  const f = await fixture();
  const old = await f.add('a', NOW - 40 * DAY, 4000);
  const next = await f.add('a', NOW - 3000_000, 4000);
  const newest = await f.add('a', NOW - 2000_000, 4000);
  const pinned = async () => new Set([old.path, next.path]);
  const kept = await new Retention(f.index, f.media, {
    retainDays: () => 30,
    quotaBytes: 5000,
    minFreeBytes: 0,
    pinned,
  }).run(NOW);
  assert.equal(
    kept,
    { byAge: 0, bySpace: 0, moved: 0, bytesFreed: 0, reclaimedBytes: 0, diskFull: false },
    'the oldest is pinned: nothing goes for age or quota',
  );
  // Below the floor, the disk comes first: pinned or not, the oldest go.
  const free = async () => 1000 + (12_000 - (await f.index.totalBytes()));
  const r = await new Retention(
    f.index,
    f.media,
    { retainDays: () => 30, quotaBytes: null, minFreeBytes: 8000, pinned },
    free,
  ).run(NOW);
  assert.is(r.bySpace, 2);
  assert.equal(
    (await f.index.list('a', 0, NOW)).map((s) => s.path),
    [newest.path],
  );
  await f.done();
});

test('by free space: oldest go until the floor is met (disk reading injected: a real disk cannot be filled here)', async () => {
  const f = await fixture();
  const all: Segment[] = [];
  for (let i = 0; i < 5; i++) all.push(await f.add('cam', NOW - (10 - i) * 60_000, 1000));
  // The pretend disk has 2000 bytes free, plus whatever retention deletes.
  const free = async () => 2000 + (5000 - (await f.index.totalBytes()));
  const r = await new Retention(
    f.index,
    f.media,
    { retainDays: () => 30, quotaBytes: null, minFreeBytes: 4500 },
    free,
  ).run(NOW);
  assert.is(r.bySpace, 3, 'three deletions bring 2000 free bytes to 5000 >= 4500');
  assert.equal(
    (await f.index.list('cam', 0, NOW)).map((s) => s.path),
    all.slice(3).map((s) => s.path),
  );
  await f.done();
});

test('what was seen sets the days: alerts, detections, motion with no object, plain footage', async () => {
  const recording = CameraInput.parse({
    id: 'c',
    name: 'c',
    source: { kind: 'rtsp', url: 'rtsp://camera.invalid/s' },
    recording: { retainDays: 2, eventRetainDays: 10, alertRetainDays: 40, motionRetainDays: 5 },
  }).recording;
  const iso = (t: number) => new Date(t).toISOString();
  const seen = {
    events: [
      { id: 'alert-1', label: 'person', start: iso(NOW - 100_000), end: iso(NOW - 90_000) },
      { id: 'det-1', label: 'dog', start: iso(NOW - 80_000), end: iso(NOW - 70_000) },
      { id: 'cam-m-1', label: CAMERA_MOTION, start: iso(NOW - 60_000), end: null },
    ],
    items: [
      {
        objects: [
          { event: 'alert-1', label: 'person', zones: [], severity: 'alert' as const, topScore: 0.9 },
          { event: 'det-1', label: 'dog', zones: [], severity: 'detection' as const, topScore: 0.7 },
        ],
      },
    ],
    motion: [{ camera: 'c', start: NOW - 50_000, end: NOW - 40_000 }],
    recording,
    preRollMs: 5000,
    postRollMs: 3000,
    now: NOW,
  };
  assert.equal(seenRanges(seen), [
    [NOW - 105_000, NOW - 87_000, 40],
    [NOW - 85_000, NOW - 67_000, 10],
    [NOW - 65_000, NOW + 3000, 5],
    [NOW - 50_000, NOW - 37_000, 5],
  ]);
  // Without their own days: alerts as detections, motion as plain footage (no range of its own).
  const plain = { ...recording, alertRetainDays: null, motionRetainDays: null };
  assert.equal(
    seenRanges({ ...seen, recording: plain }).map((r) => r[2]),
    [10, 10, 2],
  );
  // A camera no longer on the box: ranges without days (its footage is kept as if it had events).
  assert.equal(
    seenRanges({ ...seen, recording: undefined }).map((r) => r.length),
    [2, 2, 2],
  );
});

test('a live camera under a small quota: the recordings stay within it and the newest are kept', async () => {
  const cam = new RtspCamera(await freePort());
  await cam.start();
  const quota = 2 * 1024 * 1024;
  const box = await testBox({ video: { segmentSeconds: 2, quotaBytes: quota, retentionIntervalSeconds: 1 } });
  const admin = await withAdmin(box);
  await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'q', name: 'Quota', source: { kind: 'rtsp', url: cam.url() } },
  });
  const media = path.join(box.dataDir, 'media', 'q');
  const sizeOnDisk = async () => {
    let sum = 0;
    for (const f of await readdir(media, { recursive: true }))
      if (f.endsWith('.mp4')) sum += (await stat(path.join(media, f))).size;
    return sum;
  };
  const from = new Date(Date.now() - 60_000).toISOString();
  // ~400 KB a segment at this bitrate: 2 MiB is passed after ~10 s.
  await waitUntil(
    'retention to remove the first segments',
    async () => {
      const r = await box.request(
        'GET',
        `/api/v1/cameras/q/timeline?from=${from}&to=${new Date(Date.now() + 60_000).toISOString()}`,
        { auth: admin },
      );
      return r.json.ranges.length === 1 && Date.parse(r.json.ranges[0].start) > Date.parse(from) + 60_000 + 4000;
    },
    40_000,
    500,
  );
  // One open segment may be on disk beyond what the index counts.
  assert.ok((await sizeOnDisk()) < quota + 1024 * 1024, `on disk: ${await sizeOnDisk()} bytes`);
  const status = (await box.request('GET', '/api/v1/cameras/q', { auth: admin })).json.status;
  assert.is(status.state, 'online', 'recording goes on');
  await box.stop();
  await cam.stop();
});

test.run();
