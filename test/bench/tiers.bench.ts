// npm run bench:tiers — moving recordings to the archive tier. MB=200 of segment files (the
// bundled clip's bytes, 4 MiB each) on the hot disk are moved by the archive tier, uncapped;
// reference in the same run: `cp` of the same files then `sync`. Both go to a folder on the same
// disk (this machine has one disk; a NAS or second disk moves at its own speed). Then the CPU of
// a camera's recording (a bare ffmpeg segment recorder on the bundled clip over RTSP) for SECONDS
// while nothing moves, and while the same files move at the default cap (32 MiB/s).
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Store } from '../../lib/store.ts';
import { ArchiveTier } from '../../services/recorder/archive-tier.ts';
import { SegmentIndex } from '../../services/recorder/segment-index.ts';
import type { Segment } from '../../services/recorder/recorder.schemas.ts';
import { tempDir } from '../helpers/box.ts';
import { freePort } from '../helpers/processes.ts';
import { bareRecorder, RtspCamera } from '../helpers/video.ts';
import { cpuTicks, TICK } from './proc-stats.ts';

const run = promisify(execFile);
const MB = Number(process.env['MB'] ?? 200);
const SECONDS = Number(process.env['SECONDS'] ?? 15);
const FILE_BYTES = 4 * 1024 * 1024;
const CLIP = path.resolve(import.meta.dirname, '..', '..', 'appliance', 'demo', 'street-720p15.mp4');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mbps = (bytes: number, ms: number) => bytes / 1024 / 1024 / (ms / 1000);

const root = await tempDir('fogedge-bench-tiers-');
const hot = path.join(root, 'media');
const clip = await readFile(CLIP);
const body = Buffer.alloc(FILE_BYTES);
for (let at = 0; at < FILE_BYTES; at += clip.length) clip.copy(body, at, 0, Math.min(clip.length, FILE_BYTES - at));
const count = Math.max(1, Math.round((MB * 1024 * 1024) / FILE_BYTES));

/** Segment files under hot/cam/<day>/, written out to the disk. */
async function makeSegments(): Promise<Segment[]> {
  const out: Segment[] = [];
  const t0 = Date.parse('2026-11-01T00:00:00Z');
  await mkdir(path.join(hot, 'cam', '2026-11-01'), { recursive: true });
  for (let i = 0; i < count; i++) {
    const start = t0 + i * 10_000;
    const name = `${new Date(start).toISOString().slice(0, 19).replace(/:/g, '-')}-bench.mp4`;
    const rel = path.join('cam', '2026-11-01', name);
    await writeFile(path.join(hot, rel), body);
    out.push({ camera: 'cam', path: rel, start, end: start + 10_000, bytes: FILE_BYTES });
  }
  await run('sync');
  await run('sh', ['-c', 'echo 1 > /proc/sys/vm/drop_caches']).catch(() => undefined); // cold reads, as after a day
  return out;
}

async function archiveTier(dir: string, bytesPerSecond: number | null) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const store = await Store.open(path.join(root, `db-${Math.random()}`));
  const index = new SegmentIndex(store.collection<Segment>('segments'), store.collection<Segment>('archived'));
  const tier = new ArchiveTier(
    { dir, requireMount: false, minFreeBytes: 0, quotaBytes: null, bytesPerSecond, afterMs: 0 },
    hot,
    index,
    store.collection<Segment>('journal'),
    () => index.totalBytes('archive'),
  );
  await tier.check();
  return { tier, index, store };
}

async function moveAll(bytesPerSecond: number | null): Promise<number> {
  const segments = await makeSegments();
  const { tier, index, store } = await archiveTier(path.join(root, 'archive'), bytesPerSecond);
  for (const s of segments) await index.add(s);
  const t0 = performance.now();
  for (const s of segments) if (!(await tier.move(s))) throw new Error(`${s.path} did not move`);
  const ms = performance.now() - t0;
  await store.close();
  return ms;
}

// 1. Throughput: the tier's moves against cp + sync.
const segments = await makeSegments();
const refDir = path.join(root, 'reference');
await mkdir(path.join(refDir, 'cam', '2026-11-01'), { recursive: true });
const t0 = performance.now();
for (const s of segments) await copyFile(path.join(hot, s.path), path.join(refDir, s.path));
await run('sync');
for (const s of segments) await rm(path.join(hot, s.path));
const refMs = performance.now() - t0;
await rm(refDir, { recursive: true, force: true });
const moveMs = await moveAll(null);
const bytes = count * FILE_BYTES;

// 2. A camera's recording while moves run at the default cap.
const camera = new RtspCamera(await freePort());
await camera.start();
const recDir = path.join(root, 'recording');
await mkdir(recDir);
const ffmpeg = bareRecorder(camera.url(), recDir, 10);
await sleep(5000);
const cpuOver = async (work: Promise<unknown> | undefined) => {
  const pid = ffmpeg.pid!;
  const ticks = cpuTicks(pid);
  const node0 = process.cpuUsage();
  const t = performance.now();
  await Promise.all([sleep(SECONDS * 1000), work]);
  const seconds = (performance.now() - t) / 1000;
  const node = process.cpuUsage(node0);
  return {
    ffmpeg: ((cpuTicks(pid) - ticks) / TICK / seconds) * 100,
    mover: ((node.user + node.system) / 1e6 / seconds) * 100,
  };
};
const idle = await cpuOver(undefined);
let cappedMs = 0;
const moving = await cpuOver(moveAll(32 * 1024 * 1024).then((ms) => (cappedMs = ms)));
ffmpeg.kill('SIGKILL');
await camera.stop();
const recorded = (await readdir(recDir)).length;
await rm(root, { recursive: true, force: true });

const f = (n: number) => n.toFixed(1);
console.log(`tier moves of ${count} files of 4 MiB (${f(bytes / 1024 / 1024)} MiB), disk to disk on one disk:`);
console.log(`  archive tier, uncapped:  ${f(mbps(bytes, moveMs))} MiB/s (copy, fsync, rename, index, unlink)`);
console.log(`  reference cp + sync:     ${f(mbps(bytes, refMs))} MiB/s`);
console.log(`  ratio (tier / reference): ${(refMs / moveMs).toFixed(2)}`);
console.log(`  archive tier, 32 MiB/s cap: ${f(mbps(bytes, cappedMs))} MiB/s`);
console.log(`a camera's recording (ffmpeg, ${recorded} segments written) over ${SECONDS} s:`);
console.log(`  idle:   ffmpeg ${f(idle.ffmpeg)}% of a core, this process ${f(idle.mover)}%`);
console.log(`  moving: ffmpeg ${f(moving.ffmpeg)}% of a core, this process (the mover) ${f(moving.mover)}%`);
