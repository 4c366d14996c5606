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
  /** Per camera, the detector's frames and inferences so far and ms per inference. */
  detector: () => Promise<Record<string, { frames: number; inferenceMs: number | null }>>;
}

export class History {
  private readonly samples: HistorySample[] = [];
  private last: { at: number; ticks: Map<number, number>; frames: Record<string, number> } | undefined;

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
      this.inputs.detector().catch(() => ({}) as Awaited<ReturnType<HistoryInputs['detector']>>),
    ]);
    const frames = Object.fromEntries(Object.entries(detector).map(([id, d]) => [id, d.frames]));
    const previous = this.last;
    this.last = { at, ticks, frames };
    if (!previous) return undefined; // rates need two readings
    const seconds = (at - previous.at) / 1000;
    // A process that started since the last reading counts from 0; one that ended is not counted.
    const used = pids.reduce((sum, p) => sum + (ticks.get(p)! - (previous.ticks.get(p) ?? 0)), 0);
    const sample: HistorySample = {
      at: new Date(at).toISOString(),
      cpuPercent: Math.round(((used / TICK / seconds) * 1000) / 10) / 10,
      cores: os.availableParallelism(),
      memoryBytes: pids.reduce((sum, p) => sum + pssBytes(p), 0),
      diskUsedPercent: disk ? Math.round((1 - disk.bavail / disk.blocks) * 1000) / 10 : null,
      syncQueue,
      cameras: Object.fromEntries(
        Object.entries(detector).map(([id, d]) => [
          id,
          {
            fps: Math.round(((d.frames - (previous.frames[id] ?? d.frames)) / seconds) * 10) / 10,
            inferenceMs: d.inferenceMs,
          },
        ]),
      ),
    };
    this.samples.push(sample);
    if (this.samples.length > this.keep) this.samples.shift();
    return sample;
  }
}
