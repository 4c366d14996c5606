// Cloud sync across a crash: the box (a real process on a real nats-server) is killed with SIGKILL
// in the middle of large multipart (S3) and block (Azure) uploads; after the restart they resume
// from the parts already sent, and the objects are whole.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import moleculer from 'moleculer';
import { tempDir } from './helpers/box.ts';
import { freePort, NatsServer, startedNode, waitUntil, type Proc } from './helpers/processes.ts';
import { Azurite, S3rver, sha256 } from './helpers/storage.ts';

const MiB = 1024 * 1024;
let nats: NatsServer;
let az: Azurite;
let s3: S3rver;
let dataDir: string;
let env: Record<string, string>;
let node: Proc;
let bus: moleculer.ServiceBroker;

type Queued = Array<{ name: string; targets: Record<string, { partsSent: number }> }>;
const queue = () => bus.call<Queued, object>('sync.queue', {});

test.before(async () => {
  nats = new NatsServer(await freePort());
  await nats.start();
  az = await Azurite.create(await tempDir());
  await az.client.getContainerClient('fogedge').create();
  s3 = await S3rver.create(await tempDir(), 'fogedge');
  dataDir = await tempDir();
  env = {
    TRANSPORTER: nats.url,
    FOGEDGE_DATA_DIR: dataDir,
    SERVICES: 'sync',
    NODEID: 'box',
    FOGEDGE__SYNC__BOXID: 'box9',
    FOGEDGE__SYNC__PARTBYTES: String(5 * MiB),
    FOGEDGE__SYNC__MULTIPARTTHRESHOLDBYTES: String(5 * MiB),
    FOGEDGE__SYNC__RETRYMINMS: '200',
    FOGEDGE__SYNC__RETRYMAXMS: '1000',
  };
  node = await startedNode(env);
  // The test's own node on the same bus, to call the box's internal actions.
  bus = new moleculer.ServiceBroker({ namespace: 'fogedge', nodeID: 'test', transporter: nats.url, logger: false });
  await bus.start();
  await bus.waitForServices('sync', 10_000);
});

test.after(async () => {
  await bus?.stop();
  await node?.kill('SIGKILL');
  await Promise.all([nats.stop(), az.stop(), s3.stop()]);
  await rm(dataDir, { recursive: true, force: true });
});

test('killed in the middle of a 21 MiB upload: after the restart (with another sync.partBytes) it resumes from its parts and the object is whole', async () => {
  await bus.call('sync.addTarget', s3.target('s3'));
  await bus.call('sync.addTarget', az.target('azure', 'fogedge'));
  // Slow enough (2 MiB/s for both targets together) to be killed half way.
  await bus.call('sync.setPolicy', { resources: ['recordings'], bandwidthBytesPerSecond: 2 * MiB });

  const data = randomBytes(21 * MiB);
  const day = new Date().toISOString().slice(0, 10);
  const rel = `cam1/${day}/${day}T10-00-00-run1.mp4`;
  await mkdir(path.join(dataDir, 'media', path.dirname(rel)), { recursive: true });
  await writeFile(path.join(dataDir, 'media', rel), data);
  await bus.emit('recording.segment.closed', {
    camera: 'cam1',
    path: rel,
    start: Date.now() - 60_000,
    end: Date.now(),
    bytes: data.length,
  });

  await waitUntil(
    '2 parts sent to each target',
    async () => {
      const item = (await queue())[0];
      return item && Object.values(item.targets).every((t) => t.partsSent >= 2);
    },
    30_000,
    100,
  );
  await node.kill('SIGKILL');

  // The installer changed the part size meanwhile: the upload under way keeps the one it began with.
  node = await startedNode({ ...env, FOGEDGE__SYNC__PARTBYTES: String(6 * MiB) });
  // The queue counts a part once it is sent; the kill may come before the last one is recorded on
  // disk (it is then sent again), but the one before it always is: a part starts after the
  // previous one's record is written.
  const resumed = await node.waitForLine(/resuming .*cam1.* to \\"s3\\" after [1-5] of 5 parts/);
  assert.match(resumed, /resuming/);
  await node.waitForLine(/resuming .*cam1.* to \\"azure\\" after [1-5] of 5 parts/);
  await waitUntil('the outbox empty', async () => (await queue()).length === 0, 40_000, 250);

  // Resumed, not sent again: no stored object differed from what was sent.
  assert.not.ok(
    node.lines.some((l) => /differs from what was sent|REJECTED/.test(l)),
    node.lines.filter((l) => /differs|REJECTED/.test(l)).join('\n'),
  );
  const name = `box9/cam1/${day}/recordings/${path.basename(rel)}`;
  assert.is(sha256(await s3.download(name)), sha256(data), 'S3 object whole');
  assert.is(sha256(await az.download('fogedge', name)), sha256(data), 'Azure blob whole');
  const status = await bus.call<{ targets: Array<{ id: string; sentItems: number }> }, object>('sync.status', {});
  assert.ok(
    status.targets.every((t) => t.sentItems === 1),
    'sent once to each',
  );
});

test.run();
