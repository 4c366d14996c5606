// npm run bench:detect — the detector on the real street clip and the real model.
// 1. Same frames, same process: bare InferenceSession.run (reference) versus the whole
//    per-frame pipeline (motion, letterbox, inference, decode + NMS, tracking).
// 2. The box as a process with real RTSP cameras: CPU per camera at 5 fps with motion
//    gating (street clip, still clip) over recording alone, inferences, and event latency
//    (first frame with the object to the event on MQTT, and on the /api/v1/updates WebSocket).
// SECONDS=20 per phase by default.
import { rm } from 'node:fs/promises';
import { WebSocket } from 'ws';
import mqtt from 'mqtt';
import { ConfigSchema } from '../../appliance/config.ts';
import { MotionDetector } from '../../lib/vision/motion.ts';
import { Tracker } from '../../services/detector/tracker.ts';
import { YoloxModel } from '../../lib/vision/yolox.ts';
import { tempDir } from '../helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode, waitUntil } from '../helpers/processes.ts';
import { clipFrames, ffmpegPids, RtspCamera, stillClip } from '../helpers/video.ts';
import { cpuTicks, pct, TICK } from './proc-stats.ts';

const SECONDS = Number(process.env['SECONDS'] ?? 20);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

// --- 1. Per frame, in process -------------------------------------------------------------
const model = await YoloxModel.load(ConfigSchema.parse({}).detector.modelPath);
const frames = await clipFrames();
const tensors = frames.map((f) => model.letterbox(f).tensor);
for (const t of tensors.slice(0, 5)) await model.runRaw(t); // warm-up

const bare: number[] = [];
for (const t of tensors) {
  const t0 = performance.now();
  await model.runRaw(t);
  bare.push(performance.now() - t0);
}
const motion = new MotionDetector({ threshold: 25, minAreaPercent: 0.05, masks: [] });
const tracker = new Tracker({ maxMisses: 10, minHits: 2, stationaryMove: 0.02, stationaryEndMs: 30_000, zones: [] });
const pipeline: number[] = [];
for (const [seq, frame] of frames.entries()) {
  const t0 = performance.now();
  motion.detect(frame);
  const found = await model.detect(frame, { default: 0.3 });
  tracker.update(found, { seq, at: seq * 200, width: frame.width, height: frame.height }, () => 0.5);
  pipeline.push(performance.now() - t0);
}
const ratio = mean(pipeline) / mean(bare);

// --- 2. The box with real cameras ------------------------------------------------------------
const street = new RtspCamera(await freePort());
const still = new RtspCamera(await freePort(), { clip: await stillClip() });
await Promise.all([street.start(), still.start()]);
const dataDir = await tempDir();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const mqttPort = await freePort();
const box = await startedNode({
  FOGEDGE_DATA_DIR: dataDir,
  PORT: String(port),
  FOGEDGE__HTTP__HOST: '127.0.0.1',
  FOGEDGE__VIDEO__DEMOCAMERA: 'false',
  FOGEDGE__DETECTOR__ENABLED: 'true',
  FOGEDGE__MQTT: '{}',
  FOGEDGE__MQTT__HOST: '127.0.0.1',
  FOGEDGE__MQTT__PORT: String(mqttPort),
  FOGEDGE__MQTT__TLSPORT: 'null',
});
const token = await firstAdminSession(base, 'bench', 'bench-password');
const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
const api = (method: string, path: string, body?: unknown) =>
  getJson(`${base}${path}`, { method, headers: auth, ...(body ? { body: JSON.stringify(body) } : {}) });

const latencies: number[] = [];
const mqttLatencies: number[] = [];
const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
  username: 'bench',
  password: token,
  reconnectPeriod: 0,
});
await subscriber.subscribeAsync('fogedge/events/street/new', { qos: 1 });
subscriber.on('message', (_topic, payload) =>
  mqttLatencies.push(Date.now() - Date.parse(JSON.parse(payload.toString()).start)),
);
const updates = new WebSocket(`ws://127.0.0.1:${port}/api/v1/updates`, {
  headers: { authorization: `Bearer ${token}` },
});
updates.on('message', (m) => {
  const { type, data } = JSON.parse(m.toString());
  if (type === 'event.started' && data.camera === 'street') latencies.push(Date.now() - Date.parse(data.start));
});

