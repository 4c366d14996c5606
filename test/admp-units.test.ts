// The uplink's parts on their own: the store-and-forward queue (on a real LevelDB) and where
// the provisioning comes from.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigSchema } from '../appliance/config.ts';
import { ProvisioningError, readProvisioning, writeProvisioning } from '../appliance/provisioning.ts';
import { Store } from '../lib/store.ts';
import { UplinkQueue, type UpMessage } from '../services/admp/uplink-queue.ts';
import { temperatures } from '../services/admp/telemetry.ts';
import { tempDir } from './helpers/box.ts';

const open = async (dir: string, bounds = { maxItems: 10, maxBytes: 1024 * 1024 }) => {
  const store = await Store.open(dir);
  const queue = new UplinkQueue(store.collection<UpMessage>('queue'), store.collection('meta'), bounds);
  await queue.load();
  return { store, queue };
};

test('the queue keeps its order and its seqs across a reopen, and never reuses a seq', async () => {
  const dir = await tempDir();
  let { store, queue } = await open(dir);
  for (let i = 0; i < 3; i++) await queue.enqueue('audit', 'audit', { n: i });
  await queue.sent(1);
  await store.close();
  ({ store, queue } = await open(dir));
  assert.equal(
    queue.next(10, new Set()).map((m) => [m.seq, m.payload['n']]),
    [
      [2, 1],
      [3, 2],
    ],
  );
  await queue.sent(2);
  await queue.sent(3);
  await store.close();
  // Empty now: the next message still gets a new number.
  ({ store, queue } = await open(dir));
  const { message } = await queue.enqueue('health', 'health', {});
  assert.is(message!.seq, 4);
  assert.is(message!.payload['seq'], 4);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('full: old health goes first, then events; the audit log is kept longest, never dropped for a message worth less; each drop is counted', async () => {
  const dir = await tempDir();
  const { store, queue } = await open(dir, { maxItems: 6, maxBytes: 1024 * 1024 });
  await queue.enqueue('audit', 'audit', { n: 'a1' });
  await queue.enqueue('health', 'health', { n: 'h1' });
  await queue.enqueue('event', 'events', { n: 'e1' });
  await queue.enqueue('health', 'health', { n: 'h2' });
  await queue.enqueue('audit', 'audit', { n: 'a2' });
  await queue.enqueue('event', 'events', { n: 'e2' });
  const first = await queue.enqueue('audit', 'audit', { n: 'a3' });
  assert.equal(
    first.dropped.map((m) => m.payload['n']),
    ['h1'],
  );
  await queue.enqueue('audit', 'audit', { n: 'a4' });
  await queue.enqueue('audit', 'audit', { n: 'a5' });
  await queue.enqueue('audit', 'audit', { n: 'a6' });
  assert.equal(
    queue.next(10, new Set()).map((m) => m.payload['n']),
    ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'],
  );
  assert.equal(queue.dropped, { health: 2, event: 2, reported: 0, reply: 0, audit: 0 });
  // Only audit left: the oldest audit goes.
  await queue.enqueue('audit', 'audit', { n: 'a7' });
  assert.is(queue.next(1, new Set())[0]!.payload['n'], 'a2');
  assert.is(queue.dropped.audit, 1);
  // A health sample is worth less than any of them: it is refused, no audit entry goes for it.
  const refused = await queue.enqueue('health', 'health', { n: 'h3' });
  assert.is(refused.message, null);
  assert.equal(refused.dropped, []);
  assert.equal(
    queue.next(10, new Set()).map((m) => m.payload['n']),
    ['a2', 'a3', 'a4', 'a5', 'a6', 'a7'],
  );
  assert.is(queue.dropped.health, 3);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('the byte bound counts too, and a newer reported state replaces one still waiting', async () => {
  const dir = await tempDir();
  const { store, queue } = await open(dir, { maxItems: 1000, maxBytes: 1000 });
  for (let i = 0; i < 10; i++) await queue.enqueue('event', 'events', { pad: 'x'.repeat(150), i });
  assert.ok(queue.size.bytes <= 1000, String(queue.size.bytes));
  assert.is(queue.size.items, 5);
  assert.is(queue.next(1, new Set())[0]!.payload['i'], 5);
  await queue.enqueue('reported', 'config/reported', { version: 1 }, true);
  await queue.enqueue('reported', 'config/reported', { version: 2 }, true);
  const reported = queue.next(100, new Set()).filter((m) => m.kind === 'reported');
  assert.equal(
    reported.map((m) => [m.payload['version'], m.retain]),
    [[2, true]],
  );
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('provisioning: none means local; the file, with PEM files beside it; the environment wins; errors name the field', async () => {
  const dataDir = await tempDir();
  const config = ConfigSchema.parse({ dataDir, sync: { boxId: 'host-box' } });
  assert.is(readProvisioning(config, {}), null);

  await mkdir(path.join(dataDir, 'certs'));
  const pem = (what: string) => `-----BEGIN ${what}-----\nAAAA\n-----END ${what}-----\n`;
  await writeFile(path.join(dataDir, 'certs', 'ca.pem'), pem('CERTIFICATE'));
  await writeFile(
    path.join(dataDir, 'provisioning.json'),
    JSON.stringify({ url: 'mqtts://admp.example.net:8883', caFile: 'certs/ca.pem' }),
  );
  const fromFile = readProvisioning(config, {})!;
  assert.is(fromFile.source, path.join(dataDir, 'provisioning.json'));
  assert.is(fromFile.provisioning.boxId, 'host-box', 'the box id defaults to the sync box id');
  assert.is(fromFile.provisioning.ca, pem('CERTIFICATE'));
  assert.is(fromFile.provisioning.protocolVersion, 5);

  const fromEnv = readProvisioning(config, {
    FOGEDGE_ADMP_URL: 'mqtt://10.0.0.5:1883',
    FOGEDGE_ADMP_BOX_ID: 'fleet-7',
    FOGEDGE_ADMP_PROTOCOL_VERSION: '4',
  })!;
  assert.equal(
    [fromEnv.source, fromEnv.provisioning.url, fromEnv.provisioning.boxId, fromEnv.provisioning.protocolVersion],
    ['environment', 'mqtt://10.0.0.5:1883', 'fleet-7', 4],
  );

  await writeFile(
    path.join(dataDir, 'provisioning.json'),
    JSON.stringify({ url: 'ftp://x', certFile: 'certs/missing.pem' }),
  );
  try {
    readProvisioning(config, {});
    assert.unreachable('a bad file is refused');
  } catch (err) {
    assert.instance(err, ProvisioningError);
    assert.match((err as Error).message, /url: an MQTT URL/);
  }
  await writeFile(
    path.join(dataDir, 'provisioning.json'),
    JSON.stringify({ url: 'mqtt://x:1883', certFile: 'certs/missing.pem', keyFile: 'certs/missing.key' }),
  );
  assert.throws(() => readProvisioning(config, {}), /certFile: cannot read certs\/missing.pem \(ENOENT\)/);
  await writeFile(
    path.join(dataDir, 'provisioning.json'),
    JSON.stringify({ url: 'mqtt://x:1883', cert: pem('CERTIFICATE') }),
  );
  assert.throws(() => readProvisioning(config, {}), /key: cert and key go together/);

  // Written by the first-run setup: readable by the box's user only.
  await writeProvisioning(config, {
    url: 'mqtt://x:1883',
    password: 'p4ss',
    topicRoot: 'fogedge/boxes',
    protocolVersion: 5,
  });
  assert.is((await stat(path.join(dataDir, 'provisioning.json'))).mode & 0o777, 0o600);
  assert.is(readProvisioning(config, {})!.provisioning.password, 'p4ss');
  await writeProvisioning(config, null);
  assert.is(readProvisioning(config, {}), null);
  await rm(dataDir, { recursive: true, force: true });
});

test('temperatures as Linux shows them: each thermal zone by its type, in degrees; none on a machine without', async () => {
  const sys = await tempDir();
  for (const [zone, type, temp] of [
    ['thermal_zone0', 'cpu-thermal', '48312'],
    ['thermal_zone1', 'gpu-thermal', '51000'],
    ['thermal_zone2', 'broken', 'n/a'],
  ]) {
    await mkdir(path.join(sys, zone!));
    await writeFile(path.join(sys, zone!, 'type'), `${type}\n`);
    await writeFile(path.join(sys, zone!, 'temp'), `${temp}\n`);
  }
  await mkdir(path.join(sys, 'cooling_device0'));
  assert.equal(await temperatures(sys), [
    { zone: 'cpu-thermal', celsius: 48.312 },
    { zone: 'gpu-thermal', celsius: 51 },
  ]);
  assert.equal(await temperatures(path.join(sys, 'missing')), []);
  await rm(sys, { recursive: true, force: true });
});

test.run();
