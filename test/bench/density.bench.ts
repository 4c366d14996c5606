// npm run bench:density — a small box with many cameras: the box as npm start runs it (compiled),
// 16 loopback RTSP cameras, all recorded:
//   4 busy: the street, 1280x720 15 fps, with a 640x360 sub-stream (detection reads the sub-stream);
//   12 quiet: the street held still, with its people walking for 5 s in every 30, each camera at
//   another point of that cycle (people pass by one camera at a time, as around a house).
// Phases of PHASE_S seconds each (after WARMUP_S), in one run:
//   recording only (detection off everywhere): the reference;
//   detection at 5 fps on the 4 busy cameras;
//   detection at 5 fps on all 16;
//   where all 16 did not keep up, fewer cameras of the same mix (the others turned off), by
//   bisection: the largest count that keeps up.
// CPU is the box's process and every process under it (its ffmpegs), from /proc; the cameras'
// own servers run on the same 2 cores and are printed apart. "Keeps up": the detectors dropped
// under 1% of their frames, no gap in any recording, and the quiet cameras' events reach a client
// of the updates socket within 1 s of the frame they start at (95th percentile).
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import { buildBox } from '../../appliance/build.ts';
import { processTree, pssBytes } from '../../services/system/history.ts';
import { tempDir } from '../helpers/box.ts';
import {
  apiAs,
  everyCameraOnline,
  firstAdminSession,
  freePort,
  getJson,
  startNode,
  waitUntil,
} from '../helpers/processes.ts';
import { longClip, longSubStreamClip, quietClip, RtspCamera } from '../helpers/video.ts';
import { cpuTicks, pct, TICK } from './proc-stats.ts';

const PHASE_S = Number(process.env['PHASE_S'] ?? 60);
const WARMUP_S = Number(process.env['WARMUP_S'] ?? 15);
const BUSY = Number(process.env['BUSY'] ?? 4);
const QUIET = Number(process.env['QUIET'] ?? 12);
const SEGMENT_S = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The box's memory: its process and every process under it (PSS: shared libraries counted once). */
const boxMiB = (pid: number) => processTree(pid).reduce((sum, p) => sum + pssBytes(p), 0) / 2 ** 20;
const pssMiB = (pid: number) => pssBytes(pid) / 2 ** 20;
const descendants = (pid: number) => processTree(pid).slice(1);

