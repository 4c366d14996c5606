// The camera's A/B firmware slots on a real disk with images served over real HTTP: what is
// accepted, what is refused (and that the running slot is never touched), and the trial after
// Activate() that ends in a confirmation or a rollback.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildImage, verifyImage } from '../lib/firmware-image.ts';
import { FirmwareError, FirmwareSlots } from '../camera-agent/firmware-slots.ts';
import { tempDir } from './helpers/box.ts';
import { VendorServer } from './helpers/vendor-server.ts';

const vendor = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');
const MODEL = 'fogcam-1';
const SLOT_BYTES = 64 * 1024;
let vendorServer: VendorServer;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const image = (version: string, opts: { key?: typeof vendor.privateKey; model?: string; payload?: Buffer } = {}) =>
  buildImage(opts.payload ?? randomBytes(8000), { model: opts.model ?? MODEL, version }, opts.key ?? vendor.privateKey);
const serve = (name: string, body: Buffer) => vendorServer.serve(name, body).url;
const open = async (dir?: string) => {
  const d = dir ?? (await tempDir('fogedge-fw-'));
  return {
    dir: d,
    slots: await FirmwareSlots.open(d, {
      vendorKey: vendor.publicKey,
      model: MODEL,
      slotBytes: SLOT_BYTES,
      factoryVersion: '1.0.0',
    }),
  };
};
const refusal = async (work: Promise<unknown>): Promise<FirmwareError> => {
  try {
    await work;
  } catch (err) {
    assert.instance(err, FirmwareError);
    return err as FirmwareError;
  }
  throw new Error('expected a refusal');
};

test.before(async () => {
  vendorServer = await VendorServer.start((name, res) => {
    if (name !== 'truncated.img') return false;
    // Says it is whole, sends half, then the connection drops.
    const body = image('2.0.0');
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, body.length / 2));
    setTimeout(() => res.destroy(), 50);
    return true;
  });
});
test.after(() => vendorServer.close());

test('the image format: a vendor-signed manifest with the payload hash; any change is caught', () => {
  const img = image('2.0.0');
  assert.is(verifyImage(img, vendor.publicKey, MODEL).version, '2.0.0');
  const flipped = Buffer.from(img);
  flipped[flipped.length - 1]! ^= 1;
  assert.throws(() => verifyImage(flipped, vendor.publicKey, MODEL), /does not match its signed manifest/);
  const relabeled = Buffer.from(img.toString('latin1').replace('"2.0.0"', '"9.0.0"'), 'latin1');
  assert.throws(() => verifyImage(relabeled, vendor.publicKey, MODEL), /not signed by the vendor key/);
  assert.throws(() => verifyImage(Buffer.from('hello'), vendor.publicKey, MODEL), /bad magic/);
});

test('Download() writes the inactive slot; Activate() puts it on trial; confirmed, it stays', async () => {
  const { dir, slots } = await open();
  assert.equal([slots.active, slots.version], ['A', '1.0.0']);
  const img = image('2.0.0');
  const manifest = await slots.download(serve('good.img', img), { fileSize: img.length, sha256: sha(img) });
  assert.is(manifest.version, '2.0.0');
  assert.equal(slots.slot('B'), { name: 'B', version: '2.0.0', status: 'Available', available: true });
  assert.equal([slots.active, slots.version], ['A', '1.0.0'], 'still running the old one');
  await slots.activate('B', 60, 'campaign-1');
  // Rebooted: the bootloader's step, then the agent confirms itself.
  const reopened = (await open(dir)).slots;
  const boot = await reopened.beginBoot();
  assert.equal(
    [boot.active, boot.trying?.boots, boot.lastBoot.firmwareUpdated, boot.lastBoot.commandKey],
    ['B', 1, true, 'campaign-1'],
  );
  assert.is(reopened.version, '2.0.0');
  assert.ok(await reopened.confirm());
  assert.is((await open(dir)).slots.state.trying, null);
  await rm(dir, { recursive: true, force: true });
});

