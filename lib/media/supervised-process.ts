// A long-running child (ffmpeg) that cannot outlive the box: the kernel kills it if this process
// dies, however it dies (Linux, util-linux's setpriv), so there is no orphan after a crash or SIGKILL.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';

/** Running children by pid, with the camera each works for: its share of the CPU is charted. */
const cameraOf = new Map<number, string>();

/** The pids of this process's running children that work for a camera, and the camera. */
export function cameraProcesses(): ReadonlyMap<number, string> {
  return cameraOf;
}

export function spawnSupervised(command: string, args: string[], options: SpawnOptions, camera?: string): ChildProcess {
  const child = existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args], options)
    : spawn(command, args, options);
  const pid = child.pid;
  if (camera !== undefined && pid !== undefined) {
    cameraOf.set(pid, camera);
    child.once('exit', () => cameraOf.delete(pid));
  }
  return child;
}

/**
 * ffmpeg's input for a live fragmented MP4 on its stdin, read at once: the init segment has all a
 * decoder needs, so no probing (probing waited for about 2 s of a live stream before the first
 * output) and no stream info search.
 */
export const LIVE_FMP4_STDIN = [
  '-fflags',
  'nobuffer',
  '-probesize',
  '32',
  '-analyzeduration',
  '0',
  '-nofind_stream_info',
  '-f',
  'mp4',
  '-i',
  'pipe:0',
];
