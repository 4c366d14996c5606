// Firmware campaigns from the box's USP controller to camera agents (their code, in this
// process, each over its own real MQTT connection to the box's broker; a reboot is the agent
// stopped and started again on the same disk, as its bootloader would). The signed image comes
// from a vendor server over HTTP; the box fetches it once and the cameras download it from the box.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { buildImage } from '../lib/firmware-image.ts';
import { CameraAgent, type CameraAgentOptions } from '../camera-agent/camera-agent.ts';
import type { Campaign } from '../services/usp/usp.schemas.ts';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { VendorServer } from './helpers/vendor-server.ts';

const vendor = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');
/** Versions that, as a stand-in for broken firmware, never become healthy. */
const broken = new Set<string>();
let vendorServer: VendorServer;
let box: TestBox;
let lockDir: string;
let admin: string;
const agents = new Map<string, CameraAgent>();
const dirs: string[] = [];

const publish = (name: string, version: string, key = vendor.privateKey) => {
  return vendorServer.serve(name, buildImage(randomBytes(20_000), { model: 'fogcam-1', version }, key));
};

async function startCamera(id: string) {
  const secret = (await box.request('POST', '/api/v1/devices', { auth: admin, body: { id, name: id } })).json
    .secret as string;
  const dataDir = await tempDir('fogedge-cam-');
  dirs.push(dataDir);
  const options: CameraAgentOptions = {
    id,
    secret,
    mqttUrl: `mqtt://127.0.0.1:${box.config.mqtt!.port}`,
    dataDir,
    hasStreamKey: () => true,
    vendorKey: vendor.publicKey,
    info: { manufacturer: 'FogEdge', modelName: 'fogcam-1', serialNumber: id },
    factoryVersion: '1.0.0',
    agentVersion: '0.1.0',
    // An hour of its own: a campaign's shorter trial must reach the camera (the rollback test waits 90 s).
    slotBytes: 1 << 20,
    trialSeconds: 3600,
    healthy: () => !broken.has(agents.get(id)!.slots.version),
    // The bootloader: the agent stops, and starts again from its disk.
    reboot: () =>
      void (async () => {
        await agents.get(id)!.stop();
        agents.set(id, await CameraAgent.start(options));
      })(),
  };
  agents.set(id, await CameraAgent.start(options));
}

const campaign = (body: object) => box.request('POST', '/api/v1/usp/campaigns', { auth: admin, body });
const finished = (id: string, timeoutMs = 60_000) =>
  waitUntil(
    `campaign ${id} finished`,
    async () => {
      const c = (await box.request('GET', `/api/v1/usp/campaigns/${id}`, { auth: admin })).json as Campaign;
      return c.state !== 'running' && c;
    },
    timeoutMs,
    200,
  );
const versions = async () =>
  Object.fromEntries(
    (
      (await box.request('GET', '/api/v1/usp/endpoints', { auth: admin })).json as Array<{
        device: string;
        softwareVersion: string;
      }>
    ).map((e) => [e.device, e.softwareVersion]),
  );

