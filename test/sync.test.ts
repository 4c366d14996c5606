// Cloud sync against real storage servers on loopback: Azurite (Azure Blob) and s3rver (S3 API).
// Everything sent is downloaded back and compared by hash.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { Azurite, S3rver, sha256 } from './helpers/storage.ts';
import { RtspCamera } from './helpers/video.ts';
import { WebSocket } from 'ws';
import { createServer } from 'node:http';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

let box: TestBox;
let admin: string;
let az: Azurite;
let s3: S3rver;
const JPEG = randomBytes(3000);
JPEG[0] = 0xff;
JPEG[1] = 0xd8;

type TargetStatus = {
  id: string;
  state: string;
  pendingItems: number;
  sentItems: number;
  failures: number;
  lastError: { code: string; message: string } | null;
  bytesPerSecond: number | null;
};
type SyncStatus = {
  queue: { items: number; bytes: number };
  counters: { dropped: number; overBudget: number; refused: number };
  targets: TargetStatus[];
};

const MiB = 1024 * 1024;
const status = async (b = box) => (await b.broker.call('sync.status')) as SyncStatus;
const targetStatus = async (id: string, b = box) => (await status(b)).targets.find((t) => t.id === id)!;
const enqueue = (name: string, data: Buffer, resource = 'events', b = box) =>
  b.broker.call('sync.enqueue', {
    resource,
    name,
    contentType: 'application/octet-stream',
    base64: data.toString('base64'),
  }) as Promise<{ queued: boolean }>;
/** GET /api/v1/metrics as `name{labels}` -> value. */
const metrics = async (auth = admin) => {
  const res = await box.request('GET', '/api/v1/metrics', { auth });
  assert.is(res.status, 200, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return new Map(
    res.text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]),
  );
};
const drained = (b = box, timeoutMs = 30_000) =>
  waitUntil('the outbox empty', async () => (await status(b)).queue.items === 0, timeoutMs, 100).catch(
    async (err: Error) => {
      throw new Error(
        `${err.message}; status ${JSON.stringify(await status(b))}; queue ${JSON.stringify(await b.broker.call('sync.queue'))}`,
      );
    },
  );

test.before(async () => {
  az = await Azurite.create(await tempDir());
  await az.client.getContainerClient('fogedge').create();
  s3 = await S3rver.create(await tempDir(), 'fogedge');
  box = await testBox({
    sync: {
      boxId: 'box1',
      retryMinMs: 200,
      retryMaxMs: 1000,
      auditBatchSeconds: 1,
      multipartThresholdBytes: 5 * MiB,
      partBytes: 5 * MiB,
      wholeUploadSeconds: 1,
    },
  });
  admin = await withAdmin(box);
});
test.after(async () => {
  await box.stop();
  await Promise.all([az.stop(), s3.stop()]);
});

