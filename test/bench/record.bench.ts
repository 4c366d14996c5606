// npm run bench:record — N real RTSP cameras (the bundled 1280x720 15 fps clip, looped, from
// GStreamer's RTSP server) recorded for a fixed time. Reference in the same run: one bare
// `ffmpeg -c copy` segment recorder per camera. CAMERAS=4 SECONDS=40 by default. Both are
// measured in steady state, WARMUP=30 s after the last camera is online: a Node process's
// one-off work after its start (JIT, the memory reducer's full GCs) is bench:startup's.
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../helpers/box.ts';
import { freePort, getJson, startedNode, waitUntil } from '../helpers/processes.ts';
import { bareRecorder, ffmpegPids, RtspCamera } from '../helpers/video.ts';
import { WebSocket } from 'ws';
import { cpuNs, rssMiB, threadCpuNs } from './proc-stats.ts';

const CAMERAS = Number(process.env['CAMERAS'] ?? 4);
const SECONDS = Number(process.env['SECONDS'] ?? 40);
const WARMUP_MS = Number(process.env['WARMUP'] ?? 30) * 1000;
const SEGMENT_S = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** % of one core used by these pids over the window, in all and per pid. */
async function measure(pids: () => number[]) {
  const before = new Map(pids().map((p) => [p, cpuNs(p)]));
  await sleep(SECONDS * 1000);
  const each = new Map([...before].map(([pid, t0]) => [pid, ((cpuNs(pid) - t0) / 1e9 / SECONDS) * 100]));
  return { total: [...each.values()].reduce((a, b) => a + b, 0), each };
}

const server = new RtspCamera(await freePort());
await server.start();

// Reference: bare ffmpeg per camera.
const refDir = await tempDir();
const bare = await Promise.all(
  Array.from({ length: CAMERAS }, async (_, i) => {
    await mkdir(path.join(refDir, `c${i}`), { recursive: true });
    return bareRecorder(server.url(), path.join(refDir, `c${i}`), SEGMENT_S);
  }),
);
await sleep(WARMUP_MS);
const refCpu = (await measure(() => bare.map((p) => p.pid!))).total;
const refRss = bare.reduce((s, p) => s + rssMiB(p.pid!), 0);
bare.forEach((p) => p.kill('SIGKILL'));
await rm(refDir, { recursive: true, force: true });

// The box, as a process, with the same cameras added through its API.
const dataDir = await tempDir();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const box = await startedNode({
  FOGEDGE_DATA_DIR: dataDir,
  PORT: String(port),
  FOGEDGE__HTTP__HOST: '127.0.0.1',
  FOGEDGE__VIDEO__DEMOCAMERA: 'false',
});
const setup = await getJson(`${base}/api/v1/setup`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ username: 'bench', password: 'bench-password' }),
});
const auth = {
  authorization: `Bearer ${/fogedge_session=([^;]+)/.exec(setup.headers.get('set-cookie')!)![1]}`,
  'content-type': 'application/json',
};
for (let i = 0; i < CAMERAS; i++) {
  await getJson(`${base}/api/v1/cameras`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ id: `c${i}`, name: `c${i}`, source: { kind: 'rtsp', url: server.url() } }),
  });
}
await waitUntil(
  'every camera online',
  async () => {
    const list = (await getJson(`${base}/api/v1/cameras`, { headers: auth })).json as Array<{
      status: { state: string };
    }>;
    return list.filter((c) => c.status?.state === 'online').length === CAMERAS;
  },
  30_000,
  250,
);
const warmupNs = cpuNs(box.pid);
await sleep(WARMUP_MS);
const warmupNodeCpu = ((cpuNs(box.pid) - warmupNs) / 1e9 / (WARMUP_MS / 1000)) * 100;
const windowStart = Date.now();
const threads0 = threadCpuNs(box.pid);
const boxMeasure = await measure(() => [box.pid, ...ffmpegPids(dataDir).filter((p) => p > 0)]);
const threads = [...threadCpuNs(box.pid)]
  .map(([name, t]) => [name, ((t - (threads0.get(name) ?? 0)) / 1e9 / SECONDS) * 100] as const)
  .filter(([, p]) => p >= 0.01)
  .sort((a, b) => b[1] - a[1]);
