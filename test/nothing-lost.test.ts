// Nothing lost, nothing leaked: what the household recorded reaches the cloud across stops and
// services coming and going, and goes nowhere the household did not choose. Real s3rver, real
// ffmpeg segments, the in-process box restarted over the same data folder.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import mqtt from 'mqtt';
import { mkdir, utimes, writeFile, readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { S3rver, sha256 } from './helpers/storage.ts';
import { playable } from './helpers/video.ts';
import { dayDir } from '../appliance/data-dir.ts';
import { SERVICE_FACTORIES } from '../gateway/services.ts';

let s3: S3rver;
test.before(async () => {
  s3 = await S3rver.create(await tempDir(), 'fogedge');
});
test.after(() => s3.stop());

type SyncStatus = { waitingFor: string[]; queue: { items: number } };
const syncStatus = (box: TestBox) => box.broker.call('sync.status') as Promise<SyncStatus>;

/** A real recorded segment as the recorder writes them (fragmented MP4), named by its start, old enough to be healed. */
async function writeSegment(dataDir: string, camera: string, start: number, seconds: number): Promise<string> {
  const iso = new Date(start).toISOString();
  const rel = path.join(camera, dayDir(start), `${iso.slice(0, 10)}T${iso.slice(11, 19).replace(/:/g, '-')}-t1.mp4`);
  const file = path.join(dataDir, 'media', rel);
  await mkdir(path.dirname(file), { recursive: true });
  execFileSync('ffmpeg', [
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    `testsrc=size=320x240:rate=10:duration=${seconds}`,
    '-c:v',
    'libx264',
    '-g',
    '10',
    '-pix_fmt',
    'yuv420p',
    '-movflags',
    '+frag_keyframe+empty_moov+default_base_moof',
    '-f',
    'mp4',
    file,
  ]);
  const old = new Date(Date.now() - 120_000);
  await utimes(file, old, old); // not "busy": the recorder that wrote it is gone
  return rel;
}

/** Bytes of the files under a folder (LevelDB's log and tables). */
const dirBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, e) => sum + (e.isDirectory() ? dirBytes(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).size),
    0,
  );

const eventBase = (id: string, camera: string, start: string) => ({
  id,
  camera,
  label: 'person',
  topScore: 0.8,
  box: [0.1, 0.1, 0.5, 0.9],
  zones: [],
  start,
  stationary: false,
});

test('an event left open by a stop ends at the next start and reaches the bucket; a segment a crash cut short goes up too', async () => {
  const dataDir = await tempDir();
  const config = { dataDir, sync: { boxId: 'nl1', retryMinMs: 200, retryMaxMs: 1000 } };
  let box = await testBox(config);
  await box.broker.call('sync.addTarget', s3.target('s3'));
  await box.broker.call('sync.setPolicy', { resources: ['events', 'recordings'] });
  const start = new Date(Date.now() - 5000).toISOString();
  await box.broker.call('events.record', { ...eventBase('porch-open-1', 'porch', start), type: 'start', end: null });
  await box.stop({ keepData: true });

  // While the box was down, the recorder's last segment was cut short (no "closed" event for it).
  const rel = await writeSegment(dataDir, 'porch', Date.now() - 60_000, 3);
  box = await testBox(config);
  try {
    const eventJson = `nl1/porch/${start.slice(0, 10)}/porch-open-1/event.json`;
    await waitUntil('the ended event in the bucket', async () => (await s3.list(eventJson)).length === 1, 20_000, 200);
    const stored = JSON.parse((await s3.download(eventJson)).toString());
    assert.is(stored.id, 'porch-open-1');
    assert.type(stored.end, 'string', 'uploaded as ended');
    const recording = `nl1/porch/${dayDir(Date.now() - 60_000)}/recordings/${path.basename(rel)}`;
    await waitUntil(
      'the healed segment in the bucket',
      async () => (await s3.list(recording)).length === 1,
      20_000,
      200,
    );
    const original = await import('node:fs/promises').then((fs) => fs.readFile(path.join(dataDir, 'media', rel)));
    assert.is(sha256(await s3.download(recording)), sha256(original), 'the same bytes as on the box');
    // A third start uploads nothing twice: the event was handed over once.
    await box.stop({ keepData: true });
    box = await testBox(config);
    await new Promise((r) => setTimeout(r, 1500));
    assert.is((await syncStatus(box)).queue.items, 0, 'nothing re-enqueued');
  } finally {
    await box.stop();
  }
});