test('targets are added by API with their secrets masked; the connection test says what is wrong', async () => {
  for (const t of [s3.target('s3'), az.target('azure', 'fogedge')]) {
    const res = await box.request('POST', '/api/v1/sync/targets', { auth: admin, body: t });
    assert.is(res.status, 201, res.text);
  }
  const list = await box.request('GET', '/api/v1/sync/targets', { auth: admin });
  assert.is(list.status, 200);
  assert.not.match(list.text, 'Eby8vdM02x', 'the Azure key is not in the answer');
  assert.not.match(list.text, /"secretKey":"S3RVER"/, 'the S3 secret is not in the answer');
  assert.ok(
    list.json.every((t: { secretKey?: string; accountKey?: string }) => (t.secretKey ?? t.accountKey) === '***'),
  );
  assert.is((await box.request('GET', '/api/v1/sync/targets')).status, 401, 'no answer without signing in');

  const check = async (target: object) =>
    (await box.request('POST', '/api/v1/sync/test', { auth: admin, body: target })).json;
  assert.equal((await box.request('POST', '/api/v1/sync/targets/s3/test', { auth: admin })).json, { ok: true });
  assert.equal((await box.request('POST', '/api/v1/sync/targets/azure/test', { auth: admin })).json, { ok: true });
  // s3rver checks the access key (not V4 signatures); Azurite checks the signature with the key.
  assert.is((await check(s3.target('x', { accessKey: 'NOT-A-KEY' }))).code, 'AUTH');
  assert.is(
    (await check(az.target('x', 'fogedge', { accountKey: Buffer.from('wrong key').toString('base64') }))).code,
    'AUTH',
  );
  assert.is((await check(s3.target('x', { bucket: 'no-such-bucket' }))).code, 'NO_BUCKET');
  assert.is((await check(az.target('x', 'no-such-container'))).code, 'NO_BUCKET');
  assert.is((await check(s3.target('x', { endpoint: 'http://storage.invalid:9000' }))).code, 'DNS');
  assert.is((await check(s3.target('x', { endpoint: `http://127.0.0.1:${await freePort()}` }))).code, 'UNREACHABLE');
  // A server whose clock is an hour ahead refuses the signature as too old.
  const skewed = await S3rver.create(await tempDir(), 'fogedge', 3600_000);
  try {
    const res = await check(skewed.target('x'));
    assert.is(res.code, 'CLOCK_SKEW', JSON.stringify(res));
    assert.match(res.message, /clock/);
  } finally {
    await skewed.stop();
  }
  // Azure: Azurite does not check request dates, so this is the one stand-in in these tests: a
  // loopback server answering every request as Azure answers a request whose date is off by more
  // than 15 minutes (403 AuthenticationFailed, "Request date header too old"), read by the real SDK.
  const azureSkewed = createServer((req, res) => {
    const body = `\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\nRequestId:1\nTime:${new Date().toISOString()}</Message><AuthenticationErrorDetail>Request date header too old: '${req.headers['x-ms-date']}'</AuthenticationErrorDetail></Error>`;
    res
      .writeHead(403, {
        'content-type': 'application/xml',
        'x-ms-error-code': 'AuthenticationFailed',
        'x-ms-request-id': '1',
      })
      .end(body);
  });
  const azurePort = await freePort();
  await new Promise<void>((r) => azureSkewed.listen(azurePort, '127.0.0.1', r));
  try {
    const res = await check(az.target('x', 'fogedge', { endpoint: `http://127.0.0.1:${azurePort}/devstoreaccount1` }));
    assert.is(res.code, 'CLOCK_SKEW', JSON.stringify(res));
    assert.match(res.message, /clock/);
  } finally {
    azureSkewed.close();
  }
  const bad = await box.request('POST', '/api/v1/sync/targets', {
    auth: admin,
    body: { ...s3.target('bad'), endpoint: 'ftp://x' },
  });
  assert.is(bad.status, 422);
  assert.match(bad.text, /endpoint/);
});

test('an ended event goes up as its JSON index and snapshot, with metadata; the plan filters by label', async () => {
  const plan = await box.request('PUT', '/api/v1/sync/policy', {
    auth: admin,
    body: { resources: ['events', 'snapshots'], labels: ['person'] },
  });
  assert.is(plan.status, 200, plan.text);
  const start = new Date(Date.now() - 20_000).toISOString();
  const event = (id: string, label: string, type: string, extra: object = {}) =>
    box.broker.call('events.record', {
      type,
      id,
      camera: 'porch',
      label,
      topScore: 0.87,
      box: [0.1, 0.2, 0.3, 0.9],
      zones: ['path'],
      start,
      end: null,
      stationary: false,
      ...extra,
    });
  await event('porch-1', 'person', 'start', { snapshot: JPEG.toString('base64') });
  await event('porch-1', 'person', 'end', { end: new Date().toISOString() });
  await event('porch-2', 'car', 'start', { snapshot: JPEG.toString('base64') });
  await event('porch-2', 'car', 'end', { end: new Date().toISOString() });

  const base = `box1/porch/${start.slice(0, 10)}/porch-1`;
  await waitUntil(
    'both objects in both targets',
    async () => (await s3.list(base)).length === 2 && (await az.list('fogedge', base)).length === 2,
    20_000,
  );
  assert.is(sha256(await s3.download(`${base}/snapshot.jpg`)), sha256(JPEG));
  assert.is(sha256(await az.download('fogedge', `${base}/snapshot.jpg`)), sha256(JPEG));
  const index = JSON.parse((await s3.download(`${base}/event.json`)).toString());
  assert.is(index.id, 'porch-1');
  assert.is(index.label, 'person');
  assert.is(index.boxId, 'box1');
  assert.is(index.objects.snapshot, `${base}/snapshot.jpg`);
  const s3Meta = (await s3.client.statObject('fogedge', `${base}/snapshot.jpg`)).metaData as Record<string, string>;
  assert.is(s3Meta['label'], 'person');
  assert.is(s3Meta['score'], '0.870');
  assert.is(s3Meta['sha256'], sha256(JPEG));
  const azProps = await az.client
    .getContainerClient('fogedge')
    .getBlockBlobClient(`${base}/event.json`)
    .getProperties();
  assert.is(azProps.metadata?.['event'], 'porch-1');
  assert.is(azProps.contentType, 'application/json');
  await drained();
  assert.equal(await s3.list('box1/porch/' + start.slice(0, 10) + '/porch-2'), [], 'the car is not in the plan');
});

