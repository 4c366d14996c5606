// The offsite tier: recordings in S3 (s3rver) and Azure Blob (Azurite) kept for the plan's days
// there, and a plan that sends only the footage of alerts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { Azurite, S3rver } from './helpers/storage.ts';
import { RtspCamera } from './helpers/video.ts';

const DAY = 86_400_000;
let az: Azurite;
let s3: S3rver;
let box: TestBox;
let admin: string;

const fileAt = (t: number) => `${new Date(t).toISOString().slice(0, 19).replace(/:/g, '-')}-abc123.mp4`;
const dayOf = (t: number) => new Date(t).toISOString().slice(0, 10);

test.before(async () => {
  az = await Azurite.create(await tempDir());
  await az.client.getContainerClient('fogedge').create();
  s3 = await S3rver.create(await tempDir(), 'fogedge');
  box = await testBox({
    video: { segmentSeconds: 2 },
    detector: { enabled: false, preRollSeconds: 1, postRollSeconds: 1 },
    sync: { boxId: 'box1', retryMinMs: 200, retryMaxMs: 1000, offsiteSweepSeconds: 1 },
  });
  admin = await withAdmin(box);
  await box.broker.call('sync.addTarget', s3.target('s3'));
  await box.broker.call('sync.addTarget', az.target('azure', 'fogedge', { prefix: 'site-a' }));
});
test.after(async () => {
  await box.stop();
  await Promise.all([az.stop(), s3.stop()]);
});

test('recordings past the plan days are deleted in the cloud; nothing else of the box, nor another box, is', async () => {
  const old = Date.now() - 10 * DAY;
  const recent = Date.now() - 2 * DAY;
  const names = (root: string) => ({
    old: `${root}box1/front/${dayOf(old)}/recordings/${fileAt(old)}`,
    recent: `${root}box1/front/${dayOf(recent)}/recordings/${fileAt(recent)}`,
    clip: `${root}box1/front/${dayOf(old)}/ev-1/clip.mp4`,
    otherBox: `${root}box2/front/${dayOf(old)}/recordings/${fileAt(old)}`,
    stranger: `${root}box1/front/${dayOf(old)}/recordings/notes.txt`,
  });
  const s3Names = names('');
  const azNames = names('site-a/');
  for (const name of Object.values(s3Names)) await s3.client.putObject(s3.bucket, name, Buffer.from('x'));
  const container = az.client.getContainerClient('fogedge');
  for (const name of Object.values(azNames)) await container.getBlockBlobClient(name).upload('x', 1);

  // Nothing goes while the plan keeps recordings.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await s3.list()).sort(), Object.values(s3Names).sort());
  const res = await box.request('PUT', '/api/v1/sync/policy', {
    auth: admin,
    body: { resources: ['events', 'recordings'], recordingsRetainDays: 7 },
  });
  assert.is(res.status, 200, res.text);
  await waitUntil('the old recording gone from both', async () =>
    !(await s3.list()).includes(s3Names.old) && !(await az.list('fogedge')).includes(azNames.old) ? true : undefined,
  );
  const { old: _s3, ...s3Kept } = s3Names;
  const { old: _az, ...azKept } = azNames;
  assert.equal((await s3.list()).sort(), Object.values(s3Kept).sort());
  assert.equal((await az.list('fogedge')).sort(), Object.values(azKept).sort());
  // Bad input: days are checked, with the field named.
  const bad = await box.request('PUT', '/api/v1/sync/policy', { auth: admin, body: { recordingsRetainDays: -1 } });
  assert.is(bad.status, 422, bad.text);
  assert.match(bad.text, /recordingsRetainDays/);
});

test('alerts only: the footage of an alert goes up, from its pre-roll to its post-roll, and no other', async () => {
  const cam = new RtspCamera(await freePort());
  await cam.start();
  try {
    await box.request('PUT', '/api/v1/sync/policy', {
      auth: admin,
      body: { resources: ['recordings'], recordingsScope: 'alerts' },
    });
    const res = await box.request('POST', '/api/v1/cameras', {
      auth: admin,
      body: { id: 'yard', name: 'Yard', source: { kind: 'rtsp', url: cam.url() } },
    });
    assert.is(res.status, 201, res.text);
    const segments = async () =>
      (await box.broker.call('recorder.segments', {
        camera: 'yard',
        from: new Date(Date.now() - 600_000).toISOString(),
        to: new Date(Date.now() + 60_000).toISOString(),
      })) as Array<{ path: string; start: string; end: string }>;
    await waitUntil('4 segments recorded', async () => ((await segments()).length >= 4 ? true : undefined), 30_000);
    // The review items stand in for the events service's (the detector is off here: a clip with
    // people never leaves a quiet minute to see). A detection sends nothing; an alert does.
    const start = Date.now() - 1500;
    const item = {
      id: 'yard-item1',
      camera: 'yard',
      start: new Date(start).toISOString(),
      end: null as string | null,
      severity: 'detection',
      labels: ['person'],
      zones: [],
      objects: [],
      thumbnailEvent: 'yard-e1',
      topScore: 0.9,
      reviewed: false,
      hasPreview: false,
      updatedAt: new Date().toISOString(),
    };
    await box.broker.broadcast('review.opened', { ...item, id: 'yard-quiet' });
    await new Promise((r) => setTimeout(r, 1000));
    await box.broker.broadcast('review.opened', { ...item, severity: 'alert' });
    await new Promise((r) => setTimeout(r, 3000));
    const end = Date.now();
    await box.broker.broadcast('review.closed', { ...item, severity: 'alert', end: new Date(end).toISOString() });
    const from = start - 1000;
    const to = end + 1000;
    const expected = async () =>
      (await segments())
        .filter((s) => Date.parse(s.start) < to && Date.parse(s.end) > from)
        .map((s) => s.path.split('/').pop()!);
    const uploaded = async () =>
      (await s3.list('box1/yard/')).filter((n) => n.includes('/recordings/')).map((n) => n.split('/').pop()!);
    // Once the segment holding the post-roll has closed, what went up is exactly the alert's footage.
    await waitUntil(
      'the post-roll recorded',
      async () => ((await segments()).some((s) => Date.parse(s.start) >= to) ? true : undefined),
      20_000,
    );
    const want = (await expected()).sort();
    assert.ok(want.length >= 3, `the alert spans ${want.length} segments`);
    await waitUntil('the alert footage in S3', async () =>
      JSON.stringify((await uploaded()).sort()) === JSON.stringify(want) ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 4500)); // two more segments close: they stay on the box
    assert.equal((await uploaded()).sort(), want);
    assert.ok((await segments()).length > want.length + 3, 'footage before and after it stayed on the box');
  } finally {
    await cam.stop();
  }
});

test.run();
