// The camera agent as its own process (under its bootloader loop), several of them, against a
// real box: paired in the box's pairing window, allowed by the installer, given a push camera and
// its stream key, pushing the street clip over RTMP; commands, status and the will; firmware
// campaigns over USP (all updated; killed during Download() and Activate(); a forged image; a
// version rolled back by the bootloader); the box's broker and ingest restarted; the camera's own
// motion events; a source that is a real RTSP encoder, and one the agent encodes itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildImage } from '../lib/firmware-image.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import type { Campaign } from '../services/usp/usp.schemas.ts';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { RtspCamera } from './helpers/video.ts';
import { VendorServer } from './helpers/vendor-server.ts';
import { freePort, Proc, waitUntil } from './helpers/processes.ts';
import mqtt from 'mqtt';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const vendor = generateKeyPairSync('ed25519');
let vendorServer: VendorServer;
let box: TestBox;
let admin: string;
let keyFile: string;
const agents = new Map<string, { proc: Proc; dir: string }>();

const api = (method: string, url: string, body?: unknown) =>
  box.request(method, url, { auth: admin, ...(body ? { body } : {}) });
const camera = async (id: string) => (await api('GET', `/api/v1/cameras/${id}`)).json;
const publish = (version: string, payloadBytes = 20_000) => {
  return vendorServer.serve(
    `${version}.img`,
    buildImage(randomBytes(payloadBytes), { model: 'fogcam-1', version }, vendor.privateKey),
  );
};
const finished = (id: string, timeoutMs = 90_000) =>
  waitUntil(
    `campaign ${id} finished`,
    async () => {
      const c = (await api('GET', `/api/v1/usp/campaigns/${id}`)).json as Campaign;
      return c.state !== 'running' && c;
    },
    timeoutMs,
    250,
  );

async function startAgent(id: string, source = DEMO_CLIP, extra: string[] = []) {
  const dir = await tempDir(`fogedge-agent-${id}-`);
  const proc = new Proc(process.execPath, [
    '--import',
    'tsx',
    'camera-agent/boot.ts',
    '--box',
    '127.0.0.1',
    '--mqtt-port',
    String(box.config.mqtt!.port),
    '--id',
    id,
    '--name',
    `Agent ${id}`,
    '--source',
    source,
    '--vendor-key',
    keyFile,
    '--data',
    dir,
    '--trial-seconds',
    '30',
    '--broken-versions',
    '3.0.0',
    ...extra,
  ]);
  agents.set(id, { proc, dir });
  return proc;
}

