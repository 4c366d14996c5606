// A long-running child (ffmpeg) that cannot outlive the box: the kernel kills it if this process
// dies, however it dies (Linux, util-linux's setpriv), so there is no orphan after a crash or SIGKILL.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';

export function spawnSupervised(command: string, args: string[], options: SpawnOptions): ChildProcess {
  return existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args], options)
    : spawn(command, args, options);
}
