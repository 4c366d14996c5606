// The camera's bootloader loop (on a real camera, its init system or U-Boot does this): starts
// the agent, and starts it again whenever it exits (a reboot, a crash), so the firmware slot
// that boot.json names is what runs. A configuration error (exit 78) stops the loop.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const EXIT_CONFIG = 78;
const RESTART_DELAY_MS = 500;
const main = fileURLToPath(new URL('main.ts', import.meta.url));
let child: ChildProcess | null = null;
let stopping = false;

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    stopping = true;
    if (!child) process.exit(0);
    child.kill(signal);
  });
}

function start() {
  child = spawn(process.execPath, ['--import', 'tsx', main, ...process.argv.slice(2)], { stdio: 'inherit' });
  child.on('exit', (code, signal) => {
    child = null;
    if (stopping) process.exit(0);
    if (code === EXIT_CONFIG) process.exit(EXIT_CONFIG);
    process.stderr.write(
      JSON.stringify({
        time: new Date().toISOString(),
        level: 'info',
        mod: 'camera-boot',
        message: `agent exited (${signal ?? code}); booting again`,
      }) + '\n',
    );
    setTimeout(start, RESTART_DELAY_MS);
  });
}

start();