test.before(async () => {
  vendorServer = await VendorServer.start();
  const httpPort = await freePort();
  box = await testBox({
    http: { port: httpPort },
    mqtt: { host: '127.0.0.1', port: await freePort(), tlsPort: null },
    video: {
      rtmp: { host: '127.0.0.1', port: await freePort() },
      segmentSeconds: 2,
      stallSeconds: 5,
      restartMinMs: 300,
      restartMaxMs: 2000,
    },
    usp: { imageBaseUrl: `http://127.0.0.1:${httpPort}`, firmwareSources: [vendorServer.url] },
  });
  admin = await withAdmin(box);
  keyFile = path.join(await tempDir(), 'vendor.pub.pem');
  await writeFile(keyFile, vendor.publicKey.export({ type: 'spki', format: 'pem' }));
});
test.after(async () => {
  for (const { proc, dir } of agents.values()) {
    await proc.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
  await box.stop();
  vendorServer.close();
});

test('two cameras pair in the window, are allowed, get their push camera and key, and go online with video', async () => {
  assert.is((await api('POST', '/api/v1/devices/pairing', { seconds: 120 })).status, 200);
  for (const id of ['cam-porch', 'cam-yard']) await startAgent(id);
  await waitUntil(
    'both pending',
    async () =>
      ((await api('GET', '/api/v1/devices?state=pending')).json.devices as Array<{ id: string }>).length === 2,
    30_000,
  );
  for (const id of ['cam-porch', 'cam-yard'])
    assert.is((await api('PATCH', `/api/v1/devices/${id}`, { state: 'allowed' })).status, 200);
  for (const id of ['cam-porch', 'cam-yard']) {
    await waitUntil(`${id} online`, async () => (await camera(id))?.status?.state === 'online', 60_000, 250);
    const c = await camera(id);
    assert.equal([c.name, c.source.kind, c.status.codec], [`Agent ${id}`, 'rtmp', 'h264']);
  }
  const endpoints = (await api('GET', '/api/v1/usp/endpoints')).json as Array<{
    device: string;
    softwareVersion: string;
  }>;
  assert.equal(endpoints.map((e) => [e.device, e.softwareVersion]).sort(), [
    ['cam-porch', '1.0.0'],
    ['cam-yard', '1.0.0'],
  ]);
});

test('commands: a snapshot of the camera, its stream restarted, a size change refused for a copied stream; its status retained, its will when it dies', async () => {
  const snap = await api('POST', '/api/v1/usp/endpoints/cam-porch/command', { command: 'snapshot' });
  assert.is(snap.status, 200, snap.text);
  assert.equal([...Buffer.from(snap.json.jpegBase64, 'base64').subarray(0, 2)], [0xff, 0xd8]);
  const size = await api('POST', '/api/v1/usp/endpoints/cam-porch/command', {
    command: 'set-video',
    width: 640,
    height: 360,
  });
  assert.is(size.json.error.type, 'AGENT_REFUSED');
  assert.match(size.json.error.message, /copied from a file/);
  assert.is((await api('POST', '/api/v1/usp/endpoints/cam-porch/command', { command: 'restart-stream' })).status, 200);
  assert.is((await api('POST', '/api/v1/usp/endpoints/cam-porch/command', { command: 'format-disk' })).status, 422);
  // An app user with devices.manage reads the devices' status topics.
  const token = (await api('POST', '/api/v1/tokens', { name: 'mqtt' })).json.token as string;
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${box.config.mqtt!.port}`, {
    username: 'admin',
    password: token,
    reconnectPeriod: 0,
  });
  const statuses: Array<{ id: string; body: any }> = [];
  watcher.on('message', (topic, payload) =>
    statuses.push({ id: topic.split('/')[2]!, body: JSON.parse(payload.toString()) }),
  );
  await watcher.subscribeAsync('fogedge/devices/+/status', { qos: 1 });
  const porch = await waitUntil('the retained status', () =>
    statuses.find((x) => x.id === 'cam-porch' && x.body.online),
  );
  assert.equal(
    [porch.body.version, typeof porch.body.uptimeSeconds, porch.body.endpointId],
    ['1.0.0', 'number', 'os::fogcam-1-cam-porch'],
  );
  await killAgentChild(agents.get('cam-porch')!.proc.pid);
  await waitUntil('the will', () => statuses.some((x) => x.id === 'cam-porch' && x.body.online === false), 15_000);
  await waitUntil(
    'back by itself',
    () => statuses.filter((x) => x.id === 'cam-porch' && x.body.online).length >= 2,
    30_000,
  );
  await watcher.endAsync();
  await waitUntil(
    'cam-porch online again',
    async () => (await camera('cam-porch'))?.status?.state === 'online',
    60_000,
    250,
  );
});

test('a campaign updates both: each reboots into 2.0.0, confirms itself, and its video comes back', async () => {
  const image = publish('2.0.0');
  const c = await finished(
    (await api('POST', '/api/v1/usp/campaigns', { ...image, model: 'fogcam-1', concurrency: 2 })).json.id,
  );
  assert.is(c.state, 'succeeded', JSON.stringify(c.targets));
  for (const id of ['cam-porch', 'cam-yard']) {
    assert.ok(
      agents.get(id)!.proc.lines.some((l) => /rebooting: Activate\(\)/.test(l)),
      `${id} rebooted`,
    );
    await waitUntil(`${id} online again`, async () => (await camera(id))?.status?.state === 'online', 60_000, 250);
  }
  const endpoints = (await api('GET', '/api/v1/usp/endpoints')).json as Array<{
    device: string;
    softwareVersion: string;
  }>;
  assert.ok(
    endpoints.every((e) => e.softwareVersion === '2.0.0'),
    JSON.stringify(endpoints),
  );
});

test('a camera killed during Download() boots its good image again; the campaign says it restarted', async () => {
  const image = publish('2.1.0', 40 * 1024 * 1024); // big enough to be cut off
  const started = (await api('POST', '/api/v1/usp/campaigns', { ...image, devices: ['cam-yard'] })).json as Campaign;
  const proc = agents.get('cam-yard')!.proc;
  await waitUntil(
    'the download under way',
    async () =>
      ((await api('GET', `/api/v1/usp/campaigns/${started.id}`)).json as Campaign).targets[
        Object.keys(started.targets)[0]!
      ]!.state === 'downloading',
    30_000,
    20,
  );
  // The agent itself (not its bootloader) dies, as in a power cut of the camera's main process.
  const before = proc.lines.length;
  await killAgentChild(proc.pid);
  const c = await finished(started.id, 60_000);
  const t = Object.values(c.targets)[0]!;
  assert.is(t.state, 'failed');
  assert.match(t.reason!, /restarted during Download\(\)/, t.reason!);
  assert.ok(proc.lines.slice(before).some((l) => /booting again/.test(l)));
  await waitUntil(
    'cam-yard online on its good image',
    async () => (await camera('cam-yard'))?.status?.state === 'online',
    60_000,
    250,
  );
  const info = (
    await api('POST', '/api/v1/usp/endpoints/cam-yard/get', {
      paths: ['Device.DeviceInfo.SoftwareVersion', 'Device.DeviceInfo.FirmwareImage.*.Status'],
    })
  ).json;
  assert.is(info[0].resolvedPathResults[0].resultParams.SoftwareVersion, '2.0.0');
  assert.ok(
    info[1].resolvedPathResults.some((r: { resultParams: { Status: string } }) =>
      ['DownloadFailed', 'Available'].includes(r.resultParams.Status),
    ),
  );
});

test('a camera killed during Activate() comes up on a good image, and the campaign agrees with it', async () => {
  const image = publish('2.2.0');
  const started = (await api('POST', '/api/v1/usp/campaigns', { ...image, devices: ['cam-porch'], trialSeconds: 30 }))
    .json as Campaign;
  const target = () =>
    api('GET', `/api/v1/usp/campaigns/${started.id}`).then((r) => Object.values((r.json as Campaign).targets)[0]!);
  await waitUntil('activating', async () => (await target()).state === 'activating', 30_000, 10);
  await killAgentChild(agents.get('cam-porch')!.proc.pid);
  const c = await finished(started.id, 120_000);
  const t = Object.values(c.targets)[0]!;
  const info = await waitUntil(
    'cam-porch answering',
    async () => {
      const r = await api('POST', '/api/v1/usp/endpoints/cam-porch/get', {
        paths: [
          'Device.DeviceInfo.SoftwareVersion',
          'Device.DeviceInfo.BootFirmwareImage',
          'Device.DeviceInfo.ActiveFirmwareImage',
        ],
      });
      return r.status === 200 && r.json;
    },
    60_000,
    250,
  );
  const version = info[0].resolvedPathResults[0].resultParams.SoftwareVersion;
  // Either the new image took (and confirmed itself) or the old one runs: never a camera in between.
  if (t.state === 'succeeded') assert.is(version, '2.2.0');
  else {
    assert.is(version, '2.0.0', t.reason!);
    assert.match(t.reason!, /restarted before Activate\(\) took|rolled back/);
  }
  assert.is(
    info[1].resolvedPathResults[0].resultParams.BootFirmwareImage,
    info[2].resolvedPathResults[0].resultParams.ActiveFirmwareImage,
    'not left on trial',
  );
  await waitUntil('cam-porch online', async () => (await camera('cam-porch'))?.status?.state === 'online', 60_000, 250);
});

test('a forged image is refused by the camera; a version that never gets healthy is rolled back by its bootloader, and the campaign says why', async () => {
  const stranger = generateKeyPairSync('ed25519');
  const forgedImage = vendorServer.serve(
    'forged.img',
    buildImage(randomBytes(10_000), { model: 'fogcam-1', version: '6.6.6' }, stranger.privateKey),
  );
  const forged = await finished(
    (await api('POST', '/api/v1/usp/campaigns', { ...forgedImage, devices: ['cam-yard'] })).json.id,
  );
  assert.match(Object.values(forged.targets)[0]!.reason!, /7022 The image is not signed by the vendor key/);
  const before = (
    await api('POST', '/api/v1/usp/endpoints/cam-yard/get', { paths: ['Device.DeviceInfo.SoftwareVersion'] })
  ).json[0].resolvedPathResults[0].resultParams.SoftwareVersion;
  // 3.0.0 is what this agent never reports healthy (--broken-versions): its trial runs out.
  const c = await finished(
    (await api('POST', '/api/v1/usp/campaigns', { ...publish('3.0.0'), devices: ['cam-yard'], trialSeconds: 10 })).json
      .id,
    120_000,
  );
  assert.is(c.state, 'failed');
  assert.match(Object.values(c.targets)[0]!.reason!, /rolled back/);
  const after = await waitUntil(
    'cam-yard answering',
    async () => {
      const r = await api('POST', '/api/v1/usp/endpoints/cam-yard/get', {
        paths: ['Device.DeviceInfo.SoftwareVersion', 'Device.DeviceInfo.FirmwareImage.'],
      });
      return r.status === 200 && r.json;
    },
    60_000,
    250,
  );
  assert.is(after[0].resolvedPathResults[0].resultParams.SoftwareVersion, before);
  const logs = after[1].resolvedPathResults
    .map((r: { resultParams: Record<string, string> }) => r.resultParams['BootFailureLog'])
    .join(' ');
  assert.match(logs, /3\.0\.0.*not confirmed healthy/);
  await waitUntil('cam-yard online', async () => (await camera('cam-yard'))?.status?.state === 'online', 60_000, 250);
});

test("the box's broker and video ingest restarted: the cameras reconnect by themselves and stream again", async () => {
  const res = (await box.broker.call('system.restartServices', { services: ['mqtt', 'streams'] })) as {
    restarted: string[];
    tookMs: number;
  };
  assert.equal(res.restarted, ['mqtt', 'streams']);
  for (const id of ['cam-porch', 'cam-yard']) {
    await waitUntil(`${id} online again`, async () => (await camera(id))?.status?.state === 'online', 90_000, 250);
    // Its USP endpoint answers again over the new broker.
    const r = await api('POST', `/api/v1/usp/endpoints/${id}/get`, { paths: ['Device.DeviceInfo.SoftwareVersion'] });
    assert.is(r.status, 200, r.text);
  }
});

test("a camera's own motion: the agent reports start and end, the box makes them an event with a snapshot, and MQTT says motion ON then OFF", async () => {
  // 3 s of the street, then 8 s of its last frame held: motion, then none (looped by the agent).
  const clip = path.join(await tempDir(), 'walk-then-still.mp4');
  await execFileAsync('ffmpeg', [
    '-v',
    'error',
    '-t',
    '3',
    '-i',
    DEMO_CLIP,
    '-vf',
    'scale=640:-2,tpad=stop_mode=clone:stop_duration=8',
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-g',
    '15',
    '-an',
    clip,
  ]);
  const token = (await api('POST', '/api/v1/tokens', { name: 'mqtt-motion' })).json.token as string;
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${box.config.mqtt!.port}`, {
    username: 'admin',
    password: token,
    reconnectPeriod: 0,
  });
  const states: string[] = [];
  const occupancy: string[] = [];
  watcher.on('message', (topic, payload) => (topic.endsWith('/motion') ? states : occupancy).push(payload.toString()));
  await watcher.subscribeAsync(['fogedge/cameras/cam-gate/motion', 'fogedge/cameras/cam-gate/occupancy'], { qos: 1 });
  assert.is((await api('POST', '/api/v1/devices/pairing', { seconds: 120 })).status, 200);
  await startAgent('cam-gate', clip, ['--motion', '--motion-quiet-seconds', '2']);
  await waitUntil(
    'cam-gate pending',
    async () =>
      ((await api('GET', '/api/v1/devices?state=pending')).json.devices as Array<{ id: string }>).some(
        (d) => d.id === 'cam-gate',
      ),
    30_000,
  );
  assert.is((await api('PATCH', '/api/v1/devices/cam-gate', { state: 'allowed' })).status, 200);
  // The first may end before the camera's first picture: one with both.
  const ended = await waitUntil(
    'a motion event that ended, with its picture',
    async () => {
      const events = (await api('GET', '/api/v1/events?camera=cam-gate&label=motion')).json as Array<{
        id: string;
        end: string | null;
        hasSnapshot: boolean;
        start: string;
      }>;
      return events.find((e) => e.end && e.hasSnapshot);
    },
    60_000,
    250,
  );
  assert.match(ended.id, /^cam-gate-m-[a-z0-9]+-\d+$/);
  assert.ok(Date.parse(ended.end!) - Date.parse(ended.start) >= 1000, 'it lasted while people walked');
  assert.ok(ended.hasSnapshot, 'the live picture at its start');
  const snap = await api('GET', `/api/v1/events/${ended.id}/snapshot.jpg`);
  assert.is(snap.status, 200);
  await waitUntil('motion ON then OFF over MQTT', () => states.includes('ON') && states.at(-1) === 'OFF', 15_000);
  assert.ok(!occupancy.includes('ON'), 'motion is not an object: occupancy stays OFF');
  assert.ok(agents.get('cam-gate')!.proc.lines.some((l) => /motion end/.test(l)));
  await watcher.endAsync();
  await agents.get('cam-gate')!.proc.kill('SIGTERM');
});

