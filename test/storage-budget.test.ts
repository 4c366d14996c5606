// One storage budget over what the box writes, on a small filesystem this test mounts (tmpfs, as
// root): clips are a cache made once per range, given up before any recording, and a disk that
// fills is reported as full. A real RTSP camera records into it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { playable, RtspCamera } from './helpers/video.ts';
import { Operator, OperatorBroker } from './helpers/operator.ts';

const MiB = 1024 * 1024;
const FLOOR = 24 * MiB;
let mountDir = '';
let box: TestBox;
let admin = '';
let camera: RtspCamera;
let adm: OperatorBroker;
let operator: Operator;

const freeBytes = () => {
  const out = execFileSync('df', ['--output=avail', '-B1', mountDir], { encoding: 'utf8' });
  return Number(out.trim().split('\n').pop());
};
/** A file of another program that takes the disk's space, leaving `leave` bytes free. */
const fillTo = async (leave: number, name: string) => {
  const bytes = Math.max(0, freeBytes() - leave);
  await writeFile(path.join(mountDir, name), Buffer.alloc(bytes, 1));
};
const segments = async () => {
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const res = await box.request('GET', `/api/v1/cameras/yard/segments?from=${from}&to=${new Date().toISOString()}`, {
    auth: admin,
  });
  return res.json as Array<{ start: string; end: string; path: string }>;
};
const clipUrl = (from: number, to: number) =>
  `/api/v1/cameras/yard/clip.mp4?from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
const health = () => box.request('GET', '/api/v1/health');
const clipFiles = async () => (await readdir(path.join(mountDir, 'data', 'clips')).catch(() => [] as string[])).sort();

test.before(async () => {
  mountDir = await tempDir('fogedge-small-disk-');
  // A small disk of its own: the budget is tried for real, not on this machine's big one.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', mountDir]);
  await mkdir(path.join(mountDir, 'data'));
  camera = new RtspCamera(await freePort());
  await camera.start();
  // The operator's broker: the fleet must hear of a full disk at once, not at the next sample.
  adm = await OperatorBroker.start({ 'box-d': 'box-secret-d', platform: 'platform-secret-d' });
  operator = await Operator.connect(adm.url, 'platform', 'platform-secret-d', 'fogedge/boxes/box-d');
  box = await testBox({
    dataDir: path.join(mountDir, 'data'),
    video: { segmentSeconds: 2, minFreeBytes: FLOOR, retentionIntervalSeconds: 1, clipCacheBytes: MiB },
    admp: { telemetrySeconds: 3600, reconnectMs: 200, reconnectMaxMs: 1000 },
  });
  admin = await withAdmin(box);
  const provisioned = await box.request('PUT', '/api/v1/admp/provisioning', {
    auth: admin,
    body: { url: adm.url, boxId: 'box-d', username: 'box-d', password: 'box-secret-d' },
  });
  assert.is(provisioned.status, 200, provisioned.text);
  const add = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'yard', name: 'Yard', source: { kind: 'rtsp', url: camera.url() } },
  });
  assert.is(add.status, 201, add.text);
  await waitUntil('4 segments recorded', async () => (await segments()).length >= 4, 40_000, 250);
});

test.after(async () => {
  await box?.stop({ keepData: true });
  await camera?.stop();
  await operator?.close();
  await adm?.stop();
  execFileSync('umount', ['--lazy', mountDir]); // lazy: a process still closing its files must not fail the run
  await rm(mountDir, { recursive: true, force: true });
});

test('eight requests for the same clip at once: one clip made, every answer the same, decodes clean, no work files left', async () => {
  const list = await segments();
  const from = Date.parse(list[1]!.start);
  const to = from + 2500;
  const answers = await Promise.all(
    Array.from({ length: 8 }, () =>
      box.app.request(clipUrl(from, to), { headers: { authorization: `Bearer ${admin}` } }),
    ),
  );
  const bodies = await Promise.all(
    answers.map(async (r) => ({ status: r.status, body: Buffer.from(await r.arrayBuffer()) })),
  );
  assert.equal(
    bodies.map((b) => b.status),
    Array(8).fill(200),
  );
  const hashes = new Set(bodies.map((b) => createHash('sha256').update(b.body).digest('hex')));
  assert.is(hashes.size, 1, 'every answer the same bytes');
  const file = path.join(await tempDir(), 'clip.mp4');
  await writeFile(file, bodies[0]!.body);
  const info = await playable(file); // throws on any decoding error
  assert.ok(info.seconds >= 1.5, `plays ${info.seconds} s`);
  assert.is((await clipFiles()).length, 1, `one clip in the cache: ${await clipFiles()}`);
});

test('a clip larger than the clip cache is refused with the reason (507), and nothing is written', async () => {
  const list = await segments();
  const res = await box.request('GET', clipUrl(Date.parse(list[0]!.start), Date.parse(list.at(-1)!.end)), {
    auth: admin,
  });
  assert.is(res.status, 507, res.text);
  assert.is(res.json.error.type, 'CLIP_TOO_LARGE');
  assert.match(res.json.error.message, /clip cache/);
  assert.is((await clipFiles()).length, 1);
});

test('Range: a suffix longer than the file gets the whole file (RFC 9110), "-0" gets 416', async () => {
  const list = await segments();
  const from = Date.parse(list[1]!.start);
  const url = clipUrl(from, from + 2500);
  const whole = await box.app.request(url, { headers: { authorization: `Bearer ${admin}` } });
  const size = Number(whole.headers.get('content-length'));
  assert.is((await whole.arrayBuffer()).byteLength, size);
  const suffix = await box.app.request(url, {
    headers: { authorization: `Bearer ${admin}`, range: `bytes=-${size * 10}` },
  });
  assert.is(suffix.status, 206);
  assert.is(suffix.headers.get('content-range'), `bytes 0-${size - 1}/${size}`);
  assert.is((await suffix.arrayBuffer()).byteLength, size);
  assert.is(
    (await box.app.request(url, { headers: { authorization: `Bearer ${admin}`, range: 'bytes=-0' } })).status,
    416,
  );
});

test('under the free-space floor, cached clips go before any recording; a disk nothing can free is reported full, and recovers', async () => {
  const before = await segments();
  assert.is((await clipFiles()).length, 1);
  // Another program takes the space: the disk drops under its floor by less than the clip takes.
  // The camera is paused meanwhile, so that only the test moves the free space.
  camera.pause();
  await new Promise((r) => setTimeout(r, 500));
  const clipBytes = (await box.request('GET', '/api/v1/system/storage', { auth: admin })).json.clipsBytes;
  assert.ok(clipBytes > 100 * 1024, `a clip of ${clipBytes} bytes`);
  await fillTo(FLOOR - Math.round(clipBytes / 2), 'other-program-a');
  await waitUntil('the clip given up', async () => (await clipFiles()).length === 0, 15_000, 200);
  await new Promise((r) => setTimeout(r, 1500)); // a retention round or more after
  const after = await segments();
  camera.resume();
  assert.is(after.length, before.length, 'no recording went: the clip went instead');
  assert.is((await health()).status, 200);

  // Now nothing the box may delete brings it back over the floor.
  await fillTo(FLOOR - 4 * MiB, 'other-program-b');
  const full = await waitUntil(
    'health says disk full',
    async () => {
      const h = await health();
      return h.status === 503 && JSON.stringify(h.json).includes('disk full') ? h : undefined;
    },
    20_000,
    250,
  );
  const recorder = full.json.services.find((s: { name: string }) => s.name === 'recorder');
  assert.is(recorder.status, 'degraded');
  assert.match(recorder.instances[0].error, /disk full: \d+ bytes free, under the floor/);
  assert.is((await box.request('GET', '/api/v1/system/storage', { auth: admin })).json.diskFull, true);
  // The operator hears it now (telemetry is hourly here), with the reason.
  const sample = await operator.waitFor(
    'a health sample saying disk full',
    'health',
    (b) => b.services?.problems?.some((p: { error: string }) => /disk full/.test(p.error)),
    10_000,
  );
  assert.is(sample.services.problems.find((p: { service: string }) => p.service === 'recorder')?.service, 'recorder');
  const refused = await box.request('GET', clipUrl(Date.now() - 6000, Date.now() - 5000), { auth: admin });
  assert.ok([404, 507].includes(refused.status), `a clip now: ${refused.status} ${refused.text}`);

  await rm(path.join(mountDir, 'other-program-a'));
  await rm(path.join(mountDir, 'other-program-b'));
  await waitUntil('health back to ok', async () => (await health()).status === 200, 20_000, 250);
  assert.is((await box.request('GET', '/api/v1/system/storage', { auth: admin })).json.diskFull, false);
  await waitUntil(
    'recording again',
    async () => (await segments()).some((s) => Date.parse(s.end) > Date.now() - 6000),
    30_000,
    250,
  );
});

test.run();