test('event clips wait for a recorder that is not there yet (status says so), and go up when it comes', async () => {
  const box = await testBox({
    video: { segmentSeconds: 1 },
    detector: { preRollSeconds: 1, postRollSeconds: 1 },
    sync: { boxId: 'nl2', retryMinMs: 200, retryMaxMs: 1000 },
  });
  try {
    await box.broker.call('sync.addTarget', s3.target('s3'));
    await box.broker.call('sync.setPolicy', { resources: ['events', 'clips'] });
    // The recorder's node is away (restarting, or not started yet).
    await box.broker.destroyService(box.broker.getLocalService('recorder')!);
    const t0 = Math.floor(Date.now() / 1000) * 1000 - 20_000;
    await writeSegment(box.dataDir, 'gate', t0, 6);
    const start = new Date(t0 + 2000).toISOString();
    await box.broker.call('events.record', { ...eventBase('gate-1', 'gate', start), type: 'start', end: null });
    await box.broker.call('events.record', {
      ...eventBase('gate-1', 'gate', start),
      type: 'end',
      end: new Date(t0 + 3000).toISOString(),
    });
    await waitUntil(
      'sync waiting for the recorder',
      async () => (await syncStatus(box)).waitingFor.includes('recorder'),
      15_000,
      100,
    );
    const clip = `nl2/gate/${start.slice(0, 10)}/gate-1/clip.mp4`;
    assert.equal(await s3.list(clip), [], 'no clip while the recorder is away');
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok((await syncStatus(box)).waitingFor.includes('recorder'), 'still waiting: the job is not given up');

    box.broker.createService(SERVICE_FACTORIES.recorder(box.config));
    await waitUntil('the clip in the bucket', async () => (await s3.list(clip)).length === 1, 20_000, 200);
    const file = path.join(await tempDir(), 'clip.mp4');
    await writeFile(file, await s3.download(clip));
    const info = await playable(file);
    assert.ok(info.seconds >= 1.5, `the clip plays ${info.seconds} s`);
    await waitUntil('nothing waits any more', async () => (await syncStatus(box)).waitingFor.length === 0, 5000, 100);
  } finally {
    await box.stop();
  }
});

test('a segment file with nothing playable (the disk filled before its first fragment) is removed, not left as zero bytes', async () => {
  const box = await testBox();
  try {
    const dir = path.join(box.dataDir, 'media', 'yard', dayDir(Date.now()));
    await box.broker.destroyService(box.broker.getLocalService('recorder')!);
    await mkdir(dir, { recursive: true });
    const iso = new Date(Date.now() - 60_000).toISOString();
    const empty = path.join(dir, `${iso.slice(0, 10)}T${iso.slice(11, 19).replace(/:/g, '-')}-t2.mp4`);
    await writeFile(empty, '');
    const old = new Date(Date.now() - 120_000);
    await utimes(empty, old, old);
    box.broker.createService(SERVICE_FACTORIES.recorder(box.config));
    await box.broker.waitForServices('recorder', 10_000);
    await waitUntil(
      'the empty file gone',
      async () => !(await readdir(dir)).includes(path.basename(empty)),
      10_000,
      100,
    );
  } finally {
    await box.stop();
  }
});

test("write less to flash: the box's retained snapshot JPEGs reach subscribers but not the MQTT store on disk", async () => {
  const port = await freePort();
  const box = await testBox({ mqtt: { host: '127.0.0.1', port, tlsPort: null } });
  try {
    const admin = await withAdmin(box);
    const spec = {
      id: 'yard',
      name: 'Yard',
      enabled: false,
      source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' },
      detection: { labels: ['person'] },
    };
    assert.is((await box.request('POST', '/api/v1/cameras', { auth: admin, body: spec })).status, 201);
    const mqttDb = path.join(box.dataDir, 'db', 'mqtt');
    await new Promise((r) => setTimeout(r, 500));
    const before = dirBytes(mqttDb);
    // A busy camera: one person after another, each a better picture than the last (100 KiB each).
    const start = new Date().toISOString();
    const SNAPSHOTS = 20;
    for (let i = 0; i < SNAPSHOTS; i++) {
      const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8]), randomBytes(100 * 1024)]);
      const event = { ...eventBase(`yard-${i}`, 'yard', start), topScore: 0.5 + i / 100, end: null };
      await box.broker.call('events.record', { type: 'start', ...event, snapshot: jpeg.toString('base64') });
    }
    const ha = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      username: 'admin',
      password: admin,
      reconnectPeriod: 0,
    });
    const snapshot = await new Promise<Buffer>((resolve) => {
      ha.on(
        'message',
        (topic, payload) => topic === 'fogedge/cameras/yard/person/snapshot' && payload.length && resolve(payload),
      );
      void ha.subscribeAsync('fogedge/cameras/yard/person/snapshot');
    });
    assert.ok(snapshot.length > 100 * 1024, 'a new subscriber gets the retained snapshot');
    await ha.endAsync();
    const written = dirBytes(mqttDb) - before;
    assert.ok(written < 100 * 1024, `the MQTT store grew by ${written} bytes for ${SNAPSHOTS} snapshots of 100 KiB`);
  } finally {
    await box.stop();
  }
});

/** A loopback server that counts what reaches it: an address the box must not be made to fetch. */
async function countingServer(
  answer: (url: string) => { status: number; headers?: Record<string, string>; body?: Buffer },
) {
  const hits: string[] = [];
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const a = answer(req.url ?? '');
    res.writeHead(a.status, a.headers).end(a.body);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise((r) => server.close(r)) };
}