test('a target down while 200 items are enqueued: when it is back, all arrive, each sent once', async () => {
  await box.request('PUT', '/api/v1/sync/policy', { auth: admin, body: { resources: ['events'] } });
  const before = await targetStatus('s3');
  // The status as the bus carries it (the web UI and the ADMP uplink read it there).
  const onBus: SyncStatus[] = [];
  await box.broker.createService({
    name: 'status-listener',
    events: { 'sync.status.changed': (ctx: { params: SyncStatus }) => void onBus.push(ctx.params) },
  } as never);
  // And as the web UI's System page gets it: pushed on the updates WebSocket.
  const pushed: Array<{ type: string; data: SyncStatus }> = [];
  const updates = new WebSocket(
    `ws://127.0.0.1:${box.broker.getLocalService('api')!.settings['port']}/api/v1/updates`,
    { headers: { authorization: `Bearer ${admin}` } },
  );
  updates.on('message', (m) => pushed.push(JSON.parse(m.toString())));
  await new Promise((r) => updates.once('open', r));
  await s3.stop();
  const items = Array.from({ length: 200 }, (_, i) => randomBytes(200 + i));
  for (const [i, data] of items.entries()) assert.ok((await enqueue(`down/item-${i}.bin`, data)).queued);
  const down = await waitUntil('S3 reported down', async () => {
    const t = await targetStatus('s3');
    return t.lastError?.code === 'UNREACHABLE' && t;
  });
  assert.is(down.state, 'backing-off');
  await waitUntil('Azure has all 200 meanwhile', async () => (await targetStatus('azure')).pendingItems === 0);
  assert.is((await targetStatus('s3')).pendingItems, 200);
  await waitUntil('the bus told of the backlog', () =>
    onBus.some((b) =>
      b.targets.some((t) => t.id === 's3' && t.pendingItems === 200 && t.lastError?.code === 'UNREACHABLE'),
    ),
  );
  await waitUntil('the updates socket told of it too', () =>
    pushed.some(
      (p) =>
        p.type === 'sync.status.changed' &&
        p.data.targets.some((t) => t.id === 's3' && t.lastError?.code === 'UNREACHABLE'),
    ),
  );
  updates.close();
  await new Promise((r) => setTimeout(r, 3000)); // down a while: several backoff rounds
  await s3.start();
  await drained();
  const names = await s3.list('down/');
  assert.is(names.length, 200);
  for (const [i, data] of items.entries())
    assert.is(sha256(await s3.download(`down/item-${i}.bin`)), sha256(data), `item ${i}`);
  const after = await targetStatus('s3');
  assert.is(after.sentItems - before.sentItems, 200, 'each item uploaded exactly once');
  assert.is(after.lastError?.code, 'UNREACHABLE', 'the last error stays on record');
  assert.is(after.state, 'idle');
});

test('an item over the multipart threshold goes whole when the link sends it within wholeUploadSeconds, in resumable parts when it is slower (a cap)', async () => {
  await box.request('PUT', '/api/v1/sync/policy', { auth: admin, body: { resources: ['events'] } });
  const blocks = async (name: string) =>
    (await az.client.getContainerClient('fogedge').getBlockBlobClient(name).getBlockList('committed'))
      .committedBlocks ?? [];
  // The link's rate, measured from items of a few MiB (loopback: far above 5.5 MiB in a second).
  for (let i = 0; i < 2; i++) assert.ok((await enqueue(`whole/warm-${i}.bin`, randomBytes(3 * MiB))).queued);
  await drained();
  const rate = (await targetStatus('azure')).bytesPerSecond;
  assert.ok(rate !== null && rate > 5.5 * MiB, `measured ${rate} B/s`);
  const quick = randomBytes(5.5 * MiB);
  assert.ok((await enqueue('whole/quick.bin', quick)).queued);
  await drained();
  assert.is((await blocks('whole/quick.bin')).length, 0, 'one Put Blob, no block list');
  assert.is(sha256(await az.download('fogedge', 'whole/quick.bin')), sha256(quick));

  // A cap of 2 MiB/s: 5.5 MiB would take longer than a second, so it goes in parts that resume.
  await box.request('PUT', '/api/v1/sync/policy', {
    auth: admin,
    body: { resources: ['events'], bandwidthBytesPerSecond: 2 * MiB },
  });
  const slow = randomBytes(5.5 * MiB);
  assert.ok((await enqueue('whole/slow.bin', slow)).queued);
  await drained(box, 60_000);
  assert.is((await blocks('whole/slow.bin')).length, 2, 'two 5 MiB blocks');
  assert.is(sha256(await az.download('fogedge', 'whole/slow.bin')), sha256(slow));
  assert.is(sha256(await s3.download('whole/slow.bin')), sha256(slow));
  await box.request('PUT', '/api/v1/sync/policy', { auth: admin, body: { resources: ['events'] } });
});