/** `clip` from `offset` s in, looped to 10 minutes: longer than the run (stream copy, about a second). */
async function looped(clip: string, offset = 0): Promise<string> {
  const file = path.join(os.tmpdir(), `${path.basename(clip, '.mp4')}-from-${offset}-600s.mp4`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp.mp4`;
    await promisify(execFile)('ffmpeg', [
      '-v',
      'error',
      '-y',
      '-ss',
      String(offset),
      '-stream_loop',
      '-1',
      '-i',
      clip,
      '-t',
      '600',
      '-c',
      'copy',
      tmp,
    ]);
    await rm(file, { force: true });
    await promisify(execFile)('mv', [tmp, file]);
  }
  return file;
}

await buildBox();
const [mainClip, subClip, stillish] = [
  await looped(await longClip()),
  await looped(await longSubStreamClip()),
  await quietClip(),
];
const cameras = new Map<string, { main: RtspCamera; sub?: RtspCamera; busy: boolean }>();
for (let i = 1; i <= BUSY; i++)
  cameras.set(`busy-${i}`, {
    main: new RtspCamera(await freePort(), { clip: mainClip }),
    sub: new RtspCamera(await freePort(), { clip: subClip }),
    busy: true,
  });
// Offsets 2 s apart (a keyframe each): the 12 cycles of 30 s spread over 24 s of it.
for (let i = 1; i <= QUIET; i++)
  cameras.set(`quiet-${i}`, {
    main: new RtspCamera(await freePort(), { clip: await looped(stillish, ((i - 1) * 2) % 30) }),
    busy: false,
  });
for (const c of cameras.values()) await Promise.all([c.main.start(), c.sub?.start()]);
const cameraServerPids = () =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('rtsp_server.py');
      } catch {
        return false;
      }
    })
    .map(Number);

const dataDir = await tempDir();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const box = startNode(
  {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    LOGLEVEL: 'warn',
    FOGEDGE__VIDEO__DEMOCAMERA: 'false',
    FOGEDGE__VIDEO__SEGMENTSECONDS: String(SEGMENT_S),
    FOGEDGE__DETECTOR__ENABLED: 'true',
    // INFERENCES=16: every camera's inference at once, as before the shared queue (for comparison).
    ...(process.env['INFERENCES'] ? { FOGEDGE__DETECTOR__CONCURRENTINFERENCES: process.env['INFERENCES'] } : {}),
  },
  'compiled',
);
await waitUntil(
  'the box healthy',
  async () => (await getJson(`${base}/api/v1/health`).catch(() => null))?.status === 200,
  60_000,
);
const token = await firstAdminSession(base, 'bench', 'bench-password');
const api = apiAs(base, token);
await sleep(3000);
const idleRss = boxMiB(box.pid);

for (const [id, c] of cameras) {
  const res = await api('POST', '/api/v1/cameras', {
    id,
    name: id,
    source: { kind: 'rtsp', url: c.main.url() },
    ...(c.sub ? { subStream: { kind: 'rtsp', url: c.sub.url() } } : {}),
    detection: { enabled: false, fps: 5, labels: ['person'] },
  });
  if (res.status !== 201) throw new Error(`${id} not added: ${res.text}`);
}
await everyCameraOnline(api, 60_000);

const eventLatencies: Record<string, number[]> = {};
const updates = new WebSocket(`ws://127.0.0.1:${port}/api/v1/updates`, {
  headers: { authorization: `Bearer ${token}` },
});
updates.on('message', (m) => {
  const { type, data } = JSON.parse(m.toString()) as { type: string; data: { camera: string; start: string } };
  if (type === 'event.started') (eventLatencies[data.camera] ??= []).push(Date.now() - Date.parse(data.start));
});

type Stats = {
  frames: number;
  dropped: number;
  inferences: number;
  coasted: number;
  inferenceMs: number | null;
  behind: boolean;
};
const detectorCameras = async () => (await api('GET', '/api/v1/detector/status')).json.cameras as Record<string, Stats>;

interface PhaseResult {
  boxCpu: number;
  cameraCpu: number;
  rss: number;
  dropped: number;
  behind: string[];
  gaps: number;
  /** Frames the detectors got, all cameras. */
  frames: number;
  fps: number;
  inferences: number;
  quietEvents: number[];
}