test('refused, with the running slot untouched: bad signature, wrong hash, other model, truncated, too large, not found', async () => {
  const { dir, slots } = await open();
  const cases: Array<[string, () => Promise<unknown>, RegExp, number, string]> = [];
  const forged = image('6.6.6', { key: stranger.privateKey });
  cases.push([
    'forged',
    () => slots.download(serve('forged.img', forged), { sha256: sha(forged) }),
    /not signed by the vendor key/,
    7022,
    'ValidationFailed',
  ]);
  const img = image('2.0.0');
  cases.push([
    'wrong hash',
    () => slots.download(serve('img.img', img), { sha256: 'b'.repeat(64) }),
    /SHA-256 is/,
    7022,
    'ValidationFailed',
  ]);
  cases.push([
    'other model',
    () => slots.download(serve('other.img', image('2.0.0', { model: 'doorbell-3' })), {}),
    /for model "doorbell-3"/,
    7022,
    'ValidationFailed',
  ]);
  cases.push([
    'truncated',
    () => slots.download(`${vendorServer.url}/truncated.img`, {}),
    /terminated|aborted|socket|closed/i,
    7022,
    'DownloadFailed',
  ]);
  cases.push([
    'too large (said)',
    () => slots.download(serve('big.img', img), { fileSize: SLOT_BYTES + 1 }),
    /larger than the slot/,
    7005,
    'NoImage',
  ]);
  cases.push([
    'too large (sent)',
    () => slots.download(serve('huge.img', image('2.0.0', { payload: randomBytes(SLOT_BYTES) })), {}),
    /larger than the slot/,
    7005,
    'DownloadFailed',
  ]);
  cases.push([
    'short of its size',
    () => slots.download(serve('short.img', img), { fileSize: img.length + 10 }),
    /ended after/,
    7022,
    'DownloadFailed',
  ]);
  cases.push([
    'not found',
    () => slots.download(`${vendorServer.url}/missing.img`, {}),
    /HTTP 404/,
    7022,
    'DownloadFailed',
  ]);
  for (const [what, work, message, code, status] of cases) {
    const err = await refusal(work());
    assert.match(err.message, message, what);
    assert.is(err.code, code, what);
    if (status !== 'NoImage') assert.is(slots.slot('B').status, status, what);
    assert.not.ok(
      existsSync(path.join(dir, 'B.img')) || existsSync(path.join(dir, 'B.img.part')),
      `${what}: nothing left in the slot`,
    );
    assert.equal(
      [slots.active, slots.version, slots.slot('A').status],
      ['A', '1.0.0', 'Available'],
      `${what}: the running slot untouched`,
    );
  }
  await refusal(slots.activate('B', 60)).then((err) => assert.match(err.message, /no image that can be activated/));
  await refusal(slots.activate('A', 60)).then((err) => assert.match(err.message, /already active/));
  await rm(dir, { recursive: true, force: true });
});

test('a slot on trial that keeps failing, or is not confirmed in time, is rolled back with the reason in BootFailureLog', async () => {
  const { dir, slots } = await open();
  const img = image('3.0.0');
  await slots.download(serve('v3.img', img), {});
  await slots.activate('B', 600);
  for (let boot = 1; boot <= 3; boot++) assert.is((await slots.beginBoot()).active, 'B', `boot ${boot} tries B`);
  const after = await slots.beginBoot();
  assert.equal([after.active, after.trying, after.lastBoot.rolledBack], ['A', null, true]);
  assert.match(
    after.bootFailureLog,
    /version 3\.0\.0 \(slot B\) rolled back: started 3 times without becoming healthy/,
  );
  assert.equal([slots.slot('B').status, slots.slot('B').available], ['ActivationFailed', false]);
  assert.is(slots.version, '1.0.0');

  // The deadline: not confirmed in time.
  await slots.download(serve('v3b.img', image('3.0.1')), {});
  await slots.activate('B', 5);
  assert.is((await slots.beginBoot()).active, 'B');
  const late = await slots.beginBoot(Date.now() + 6000);
  assert.is(late.active, 'A');
  assert.match(late.bootFailureLog, /3\.0\.1 .* not confirmed healthy by/);
  await rm(dir, { recursive: true, force: true });
});

test('a stop in the middle: a download cut off leaves the slot failed and empty; a half-written boot state is ignored', async () => {
  const { dir } = await open();
  // As a kill during Download() leaves it: the slot marked Downloading, a partial file.
  await writeFile(
    path.join(dir, 'B.json'),
    JSON.stringify({ name: 'B', version: '', status: 'Downloading', available: false }),
  );
  await writeFile(path.join(dir, 'B.img.part'), randomBytes(1000));
  // As a power cut during Activate() leaves it: the new boot state not yet renamed into place.
  await writeFile(path.join(dir, 'boot.json.tmp'), '{"active": "B", "trying": nul');
  const { slots } = await open(dir);
  assert.equal([slots.active, slots.version], ['A', '1.0.0']);
  assert.is(slots.slot('B').status, 'DownloadFailed');
  assert.match(slots.slot('B').fault!, /interrupted/);
  assert.not.ok(existsSync(path.join(dir, 'B.img.part')));
  // And the next download goes through.
  const img = image('2.1.0');
  await slots.download(serve('v21.img', img), { sha256: sha(img) });
  assert.is(JSON.parse(await readFile(path.join(dir, 'B.json'), 'utf8')).version, '2.1.0');
  await rm(dir, { recursive: true, force: true });
});

test.run();