test('wrong credentials: the item stays queued, the status says why, and retries back off', async () => {
  const patch = await box.request('PATCH', '/api/v1/sync/targets/s3', {
    auth: admin,
    body: { accessKey: 'NOT-A-KEY' },
  });
  assert.is(patch.status, 200, patch.text);
  const data = randomBytes(5000);
  await enqueue('auth/one.bin', data);
  await waitUntil('AUTH reported', async () => (await targetStatus('s3')).lastError?.code === 'AUTH');
  await new Promise((r) => setTimeout(r, 3000));
  const t = await targetStatus('s3');
  assert.is(t.pendingItems, 1);
  // 200 ms doubling to 1 s with jitter: a handful of tries in 3 s, not a tight loop.
  assert.ok(t.failures >= 2 && t.failures <= 12, `failures in a row: ${t.failures}`);
  // The same, as Prometheus scrapes it.
  const failing = await metrics();
  assert.is(failing.get('fogedge_sync_target_pending_items{target="s3",type="s3"}'), 1);
  assert.ok(failing.get('fogedge_sync_target_failures{target="s3",type="s3"}')! >= 2);
  assert.is(failing.get('fogedge_sync_queue_items'), 1);
  assert.is(failing.get('fogedge_source_up{source="sync"}'), 1);
  const sentBefore = failing.get('fogedge_sync_target_sent_items{target="s3",type="s3"}')!;
  await box.request('PATCH', '/api/v1/sync/targets/s3', { auth: admin, body: { accessKey: 'S3RVER' } });
  await drained();
  assert.is(sha256(await s3.download('auth/one.bin')), sha256(data));
  const ok = await metrics();
  assert.equal(
    [
      ok.get('fogedge_sync_target_up{target="s3",type="s3"}'),
      ok.get('fogedge_sync_target_pending_items{target="s3",type="s3"}'),
      ok.get('fogedge_sync_queue_items'),
    ],
    [1, 0, 0],
  );
  assert.is(ok.get('fogedge_sync_target_sent_items{target="s3",type="s3"}'), sentBefore + 1);
  assert.ok(
    ok.get('fogedge_sync_target_last_success_timestamp_seconds{target="s3",type="s3"}')! > Date.now() / 1000 - 60,
  );
  assert.ok(ok.has('fogedge_disk_free_bytes'));
  // Only signed in (Prometheus with an API token as its bearer token).
  assert.is((await box.request('GET', '/api/v1/metrics')).status, 401);
  const token = (await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'prometheus' } })).json
    .token as string;
  assert.is((await metrics(token)).get('fogedge_sync_queue_items'), 0);
});

test('the audit log goes up in batches: who added a camera, who changed a target (no secrets)', async () => {
  await box.request('PUT', '/api/v1/sync/policy', { auth: admin, body: { resources: ['audit'] } });
  const add = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: {
      id: 'gate',
      name: 'Gate',
      enabled: false,
      source: { kind: 'rtsp', url: 'rtsp://u:cam-pass@127.0.0.1:9/x' },
    },
  });
  assert.is(add.status, 201, add.text);
  await box.request('PATCH', '/api/v1/sync/targets/azure', {
    auth: admin,
    body: { accountKey: az.target('a', 'b').accountKey },
  });
  const lines = await waitUntil(
    'both entries in the bucket',
    async () => {
      const all: Array<Record<string, unknown>> = [];
      for (const name of await s3.list('box1/audit/'))
        all.push(
          ...(await s3.download(name))
            .toString()
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l)),
        );
      return (
        all.some((l) => l['action'] === 'camera.added') &&
        all.some((l) => l['action'] === 'sync.target.changed' && l['change'] === 'updated') &&
        all
      );
    },
    20_000,
    250,
  );
  const camera = lines.find((l) => l['action'] === 'camera.added')!;
  assert.is(camera['by'], 'admin');
  assert.is(camera['id'], 'gate');
  assert.ok(typeof camera['at'] === 'string');
  const text = JSON.stringify(lines);
  assert.not.match(text, 'cam-pass');
  assert.not.match(text, 'Eby8vdM02x');
  // The change made here (the bucket may also hold the target's 'added' entry from the first test,
  // depending on whether an audit batch went up while the plan still had audit in it).
  assert.equal(
    lines.find((l) => l['action'] === 'sync.target.changed' && l['id'] === 'azure' && l['change'] === 'updated')![
      'fields'
    ],
    ['accountKey'],
    'names the field, not its value',
  );
});