/** Detection on the cameras `detecting`, off elsewhere, cameras not `present` turned off; then PHASE_S measured. */
async function phase(
  name: string,
  detecting: (id: string) => boolean,
  present: (id: string) => boolean = () => true,
): Promise<PhaseResult> {
  for (const id of cameras.keys())
    await api('PATCH', `/api/v1/cameras/${id}`, {
      enabled: present(id),
      detection: { enabled: present(id) && detecting(id), fps: 5, labels: ['person'] },
    });
  process.stderr.write(`${name}: warming up ${WARMUP_S} s, then ${PHASE_S} s\n`);
  await sleep(WARMUP_S * 1000);
  for (const k of Object.keys(eventLatencies)) delete eventLatencies[k];
  const before = await detectorCameras();
  const from = new Date();
  const pids = [box.pid, ...descendants(box.pid)];
  const servers = cameraServerPids();
  const t0 = [pids.map(cpuTicks), servers.map(cpuTicks)];
  await sleep(PHASE_S * 1000);
  const boxCpu =
    ([box.pid, ...descendants(box.pid)].reduce(
      (s, p) => s + cpuTicks(p) - (t0[0]![pids.indexOf(p)] ?? cpuTicks(p)),
      0,
    ) /
      TICK /
      PHASE_S) *
    100;
  const cameraCpu = (servers.reduce((s, p, i) => s + cpuTicks(p) - t0[1]![i]!, 0) / TICK / PHASE_S) * 100;
  const rss = boxMiB(box.pid);
  // Where the memory is: the box's own process, and its ffmpegs by what they do.
  const byRole: Record<string, number> = { node: pssMiB(box.pid) };
  for (const p of descendants(box.pid)) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const role = !cmd.includes('ffmpeg')
      ? 'other'
      : cmd.includes('rawvideo')
        ? 'detection decoders'
        : 'recorders and feeds';
    byRole[role] = (byRole[role] ?? 0) + pssMiB(p);
  }
  process.stderr.write(
    `  memory (PSS MiB): ${Object.entries(byRole)
      .map(([k, v]) => `${k} ${v.toFixed(0)}`)
      .join(', ')}\n`,
  );
  const after = await detectorCameras();
  // Recorded up to two segments ago (the open segment is not yet on the timeline).
  const to = new Date(Date.now() - 2 * SEGMENT_S * 1000);
  let gaps = 0;
  for (const id of [...cameras.keys()].filter(present)) {
    const t = (await api('GET', `/api/v1/cameras/${id}/timeline?from=${from.toISOString()}&to=${to.toISOString()}`))
      .json as { gaps: unknown[] };
    gaps += t.gaps.length;
  }
  const on = [...cameras.keys()].filter((id) => present(id) && detecting(id));
  const delta = (k: 'frames' | 'dropped' | 'inferences') =>
    on.reduce((s, id) => s + (after[id]?.[k] ?? 0) - (before[id]?.[k] ?? 0), 0);
  return {
    boxCpu,
    cameraCpu,
    rss,
    dropped: delta('dropped'),
    behind: on.filter((id) => after[id]?.behind),
    gaps,
    frames: delta('frames'),
    fps: delta('frames') / PHASE_S / Math.max(1, on.length),
    inferences: delta('inferences') / PHASE_S,
    quietEvents: Object.entries(eventLatencies)
      .filter(([camera]) => camera.startsWith('quiet'))
      .flatMap(([, ms]) => ms),
  };
}

/**
 * Keeps up: the detectors dropped under 1% of their frames (a burst may drop one; a box that is
 * behind drops many), no recording gap, quiet cameras' events within 1 s (95th percentile).
 */
const keepsUp = (r: PhaseResult, quiet: number) =>
  r.dropped < 0.01 * r.frames &&
  r.gaps === 0 &&
  (quiet === 0 || (r.quietEvents.length > 0 && pct(r.quietEvents, 0.95) <= 1000));

const recording = await phase('recording only', () => false);
const busyOnly = await phase(`detection on the ${BUSY} busy`, (id) => id.startsWith('busy'));
const all = await phase(`detection on all ${BUSY + QUIET}`, () => true);

// The largest count of the same mix that keeps up, found by running it (bisection below the full
// count when that did not keep up; SEARCH=0 leaves it out).
const searched: Array<{ n: number; busy: number; result: PhaseResult; ok: boolean }> = [];
if (process.env['SEARCH'] !== '0' && !keepsUp(all, QUIET)) {
  let [lo, hi] = [0, BUSY + QUIET];
  while (hi - lo > 1) {
    const n = Math.floor((lo + hi) / 2);
    const busy = Math.round((n * BUSY) / (BUSY + QUIET));
    const present = (id: string) => {
      const [kind, i] = id.split('-') as [string, string];
      return Number(i) <= (kind === 'busy' ? busy : n - busy);
    };
    const result = await phase(`${n} cameras (${busy} busy)`, () => true, present);
    const ok = keepsUp(result, n - busy);
    searched.push({ n, busy, result, ok });
    [lo, hi] = ok ? [n, hi] : [lo, n];
  }
}
updates.close();
await box.kill('SIGTERM');
for (const c of cameras.values()) await Promise.all([c.main.stop(), c.sub?.stop()]);
await rm(dataDir, { recursive: true, force: true });