const boxCpu = boxMeasure.total;
const nodeCpu = boxMeasure.each.get(box.pid) ?? 0;
const windowEnd = Date.now();
const boxRss =
  rssMiB(box.pid) +
  ffmpegPids(dataDir)
    .filter((p) => p > 0)
    .reduce((s, p) => s + rssMiB(p), 0);

// Snapshot latency, cameras already running.
const snaps: number[] = [];
for (let i = 0; i < 10; i++) {
  const t0 = performance.now();
  const res = await fetch(`${base}/api/v1/cameras/c${i % CAMERAS}/snapshot.jpg`, { headers: auth });
  await res.arrayBuffer();
  if (res.status === 200) snaps.push(performance.now() - t0);
}

// Live view: WebSocket open to the first fragment, then to the first keyframe-started
// fragment (the first picture a browser can show).
const liveStarts: number[] = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/cameras/c${i % CAMERAS}/live`, {
    headers: { authorization: auth.authorization },
  });
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer, binary) => {
      if (binary && data.toString('latin1', 4, 8) === 'moof') {
        liveStarts.push(performance.now() - t0);
        ws.close();
        resolve();
      }
    });
    ws.once('error', reject);
  });
}

// Gaps and segments in the measured window.
await sleep(SEGMENT_S * 1000 + 2000); // let the last segment of the window close
let gaps = 0;
let segments = 0;
for (let i = 0; i < CAMERAS; i++) {
  const q = `from=${new Date(windowStart).toISOString()}&to=${new Date(windowEnd).toISOString()}`;
  gaps += (await getJson(`${base}/api/v1/cameras/c${i}/timeline?${q}`, { headers: auth })).json.gaps.length;
  segments += (await getJson(`${base}/api/v1/cameras/c${i}/segments?${q}`, { headers: auth })).json.length;
}
await box.kill('SIGTERM');
await server.stop();
await rm(dataDir, { recursive: true, force: true });

const expected = CAMERAS * Math.ceil((windowEnd - windowStart) / 1000 / SEGMENT_S);
console.log(
  `record: ${CAMERAS} cameras, 1280x720 15 fps H.264 over RTSP/TCP, ${SECONDS} s measured after ${WARMUP_MS / 1000} s warm-up`,
);
console.log(
  `bare ffmpeg -c copy (reference): ${(refCpu / CAMERAS).toFixed(2)} % of a core per camera, ${refRss.toFixed(0)} MiB in all`,
);
console.log(
  `FogEdge box (node + its ffmpegs): ${(boxCpu / CAMERAS).toFixed(2)} % of a core per camera, ${boxRss.toFixed(0)} MiB in all`,
);
console.log(
  `  of which the Node process: ${nodeCpu.toFixed(2)} % of a core in all, its ffmpegs: ${((boxCpu - nodeCpu) / CAMERAS).toFixed(2)} % per camera`,
);
console.log(`  the Node process during the warm-up before: ${warmupNodeCpu.toFixed(2)} % of a core in all`);
console.log(`  the Node process by thread: ${threads.map(([n, p]) => `${n} ${p.toFixed(2)} %`).join(', ')}`);
console.log(`CPU ratio box / bare ffmpeg: ${(boxCpu / refCpu).toFixed(2)}x`);
console.log(`segments in the window: ${segments} (about ${expected} expected), gaps: ${gaps}`);
console.log(
  `live view start (request to first fragment, which starts on a keyframe): median ${median(liveStarts).toFixed(0)} ms, max ${Math.max(...liveStarts).toFixed(0)} ms`,
);
console.log(
  `snapshot latency: median ${median(snaps).toFixed(0)} ms, max ${Math.max(...snaps).toFixed(0)} ms (${snaps.length}/10 answered)`,
);
