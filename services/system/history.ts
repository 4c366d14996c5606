// The last day of this node in figures, for the System page's charts: one sample a minute (by
// default) kept in a ring, so that an installer sees at a glance when a box is full. Kept in
// memory only: a restart starts the day again. Figures come from /proc and the services' own
// status actions, never from their files.
import { readdirSync, readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import os from 'node:os';
import type { HistorySample } from './system.schemas.ts';

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ). */
export const TICK = 100;

/** utime + stime of a process in ticks; 0 once it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Proportional memory (PSS) of a process: libraries shared by its ffmpegs are counted once. */
export function pssBytes(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** A process and every process under it (the box's ffmpegs), the root first. */
export function processTree(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, parent] of parentOf) if (parent === out[i]) out.push(pid);
  return out;
}

export interface HistoryInputs {
  /** The data root: its disk's use is charted. */
  dataDir: string;
  /** The sync queue's length, or null when sync does not answer. */
  syncQueue: () => Promise<number | null>;
  /** Per camera, the detector's frames and its time on the camera so far, and ms a frame; `here`: it runs in this node. */
  detector: () => Promise<{
    here: boolean;
    cameras: Record<string, { frames: number; inferenceSeconds: number; inferenceMs: number | null }>;
  }>;
  /** This node's children working for a camera (its ffmpegs), by pid. */
  cameraProcesses: () => ReadonlyMap<number, string>;
}

type DetectorFigures = Awaited<ReturnType<HistoryInputs['detector']>>;

export class History {
  private readonly samples: HistorySample[] = [];
  private last: { at: number; ticks: Map<number, number>; detector: DetectorFigures['cameras'] } | undefined;

  constructor(
    readonly everySeconds: number,
    readonly keep: number,
    private readonly inputs: HistoryInputs,
  ) {}

  /** Oldest first. */
  get all(): HistorySample[] {
    return [...this.samples];
  }

  /** Takes one sample: CPU and frame rates over the time since the last one. */
  async sample(): Promise<HistorySample | undefined> {
    const at = Date.now();
    const pids = processTree(process.pid);
    const ticks = new Map(pids.map((p) => [p, cpuTicks(p)]));
    const [disk, syncQueue, detector] = await Promise.all([
      statfs(this.inputs.dataDir).catch(() => null),
      this.inputs.syncQueue().catch(() => null),
      this.inputs.detector().catch((): DetectorFigures => ({ here: false, cameras: {} })),
    ]);
    const previous = this.last;
    this.last = { at, ticks, detector: detector.cameras };
    if (!previous) return undefined; // rates need two readings
    const seconds = (at - previous.at) / 1000;
    // A process that started since the last reading counts from 0; one that ended is not counted.
    const ticksOf = (p: number) => (ticks.get(p) ?? 0) - (previous.ticks.get(p) ?? 0);
    const used = pids.reduce((sum, p) => sum + ticksOf(p), 0);
    // Per camera: its ffmpegs, and the detector's time on it when that ran in this node (the
    // inference workers' threads are not the camera's in /proc: the detector counts it).
    const cameraSeconds = new Map<string, number>();
    const add = (camera: string, s: number) => cameraSeconds.set(camera, (cameraSeconds.get(camera) ?? 0) + s);
    for (const [pid, camera] of this.inputs.cameraProcesses()) if (ticks.has(pid)) add(camera, ticksOf(pid) / TICK);
    for (const [id, d] of Object.entries(detector.cameras)) {
      add(id, 0);
      const before = previous.detector[id];
      if (detector.here && before && d.inferenceSeconds >= before.inferenceSeconds)
        add(id, d.inferenceSeconds - before.inferenceSeconds);
    }
    const sample: HistorySample = {
      at: new Date(at).toISOString(),
      cpuPercent: Math.round((used / TICK / seconds) * 1000) / 10,
      cores: os.availableParallelism(),
      memoryBytes: pids.reduce((sum, p) => sum + pssBytes(p), 0),
      diskUsedPercent: disk ? Math.round((1 - disk.bavail / disk.blocks) * 1000) / 10 : null,
      syncQueue,
      cameras: Object.fromEntries(
        [...cameraSeconds].map(([id, busy]) => {
          const d = detector.cameras[id];
          return [
            id,
            {
              cpuPercent: Math.round((busy / seconds) * 1000) / 10,
              fps: d
                ? Math.round(((d.frames - (previous.detector[id]?.frames ?? d.frames)) / seconds) * 10) / 10
                : null,
              inferenceMs: d?.inferenceMs ?? null,
            },
          ];
        }),
      ),
    };
    this.samples.push(sample);
    if (this.samples.length > this.keep) this.samples.shift();
    return sample;
  }
}