const f = (n: number, d = 1) => n.toFixed(d);
const n = BUSY + QUIET;
const cores = os.cpus().length;
const recordPer = recording.boxCpu / n;
const busyDetect = (busyOnly.boxCpu - recording.boxCpu) / BUSY;
const quietDetect = (all.boxCpu - busyOnly.boxCpu) / QUIET;
console.log(
  `bench:density — ${n} cameras (${BUSY} busy with a sub-stream, ${QUIET} quiet), ${PHASE_S} s a phase, ${cores} cores; the box compiled`,
);
console.log(
  "phase                         box CPU %   cameras' servers %   box PSS MiB   fps/camera   inferences/s   dropped   gaps",
);
for (const [label, r] of [
  ['recording only (reference)', recording],
  [`detection on ${BUSY} busy`, busyOnly],
  [`detection on all ${n}`, all],
] as const)
  console.log(
    `${label.padEnd(29)} ${f(r.boxCpu).padStart(9)}   ${f(r.cameraCpu).padStart(18)}   ${f(r.rss, 0).padStart(11)}   ${f(r.fps).padStart(10)}   ${f(r.inferences).padStart(12)}   ${String(r.dropped).padStart(7)}   ${String(r.gaps).padStart(4)}`,
  );
console.log(
  `per camera, % of one core: recording ${f(recordPer, 2)}; detection on a busy camera ${f(busyDetect, 2)}, on a quiet one ${f(quietDetect, 2)}`,
);
console.log(
  `  a busy camera in all: ${f(recordPer + busyDetect, 2)} %; a quiet one: ${f(recordPer + quietDetect, 2)} % (detection / recording alone: busy ${f((recordPer + busyDetect) / recordPer, 2)}x, quiet ${f((recordPer + quietDetect) / recordPer, 2)}x)`,
);
console.log(
  `memory: ${f(idleRss, 0)} MiB with no camera, ${f(all.rss, 0)} MiB with ${n}: ${f((all.rss - idleRss) / n, 1)} MiB a camera (the box and its ffmpegs)`,
);
const q = all.quietEvents;
console.log(
  `quiet cameras' events: ${q.length} in ${PHASE_S} s, from their first frame to the updates socket median ${q.length ? f(pct(q, 0.5), 0) : '-'} ms, 95th ${q.length ? f(pct(q, 0.95), 0) : '-'} ms (target: within 1 s)`,
);
const verdict = (r: PhaseResult, quiet: number) =>
  keepsUp(r, quiet)
    ? 'kept up'
    : `did not keep up (dropped ${r.dropped} of ${r.frames} frames, behind: ${r.behind.join(', ') || 'none'}, gaps ${r.gaps}, quiet events' 95th ${r.quietEvents.length ? f(pct(r.quietEvents, 0.95), 0) : '-'} ms)`;
console.log(`${n} cameras: ${f(all.boxCpu / 100, 2)} cores of ${cores} (target: within 1.6); ${verdict(all, QUIET)}`);
for (const { n: count, busy, result, ok } of searched)
  console.log(
    `  ${count} cameras (${busy} busy): ${f(result.boxCpu / 100, 2)} cores, ${f(result.inferences)} inferences/s, quiet events median ${result.quietEvents.length ? f(pct(result.quietEvents, 0.5), 0) : '-'} ms, 95th ${result.quietEvents.length ? f(pct(result.quietEvents, 0.95), 0) : '-'} ms, dropped ${result.dropped} of ${result.frames} frames; ${ok ? 'kept up' : verdict(result, count - busy)}`,
  );
const largest = keepsUp(all, QUIET) ? n : Math.max(0, ...searched.filter((t) => t.ok).map((t) => t.n));
console.log(`the largest count of this mix that kept up: ${largest}${keepsUp(all, QUIET) ? ` (all there were)` : ''}`);
process.exit(0);