test("the plan's windows hold a resource back until its hours", async () => {
  const now = new Date();
  const hhmm = (d: Date) => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  const later = (h: number) => hhmm(new Date(now.getTime() + h * 3600_000));
  await box.request('PUT', '/api/v1/sync/policy', {
    auth: admin,
    body: { windows: { clips: { from: later(2), to: later(3) } } },
  });
  await enqueue('window/clip.bin', randomBytes(1000), 'clips');
  await enqueue('window/event.json', randomBytes(100), 'events');
  await waitUntil('the event sent', async () => (await s3.list('window/')).includes('window/event.json'));
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await s3.list('window/'), ['window/event.json'], 'the clip waits for its window');
  await box.request('PUT', '/api/v1/sync/policy', {
    auth: admin,
    body: { windows: { clips: { from: later(-1), to: later(1) } } },
  });
  await drained();
  assert.ok((await s3.list('window/')).includes('window/clip.bin'));
});

test('the byte bound: the lowest-value, oldest items go first; what cannot fit is refused; the daily budget holds', async () => {
  // A box whose only target never answers, with a 1 MiB queue.
  const small = await testBox({
    sync: { boxId: 'box2', maxQueueBytes: 1024 * 1024, retryMinMs: 1000, retryMaxMs: 5000 },
  });
  try {
    await small.broker.call('sync.addTarget', {
      ...s3.target('dead'),
      endpoint: `http://127.0.0.1:${await freePort()}`,
    });
    await small.broker.call('sync.setPolicy', { resources: ['events', 'clips', 'recordings'] });
    const k300 = () => randomBytes(300 * 1024);
    await enqueue('clip-1', k300(), 'clips', small);
    await enqueue('rec-1', k300(), 'recordings', small);
    await enqueue('clip-2', k300(), 'clips', small);
    assert.ok((await enqueue('event-1', k300(), 'events', small)).queued, 'an event makes room');
    assert.ok((await enqueue('clip-3', k300(), 'clips', small)).queued, 'a clip makes room among clips');
    assert.not.ok(
      (await enqueue('rec-2', k300(), 'recordings', small)).queued,
      'a recording cannot push out a clip or event',
    );
    const names = [...((await small.broker.call('sync.status')) as SyncStatus).targets].length;
    assert.is(names, 1);
    const s = await status(small);
    assert.is(s.counters.dropped, 2);
    assert.is(s.counters.refused, 1);
    assert.ok(s.queue.bytes <= 1024 * 1024);
    // The recording went first (lowest value), then the oldest clip.
    const queued = (await small.broker.call('sync.queue')) as Array<{ name: string }>;
    assert.equal(
      queued.map((q) => q.name),
      ['clip-2', 'event-1', 'clip-3'],
    );

    await small.broker.call('sync.setPolicy', { resources: ['events'], maxBytesPerDay: 2000 });
    assert.ok((await enqueue('e-a', randomBytes(1500), 'events', small)).queued);
    assert.not.ok((await enqueue('e-b', randomBytes(1500), 'events', small)).queued, "over the day's budget");
    assert.is((await status(small)).counters.overBudget, 1);
  } finally {
    await small.stop();
  }
});