test.before(async () => {
  vendorServer = await VendorServer.start();
  const httpPort = await freePort();
  lockDir = await tempDir('fogedge-balena-lock-');
  dirs.push(lockDir);
  box = await testBox({
    http: { port: httpPort },
    mqtt: { host: '127.0.0.1', port: await freePort(), tlsPort: null },
    usp: { imageBaseUrl: `http://127.0.0.1:${httpPort}`, firmwareSources: [vendorServer.url] },
    // Where balena's supervisor would look for its update lock (/tmp/balena/updates.lock on a device).
    update: { lockFile: path.join(lockDir, 'updates.lock') },
  });
  admin = await withAdmin(box);
  for (const id of ['cam-a', 'cam-b', 'cam-c']) await startCamera(id);
  await waitUntil(
    'three cameras known',
    async () => Object.values(await versions()).filter((v) => v === '1.0.0').length === 3,
  );
});
test.after(async () => {
  for (const a of agents.values()) await a.stop();
  await box.stop();
  vendorServer.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('a campaign updates every camera of the model, two at a time: downloaded from the box, activated, rebooted, confirmed', async () => {
  const image = publish('fogcam-2.0.0.img', '2.0.0');
  // balena's update lock, watched as its supervisor would: held while the campaign runs, gone after.
  const lockFile = path.join(lockDir, 'updates.lock');
  let locked = false;
  const watch = setInterval(() => (locked ||= existsSync(lockFile)), 20);
  const res = await campaign({ ...image, model: 'fogcam-1', concurrency: 2, trialSeconds: 30 });
  assert.is(res.status, 200, res.text);
  assert.is(res.json.image.version, '2.0.0');
  // The box's own update waits for the campaign: a restart now would cut it in the middle.
  const update = await box.request('POST', '/api/v1/system/update', { auth: admin, body: { version: '9.9.9' } });
  assert.is(update.status, 409, update.text);
  assert.is(update.json.error.type, 'CAMPAIGN_RUNNING');
  const c = await finished(res.json.id);
  clearInterval(watch);
  assert.ok(locked, 'the update lock was held during the campaign');
  assert.not.ok(existsSync(lockFile), 'and let go when it finished');
  assert.is(c.state, 'succeeded', JSON.stringify(c.targets));
  assert.ok(Object.values(c.targets).every((t) => t.state === 'succeeded' && t.fromVersion === '1.0.0'));
  await waitUntil('versions read again', async () => Object.values(await versions()).every((v) => v === '2.0.0'));
  for (const a of agents.values()) assert.equal([a.slots.active, a.slots.state.trying], ['B', null]);
});

test('a forged image is refused by the first camera and the campaign stops there; nothing changes on any camera', async () => {
  const forged = publish('forged.img', '6.6.6', stranger.privateKey);
  const c = await finished((await campaign({ ...forged, concurrency: 1, maxFailures: 0 })).json.id);
  assert.is(c.state, 'stopped');
  const states = Object.values(c.targets)
    .map((t) => t.state)
    .sort();
  assert.equal(states, ['failed', 'skipped', 'skipped']);
  assert.match(
    Object.values(c.targets).find((t) => t.state === 'failed')!.reason!,
    /Download\(\) failed: 7022 The image is not signed by the vendor key/,
  );
  assert.ok(Object.values(await versions()).every((v) => v === '2.0.0'));
});

test('an image that never becomes healthy is rolled back by the camera, and the campaign says why', async () => {
  broken.add('3.0.0');
  const image = publish('fogcam-3.0.0.img', '3.0.0');
  const c = await finished((await campaign({ ...image, devices: ['cam-a'], trialSeconds: 10 })).json.id, 90_000);
  assert.is(c.state, 'failed');
  const t = Object.values(c.targets)[0]!;
  assert.match(t.reason!, /rolled back to 2\.0\.0: .*version 3\.0\.0 \(slot A\) rolled back: not confirmed healthy/);
  const cam = agents.get('cam-a')!;
  assert.equal([cam.slots.version, cam.slots.slot('A').status], ['2.0.0', 'ActivationFailed']);
});

test('bad requests: an unknown camera, another model, a wrong checksum', async () => {
  const image = publish('fogcam-2.1.0.img', '2.1.0');
  assert.is((await campaign({ ...image, devices: ['nobody'] })).status, 404);
  assert.is((await campaign({ ...image, model: 'doorbell-9' })).json.error.type, 'NO_TARGETS');
  assert.is((await campaign({ url: image.url, sha256: 'c'.repeat(64) })).json.error.type, 'CHECKSUM_MISMATCH');
  assert.is((await box.request('GET', '/firmware/' + 'a'.repeat(64) + '-' + 'b'.repeat(32) + '.img')).status, 404);
});

test.run();
