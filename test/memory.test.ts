// What a client and a camera cost the box in memory, as bounds the box keeps (the README's "How
// many cameras" gives the figures): the box as its own process, its memory and its ffmpegs' read
// as PSS from /proc (shared libraries counted once), as the System page reads them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { tempDir } from './helpers/box.ts';
import {
  apiAs,
  everyCameraOnline,
  firstAdminSession,
  freePort,
  getJson,
  startNode,
  waitUntil,
  type Proc,
} from './helpers/processes.ts';
import { RtspCamera, cameraClip } from './helpers/video.ts';
import { processTree, pssBytes } from '../services/system/history.ts';

/** Bounds: about twice what this 2-core machine measures (40 to 64 KiB a client, 2 to 9 MiB a
 *  recorded camera, 44 to 56 a detected one: V8 grows its heap in steps), far under a leak. */
const KIB_PER_MQTT_CLIENT = 128;
const MIB_PER_RECORDED_CAMERA = 24;
const MIB_PER_DETECTED_CAMERA = 96;

let box: Proc;
let base: string;
let mqttPort: number;
let dataDir: string;
let token: string;
const mib = () => processTree(box.pid).reduce((sum, p) => sum + pssBytes(p), 0) / 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Memory once it has settled: the lowest of a few readings a second apart (V8 frees in steps). */
const settled = async () => {
  let low = Infinity;
  for (let i = 0; i < 4; i++, await sleep(1000)) low = Math.min(low, mib());
  return low;
};

test.before(async () => {
  dataDir = await tempDir();
  const port = await freePort();
  mqttPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  box = startNode({
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__MQTT: '{}',
    FOGEDGE__MQTT__HOST: '127.0.0.1',
    FOGEDGE__MQTT__PORT: String(mqttPort),
    FOGEDGE__MQTT__TLSPORT: 'null',
    FOGEDGE__DETECTOR__ENABLED: 'true',
  });
  await waitUntil(
    'the box healthy',
    async () => (await getJson(`${base}/api/v1/health`).catch(() => null))?.status === 200,
    60_000,
  );
  token = await firstAdminSession(base, 'admin', 'admin-password-1');
});
test.after(async () => {
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test(`1,000 MQTT clients signed in and subscribed cost the box under ${KIB_PER_MQTT_CLIENT} KiB each, and each is served`, async () => {
  const before = await settled();
  const clients: MqttClient[] = [];
  try {
    for (let i = 0; i < 1000; i += 50)
      clients.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, async (_, j) => {
            const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
              clientId: `memory-${i + j}`,
              username: 'admin',
              password: token,
              reconnectPeriod: 0,
              connectTimeout: 30_000,
            });
            await c.subscribeAsync('fogedge/status', { qos: 1 });
            return c;
          }),
        )),
      );
    const after = await settled();
    const perClient = ((after - before) * 1024) / clients.length;
    console.log(
      `    memory: ${perClient.toFixed(1)} KiB an MQTT client (${before.toFixed(0)} → ${after.toFixed(0)} MiB for 1,000)`,
    );
    assert.ok(
      perClient < KIB_PER_MQTT_CLIENT,
      `${perClient.toFixed(1)} KiB a client (${before.toFixed(0)} → ${after.toFixed(0)} MiB)`,
    );
    // Held, not dropped: each got the box's retained status on subscribing.
    const got = await Promise.all(
      clients.map(
        (c) =>
          new Promise<boolean>((resolve) => {
            c.once('message', () => resolve(true));
            setTimeout(() => resolve(false), 10_000);
            void c.unsubscribeAsync('fogedge/status').then(() => c.subscribeAsync('fogedge/status', { qos: 1 }));
          }),
      ),
    );
    assert.is(got.filter(Boolean).length, clients.length, 'every client still served');
  } finally {
    for (const c of clients) c.end(true);
  }
});

test(`cameras: under ${MIB_PER_RECORDED_CAMERA} MiB each recorded, under ${MIB_PER_DETECTED_CAMERA} MiB each recorded and detected (the box and its ffmpegs)`, async () => {
  const api = apiAs(base, token);
  const clip = await cameraClip();
  const cameras = await Promise.all([1, 2].map(async () => new RtspCamera(await freePort(), { clip })));
  try {
    await Promise.all(cameras.map((c) => c.start()));
    const none = await settled();
    for (const [i, c] of cameras.entries()) {
      const res = await api('POST', '/api/v1/cameras', {
        id: `cam-${i}`,
        name: `cam-${i}`,
        source: { kind: 'rtsp', url: c.url() },
        detection: { enabled: false },
      });
      assert.is(res.status, 201, JSON.stringify(res.json));
    }
    await everyCameraOnline(api, 30_000);
    await sleep(5000);
    const recorded = await settled();
    for (let i = 0; i < cameras.length; i++)
      assert.is((await api('PATCH', `/api/v1/cameras/cam-${i}`, { detection: { enabled: true } })).status, 200);
    await waitUntil(
      'both cameras detecting',
      async () => {
        const status = (await api('GET', '/api/v1/detector/status')).json as {
          cameras: Record<string, { frames: number }>;
        };
        return [0, 1].every((i) => (status.cameras[`cam-${i}`]?.frames ?? 0) > 20);
      },
      60_000,
    );
    const detected = await settled();
    const perRecorded = (recorded - none) / cameras.length;
    const perDetected = (detected - none) / cameras.length;
    const figures = `${none.toFixed(0)} MiB with none, ${recorded.toFixed(0)} recorded, ${detected.toFixed(0)} detected`;
    console.log(
      `    memory: ${perRecorded.toFixed(1)} MiB a recorded camera, ${perDetected.toFixed(1)} MiB a detected one (${figures})`,
    );
    assert.ok(perRecorded < MIB_PER_RECORDED_CAMERA, `${perRecorded.toFixed(1)} MiB a recorded camera (${figures})`);
    assert.ok(perDetected < MIB_PER_DETECTED_CAMERA, `${perDetected.toFixed(1)} MiB a detected camera (${figures})`);
  } finally {
    await Promise.all(cameras.map((c) => c.stop()));
  }
});

test.run();
