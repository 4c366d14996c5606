#!/usr/bin/env node
// Runs the box's current release and rolls an update back when the new release does not prove
// itself healthy. Plain JavaScript with no dependencies, installed outside the releases
// (/opt/fogedge/bin), so a broken release cannot break the thing that undoes it.
//
//   <root>/releases/<version>/   each release, a whole tree (package.json, build/, gateway/, node_modules/)
//   <root>/current, previous     symlinks to releases
//   <root>/update.json           the update under way: { state: trying | confirmed | rolled-back, from, to, deadline, boots }
//
// An update is "trying" until the new release marks it confirmed (system service, after its
// health has been ok for a while). It is rolled back to `previous` when the new release exits
// MAX_BOOTS times first, or is not confirmed by its deadline.
// Usage: node release-runner.mjs <root>   (systemd: Restart=always, KillMode=mixed)
import { spawn } from 'node:child_process';
import {
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  realpathSync,
} from 'node:fs';
import path from 'node:path';

const MAX_BOOTS = 3;
const RESTART_DELAY_MS = 1000;
const STOP_GRACE_MS = 10_000;

const root = path.resolve(process.argv[2] ?? process.env.FOGEDGE_RELEASES_DIR ?? '/opt/fogedge');
const stateFile = path.join(root, 'update.json');
const log = (message) =>
  process.stderr.write(
    JSON.stringify({ time: new Date().toISOString(), level: 'info', mod: 'release-runner', message }) + '\n',
  );

const readState = () => {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8'));
  } catch {
    return null;
  }
};
/** Written whole or not at all. */
const writeState = (state) => {
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${stateFile}.tmp`, stateFile);
};
const pointAt = (link, target) => {
  symlinkSync(target, `${link}.tmp`);
  renameSync(`${link}.tmp`, link);
};

function rollBack(state, reason) {
  const previous = readlinkSync(path.join(root, 'previous'));
  pointAt(path.join(root, 'current'), previous);
  writeState({ ...state, state: 'rolled-back', reason, finishedAt: new Date().toISOString() });
  log(`update to ${state.to} rolled back to ${state.from}: ${reason}`);
}

/** Before each start: an update that has had its chances is undone. */
function checkUpdate() {
  const state = readState();
  if (state?.state !== 'trying') return state;
  if (Date.now() > Date.parse(state.deadline)) rollBack(state, `not healthy by ${state.deadline}`);
  else if (state.boots >= MAX_BOOTS) rollBack(state, `exited ${state.boots} times before it was healthy`);
  else writeState({ ...state, boots: state.boots + 1 });
  return readState();
}

/**
 * The installer's fogedge.yaml belongs in the data root, where every release reads it; one left in
 * a release's folder (older installs) is moved there before that release starts, so the next
 * release does not run without it.
 */
function keepInstallerConfig(release) {
  const dataDir = process.env.FOGEDGE_DATA_DIR;
  const inRelease = path.join(release, 'fogedge.yaml');
  if (!dataDir || process.env.FOGEDGE_CONFIG || !existsSync(inRelease)) return;
  const inData = path.join(dataDir, 'fogedge.yaml');
  if (existsSync(inData)) {
    log(`${inRelease} is ignored: the configuration in force is ${inData}`);
    renameSync(inRelease, `${inRelease}.ignored`);
    return;
  }
  mkdirSync(dataDir, { recursive: true });
  copyFileSync(inRelease, `${inData}.tmp`, constants.COPYFILE_EXCL);
  renameSync(`${inData}.tmp`, inData);
  rmSync(inRelease);
  log(`the installer's configuration moved from ${inRelease} to ${inData}, where every release reads it`);
}

let child = null;

/**
 * Stops this one process: `signal`, then SIGKILL if it is still there after the grace period. The
 * process is held here, not read again from `child`, which by then may be the release restored in
 * its place.
 */
function stopHard(proc, signal) {
  proc.kill(signal);
  setTimeout(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }, STOP_GRACE_MS).unref();
}
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    stopping = true;
    if (!child) process.exit(0);
    stopHard(child, signal);
  });
}

/** The release's compiled program; a release from before the compiled build runs its sources through tsx. */
const programOf = (release) =>
  existsSync(path.join(release, 'build/gateway/main.js'))
    ? ['build/gateway/main.js']
    : ['--import', 'tsx', 'gateway/main.ts'];

function run() {
  const state = checkUpdate();
  const release = realpathSync(path.join(root, 'current'));
  keepInstallerConfig(release);
  log(`starting ${path.basename(release)}`);
  child = spawn(process.execPath, programOf(release), {
    cwd: release,
    stdio: 'inherit',
    env: { ...process.env, FOGEDGE_RELEASES_DIR: root },
  });
  // A release that runs but never becomes healthy is stopped at its deadline, then rolled back.
  let deadlineTimer;
  if (state?.state === 'trying') {
    deadlineTimer = setTimeout(
      () => {
        if (readState()?.state !== 'trying') return;
        log(`${state.to} is not healthy by its deadline: stopping it`);
        if (child) stopHard(child, 'SIGTERM');
      },
      Math.max(0, Date.parse(state.deadline) - Date.now()) + 100,
    );
  }
  child.on('exit', (code, signal) => {
    clearTimeout(deadlineTimer);
    child = null;
    if (stopping) process.exit(code ?? 0);
    // A clean exit is a restart asked for (an update, a restart from the operator): at once, the
    // cameras are not recording meanwhile. A crash waits a little.
    const delay = code === 0 ? 0 : RESTART_DELAY_MS;
    log(`${path.basename(release)} exited (${signal ?? code}); starting again in ${delay} ms`);
    setTimeout(run, delay);
  });
}

run();
