// What the benches read of a process from /proc, and the percentile they report.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';

// CPU time so far of a process, as the box's own System charts read it.
export { cpuTicks, TICK } from '../../services/system/history.ts';

export const rssMiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

export const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;

/**
 * CPU time so far of each thread of a process, in ns, by thread ("main", or the name and id):
 * the scheduler's own account (schedstat), exact where utime/stime are sampled at each clock
 * tick and so are coarse for processes that run in short bursts, like a recording ffmpeg.
 */
export function threadCpuNs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      out.set(tid === String(pid) ? 'main' : `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))} ${tid}`, ns);
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** CPU time a process has used so far, in ns, over its live threads; 0 once it is gone. */
export const cpuNs = (pid: number) => [...threadCpuNs(pid).values()].reduce((a, b) => a + b, 0);

/**
 * PIN=1 (the default on 2 cores or more): the process measured, all its threads, on core 0, and
 * the load generator on the others. Unpinned, the measured process competes with the load for the
 * same cores and a ratio measures the scheduler as much as the process.
 */
export const PIN = (process.env['PIN'] ?? (os.availableParallelism() >= 2 ? '1' : '0')) === '1';
/** The cores besides core 0, for the load generator. */
export const OTHER_CORES = `1-${os.availableParallelism() - 1}`;
const run = promisify(execFile);
/** Puts every thread of a process on these cores, when PIN is on. */
export async function pin(pid: number, cpus: string): Promise<void> {
  if (PIN) await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
}