/** % of one core used by the box and its ffmpegs over one phase. */
async function cpuOver(seconds: number): Promise<number> {
  const pids = [box.pid, ...ffmpegPids(dataDir).filter((p) => p > 0)];
  const before = pids.map(cpuTicks);
  await sleep(seconds * 1000);
  const now = [box.pid, ...ffmpegPids(dataDir).filter((p) => p > 0)];
  return (now.reduce((s, p) => s + cpuTicks(p) - (before[pids.indexOf(p)] ?? 0), 0) / TICK / seconds) * 100;
}
const detectorStatus = async () =>
  (await api('GET', '/api/v1/detector/status')).json.cameras as Record<
    string,
    { frames: number; inferences: number; motionFrames: number; dropped: number; inferenceMs: number }
  >;

async function phase(camera: 'street' | 'still', cam: RtspCamera) {
  await api('POST', '/api/v1/cameras', {
    id: camera,
    name: camera,
    source: { kind: 'rtsp', url: cam.url() },
    detection: { enabled: false },
  });
  await waitUntil(
    `${camera} online`,
    async () => (await api('GET', `/api/v1/cameras/${camera}`)).json.status?.state === 'online',
    30_000,
    250,
  );
  await sleep(3000);
  const recordOnly = await cpuOver(SECONDS);
  await api('PATCH', `/api/v1/cameras/${camera}`, { detection: { enabled: true, labels: ['person', 'car'] } });
  await waitUntil(`${camera} detecting`, async () => ((await detectorStatus())[camera]?.frames ?? 0) > 5, 30_000, 250);
  const before = (await detectorStatus())[camera]!;
  const withDetection = await cpuOver(SECONDS);
  const after = (await detectorStatus())[camera]!;
  await api('DELETE', `/api/v1/cameras/${camera}`);
  await sleep(2000);
  return {
    recordOnly,
    withDetection,
    detection: withDetection - recordOnly,
    fps: (after.frames - before.frames) / SECONDS,
    inferences: after.inferences - before.inferences,
    motionFrames: after.motionFrames - before.motionFrames,
    dropped: after.dropped - before.dropped,
    inferenceMs: after.inferenceMs,
  };
}

const streetPhase = await phase('street', street);
const stillPhase = await phase('still', still);
updates.close();
subscriber.end(true);
await box.kill('SIGTERM');
await Promise.all([street.stop(), still.stop()]);
await rm(dataDir, { recursive: true, force: true });

const f = (n: number, d = 1) => n.toFixed(d);
console.log(
  `bench:detect — YOLOX nano ${model.size}x${model.size}, onnxruntime-node CPU, 1 thread; ${frames.length} frames of the street clip (416x234 from 1280x720)`,
);
console.log(
  `  bare InferenceSession.run       ${f(mean(bare))} ms/frame (median ${f(pct(bare, 0.5))}, p95 ${f(pct(bare, 0.95))})`,
);
console.log(
  `  whole per-frame pipeline        ${f(mean(pipeline))} ms/frame (motion + letterbox + run + decode/NMS + tracking)`,
);
console.log(`  ratio pipeline / bare           ${f(ratio, 2)}x (target <= 1.15x)`);
console.log(`  sustained on one core           ${f(1000 / mean(pipeline))} frames/s (every frame inferred)`);
console.log(`in the box, ${SECONDS} s per phase, 5 fps per camera:`);
for (const [name, p] of [
  ['street', streetPhase],
  ['still', stillPhase],
] as const) {
  console.log(
    `  ${name.padEnd(6)} recording only ${f(p.recordOnly)} %core, with detection ${f(p.withDetection)} %core => detection ${f(p.detection)} %core/camera; ` +
      `${f(p.fps)} frames/s decoded, ${p.motionFrames} with motion, ${p.inferences} inferences (${p.inferenceMs ?? '-'} ms each), ${p.dropped} dropped`,
  );
}
console.log(
  `  event latency (object's first decoded frame -> event on MQTT): median ${f(pct(mqttLatencies, 0.5), 0)} ms, p95 ${f(pct(mqttLatencies, 0.95), 0)} ms over ${mqttLatencies.length} events (target < 1000 ms)`,
);
console.log(
  `  event latency (object's first decoded frame -> event on the updates WebSocket): median ${f(pct(latencies, 0.5), 0)} ms, p95 ${f(pct(latencies, 0.95), 0)} ms over ${latencies.length} events`,
);
process.exit(0);