test("roles: the installer cannot send the household's video anywhere, nor make the box fetch an address of its choosing", async () => {
  const secret = await countingServer(() => ({ status: 200, body: Buffer.from('internal admin page') }));
  const vendor = await countingServer((url) =>
    url.includes('redirect')
      ? { status: 302, headers: { location: `${secret.url}/x.img` } }
      : { status: 200, body: Buffer.from('not the image you named') },
  );
  const box = await testBox({ usp: { firmwareSources: [`${vendor.url}/images/`] } });
  try {
    const admin = await withAdmin(box);
    assert.is(
      (
        await box.request('POST', '/api/v1/users', {
          auth: admin,
          body: { username: 'fitter', password: 'installer-password', role: 'installer' },
        })
      ).status,
      201,
    );
    const fitter = box.sessionOf(
      (
        await box.request('POST', '/api/v1/auth/login', {
          body: { username: 'fitter', password: 'installer-password' },
        })
      ).headers,
    )!;

    const add = await box.request('POST', '/api/v1/sync/targets', { auth: fitter, body: s3.target('fitters-bucket') });
    assert.is(add.status, 403, add.text);
    assert.is((await box.request('POST', '/api/v1/sync/test', { auth: fitter, body: s3.target('probe') })).status, 403);
    assert.is(
      (await box.request('POST', '/api/v1/sync/targets', { auth: admin, body: s3.target('home') })).status,
      201,
      'the admin chooses',
    );
    assert.is((await box.request('DELETE', '/api/v1/sync/targets/home', { auth: fitter })).status, 403);

    const wider = await box.request('PUT', '/api/v1/sync/policy', {
      auth: fitter,
      body: { resources: ['events', 'snapshots', 'clips', 'recordings'] },
    });
    assert.is(wider.status, 403, wider.text);
    assert.match(wider.json.error.message, /widens resources/);
    const narrower = await box.request('PUT', '/api/v1/sync/policy', {
      auth: fitter,
      body: { resources: ['events'], maxBytesPerDay: 5_000_000 },
    });
    assert.is(narrower.status, 200, "narrowing and limits are the installer's to set");
    assert.is(
      (await box.request('PUT', '/api/v1/sync/policy', { auth: fitter, body: { resources: ['events', 'clips'] } }))
        .status,
      403,
      'and no widening back',
    );
    assert.is(
      (
        await box.request('PUT', '/api/v1/sync/policy', {
          auth: admin,
          body: { resources: ['events', 'clips', 'recordings'] },
        })
      ).status,
      200,
    );

    const campaign = (url: string) =>
      box.request('POST', '/api/v1/usp/campaigns', { auth: fitter, body: { url, sha256: 'a'.repeat(64) } });
    for (const url of [
      `${secret.url}/x.img`,
      `${vendor.url}/other/x.img`,
      `${vendor.url}/images/../x.img`,
      `http://user:pw@${vendor.url.slice(7)}/images/x.img`,
    ]) {
      const res = await campaign(url);
      assert.is(res.json.error.type, 'SOURCE_NOT_ALLOWED', `${url}: ${res.text}`);
    }
    const redirected = await campaign(`${vendor.url}/images/redirect.img`);
    assert.is(redirected.json.error.type, 'IMAGE_FETCH_FAILED', redirected.text);
    const wrong = await campaign(`${vendor.url}/images/x.img`);
    assert.is(wrong.json.error.type, 'CHECKSUM_MISMATCH');
    assert.not.match(
      wrong.text,
      sha256(Buffer.from('not the image you named')),
      'the answer does not tell what the URL holds',
    );
    assert.equal(secret.hits, [], 'the address nobody allowed was never reached');
  } finally {
    await box.stop();
    await secret.close();
    await vendor.close();
  }
});

test('health answers whatever the credential, and says why when the services behind it are away', async () => {
  const box = await testBox();
  try {
    const admin = await withAdmin(box);
    const token = (await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'monitor' } })).json.token;
    assert.is((await box.request('GET', '/api/v1/health', { auth: token })).status, 200);
    await box.broker.destroyService(box.broker.getLocalService('accounts')!);
    const noAccounts = await box.request('GET', '/api/v1/health', { auth: token });
    assert.is(noAccounts.status, 503);
    assert.is(noAccounts.json.status, 'degraded', noAccounts.text);
    assert.ok(
      noAccounts.json.services.some(
        (s: { name: string; status: string }) => s.name === 'accounts' && s.status === 'down',
      ),
    );
    await box.broker.destroyService(box.broker.getLocalService('system')!);
    const noSystem = await box.request('GET', '/api/v1/health', { auth: 'a-stale-token' });
    assert.is(noSystem.status, 503);
    assert.is(noSystem.json.status, 'down');
    assert.match(noSystem.json.reason, /system/);
  } finally {
    await box.stop();
  }
});

test.run();