test('after a crash, files in outbox/ that no item owns (a cut write, a write never enqueued) are removed at start; queued items keep theirs', async () => {
  const sync = { boxId: 'box3', retryMinMs: 1000, retryMaxMs: 5000 };
  let b = await testBox({ sync });
  const { dataDir } = b;
  const outboxDir = path.join(dataDir, 'outbox');
  try {
    await b.broker.call('sync.addTarget', { ...s3.target('dead'), endpoint: `http://127.0.0.1:${await freePort()}` });
    assert.ok((await enqueue('kept.json', randomBytes(2000), 'events', b)).queued);
    await b.stop({ keepData: true });
    const before = await readdir(outboxDir);
    assert.is(before.length, 1);
    await writeFile(path.join(outboxDir, '000000000000001-000000.json'), 'written, never enqueued');
    await writeFile(path.join(outboxDir, `${before[0]}.0a1b2c.tmp`), 'a cut write');
    b = await testBox({ sync, dataDir });
    assert.equal(await readdir(outboxDir), before);
    const queued = (await b.broker.call('sync.queue')) as Array<{ name: string; bytes: number }>;
    assert.equal(
      queued.map((q) => [q.name, q.bytes]),
      [['kept.json', 2000]],
    );
  } finally {
    await b.stop();
  }
});

test('enqueues at the same moment cannot both take the last room: the byte bound and the daily budget hold', async () => {
  const small = await testBox({
    sync: { boxId: 'box4', maxQueueBytes: 1024 * 1024, retryMinMs: 1000, retryMaxMs: 5000 },
  });
  try {
    await small.broker.call('sync.addTarget', {
      ...s3.target('dead'),
      endpoint: `http://127.0.0.1:${await freePort()}`,
    });
    await small.broker.call('sync.setPolicy', { resources: ['clips', 'events'], maxBytesPerDay: 2 * 1024 * 1024 });
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => enqueue(`at-once-${i}`, randomBytes(600 * 1024), 'clips', small)),
    );
    const s = await status(small);
    assert.ok(s.queue.bytes <= 1024 * 1024, `queue ${s.queue.bytes} bytes over its 1 MiB bound`);
    assert.is(s.queue.items, 1);
    // 4 x 600 KiB against a 2 MiB day: one of them is over the budget.
    assert.is(results.filter((r) => r.queued).length, 3);
    assert.is(s.counters.overBudget, 1);
    assert.is(s.counters.dropped, 2);
  } finally {
    await small.stop();
  }
});

test('an event clip is cut from the recordings once its post-roll is recorded, and goes up whole', async () => {
  const cam = new RtspCamera(await freePort());
  await cam.start();
  const vbox = await testBox({
    video: { segmentSeconds: 2 },
    detector: { preRollSeconds: 1, postRollSeconds: 1 },
    sync: { boxId: 'box3' },
  });
  try {
    const vadmin = await withAdmin(vbox);
    await vbox.broker.call('sync.addTarget', az.target('azure', 'fogedge'));
    await vbox.broker.call('sync.setPolicy', { resources: ['clips', 'events'] });
    const add = await vbox.request('POST', '/api/v1/cameras', {
      auth: vadmin,
      body: { id: 'yard', name: 'Yard', source: { kind: 'rtsp', url: cam.url() } },
    });
    assert.is(add.status, 201, add.text);
    await waitUntil(
      '2 segments recorded',
      async () => {
        const t = new Date(Date.now() - 60_000).toISOString();
        return (
          ((
            await vbox.request('GET', `/api/v1/cameras/yard/segments?from=${t}&to=${new Date().toISOString()}`, {
              auth: vadmin,
            })
          ).json?.length ?? 0) >= 2
        );
      },
      30_000,
      250,
    );
    const start = new Date(Date.now() - 3000).toISOString();
    const base = {
      id: 'yard-1',
      camera: 'yard',
      label: 'person',
      topScore: 0.7,
      box: [0, 0, 1, 1],
      zones: [],
      start,
      stationary: false,
    };
    await vbox.broker.call('events.record', { ...base, type: 'start', end: null });
    await vbox.broker.call('events.record', { ...base, type: 'end', end: new Date().toISOString() });
    const name = `box3/yard/${start.slice(0, 10)}/yard-1/clip.mp4`;
    await waitUntil('the clip in Azure', async () => (await az.list('fogedge', name)).length === 1, 40_000, 500);
    const clip = await az.download('fogedge', name);
    assert.ok(clip.length > 10_000, `clip of ${clip.length} bytes`);
    assert.is(clip.subarray(4, 8).toString(), 'ftyp', 'an MP4');
    const props = await az.client.getContainerClient('fogedge').getBlockBlobClient(name).getProperties();
    assert.is(props.metadata?.['sha256'], createHash('sha256').update(clip).digest('hex'));
  } finally {
    await vbox.stop();
    await cam.stop();
  }
});

test.run();