test('a camera whose source is its own RTSP encoder: the agent pushes it copied, takes a snapshot from it, and refuses a size change', async () => {
  const encoder = new RtspCamera(await freePort());
  await encoder.start();
  try {
    assert.is((await api('POST', '/api/v1/devices/pairing', { seconds: 120 })).status, 200);
    await startAgent('cam-door', encoder.url());
    await waitUntil(
      'cam-door pending',
      async () =>
        ((await api('GET', '/api/v1/devices?state=pending')).json.devices as Array<{ id: string }>).some(
          (d) => d.id === 'cam-door',
        ),
      30_000,
    );
    assert.is((await api('PATCH', '/api/v1/devices/cam-door', { state: 'allowed' })).status, 200);
    await waitUntil('cam-door online', async () => (await camera('cam-door'))?.status?.state === 'online', 60_000, 250);
    const c = await camera('cam-door');
    assert.equal([c.status.codec, c.status.width], ['h264', 1280], "the encoder's stream, not re-encoded");
    const snap = await api('POST', '/api/v1/usp/endpoints/cam-door/command', { command: 'snapshot' });
    assert.is(snap.status, 200, snap.text);
    assert.equal([...Buffer.from(snap.json.jpegBase64, 'base64').subarray(0, 2)], [0xff, 0xd8]);
    const size = await api('POST', '/api/v1/usp/endpoints/cam-door/command', {
      command: 'set-video',
      bitrateKbps: 500,
    });
    assert.match(size.json.error.message, /camera's encoder/);
  } finally {
    await agents.get('cam-door')?.proc.kill('SIGTERM');
    await encoder.stop();
  }
});

// No V4L2 device can exist on this machine (no /dev/video*, no kernel modules to load): a camera
// whose frames are encoded by the agent is run on ffmpeg's test pattern instead, through the same
// encoder, size and bitrate changes and snapshots from the push itself; only opening the device differs.
test('a camera that encodes its own frames: H.264 at the set size, set-video changes it and the box sees it, snapshots come from the push', async () => {
  assert.is((await api('POST', '/api/v1/devices/pairing', { seconds: 120 })).status, 200);
  await startAgent('cam-lab', 'pattern');
  await waitUntil(
    'cam-lab pending',
    async () =>
      ((await api('GET', '/api/v1/devices?state=pending')).json.devices as Array<{ id: string }>).some(
        (d) => d.id === 'cam-lab',
      ),
    30_000,
  );
  assert.is((await api('PATCH', '/api/v1/devices/cam-lab', { state: 'allowed' })).status, 200);
  await waitUntil(
    'cam-lab online at 1280x720',
    async () => (await camera('cam-lab'))?.status?.width === 1280,
    60_000,
    250,
  );
  assert.is((await camera('cam-lab')).status.codec, 'h264');
  const snap = await waitUntil(
    'a snapshot',
    async () => {
      const r = await api('POST', '/api/v1/usp/endpoints/cam-lab/command', { command: 'snapshot' });
      return r.status === 200 && r;
    },
    15_000,
    500,
  );
  assert.equal([...Buffer.from(snap.json.jpegBase64, 'base64').subarray(0, 2)], [0xff, 0xd8]);
  const set = await api('POST', '/api/v1/usp/endpoints/cam-lab/command', {
    command: 'set-video',
    width: 640,
    height: 360,
    bitrateKbps: 400,
  });
  assert.is(set.status, 200, set.text);
  assert.equal([set.json.width, set.json.height, set.json.bitrateKbps], [640, 360, 400]);
  await waitUntil('the box sees 640x360', async () => (await camera('cam-lab'))?.status?.width === 640, 60_000, 250);
  assert.is((await camera('cam-lab')).status.height, 360);
  // Rebooted (as after a firmware update): the camera comes back with the size the box set.
  assert.is((await api('POST', '/api/v1/usp/endpoints/cam-lab/command', { command: 'reboot' })).status, 200);
  const endpoint = async () =>
    ((await api('GET', '/api/v1/usp/endpoints')).json as Array<{ device: string; connected?: boolean }>).find(
      (e) => e.device === 'cam-lab',
    );
  await waitUntil('cam-lab rebooting', async () => (await endpoint())?.connected === false, 30_000, 100);
  await waitUntil('cam-lab back', async () => (await endpoint())?.connected === true, 60_000, 250);
  const after = await waitUntil(
    'cam-lab answering',
    async () => {
      const r = await api('POST', '/api/v1/usp/endpoints/cam-lab/command', { command: 'set-video', bitrateKbps: 300 });
      return r.status === 200 && r.json;
    },
    30_000,
    500,
  );
  assert.equal([after.width, after.height, after.bitrateKbps], [640, 360, 300], 'the size set before the reboot, kept');
  await agents.get('cam-lab')!.proc.kill('SIGTERM');
});

/** SIGKILL to the agent process under the bootloader (its child). */
async function killAgentChild(bootPid: number) {
  const { execFileSync } = await import('node:child_process');
  const pids = execFileSync('pgrep', ['-P', String(bootPid)], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean)
    .map(Number);
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  assert.ok(pids.length > 0, 'the agent process was found');
}

test.run();
