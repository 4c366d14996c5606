// npm run bench:startup — time from process start to a healthy box, and idle memory:
//   embedded (one process), and over a real nats-server (gateway node + a node with the other services),
//   each as npm start runs it (the compiled program in build/) and from its sources through tsx.
// Reference, same run: a bare Node HTTP server answering 200 (the floor for any Node box).
import { buildBox } from '../../appliance/build.ts';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tempDir } from '../helpers/box.ts';
import { freePort, getJson, NatsServer, Proc, startNode, waitUntil } from '../helpers/processes.ts';

const RUNS = Number(process.env['RUNS'] ?? 5);
const IDLE_SETTLE_MS = 5000;

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function healthyAfter(t0: number, url: string, ok = (s: number) => s === 200): Promise<number> {
  await waitUntil(
    `${url} healthy`,
    async () => ok((await getJson(url).catch(() => ({ status: 0 }))).status),
    60_000,
    10,
  );
  return Date.now() - t0;
}

async function reference() {
  const port = await freePort();
  const t0 = Date.now();
  const proc = new Proc(process.execPath, [
    '-e',
    `require('http').createServer((q,s)=>s.end('ok')).listen(${port},'127.0.0.1')`,
  ]);
  const ms = await healthyAfter(t0, `http://127.0.0.1:${port}/`);
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  const rss = rssMiB(proc.pid);
  await proc.kill('SIGKILL');
  return { ms, rss };
}

type Program = 'compiled' | 'sources';

async function embedded(program: Program) {
  const dataDir = await tempDir();
  const port = await freePort();
  const t0 = Date.now();
  const box = startNode(
    {
      FOGEDGE_DATA_DIR: dataDir,
      PORT: String(port),
      FOGEDGE__HTTP__HOST: '127.0.0.1',
      LOGLEVEL: 'warn',
    },
    program,
  );
  const ms = await healthyAfter(t0, `http://127.0.0.1:${port}/api/v1/health`);
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  const rss = rssMiB(box.pid);
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
  return { ms, rss };
}

async function overNats(nats: NatsServer, program: Program) {
  const dataDir = await tempDir();
  const port = await freePort();
  const env = {
    TRANSPORTER: nats.url,
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    LOGLEVEL: 'warn',
  };
  const t0 = Date.now();
  // A site with no operator: the deployment says so, and health does not wait for admp or usp.
  const others = 'accounts,cameras,streams,recorder,detector,events,devices,mqtt,sync';
  const deployment = { DEPLOYMENT: `api,system,${others}` };
  const gw = startNode({ ...env, ...deployment, NODEID: `gw-${t0}`, SERVICES: 'api,system' }, program);
  const acc = startNode({ ...env, ...deployment, NODEID: `acc-${t0}`, SERVICES: others }, program);
  const ms = await healthyAfter(t0, `http://127.0.0.1:${port}/api/v1/health`);
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  const rss = rssMiB(gw.pid) + rssMiB(acc.pid);
  await Promise.all([gw.kill('SIGTERM'), acc.kill('SIGTERM')]);
  await rm(dataDir, { recursive: true, force: true });
  return { ms, rss };
}

await buildBox();
const nats = new NatsServer(await freePort());
await nats.start();
const results: Record<string, Array<{ ms: number; rss: number }>> = {};
const add = (name: string, r: { ms: number; rss: number }) => (results[name] ??= []).push(r);
for (let i = 0; i < RUNS; i++) {
  add('reference', await reference());
  for (const program of ['compiled', 'sources'] as const) {
    add(`embedded ${program}`, await embedded(program));
    add(`nats ${program}`, await overNats(nats, program));
  }
}
await nats.stop();

const ref = {
  ms: median(results['reference']!.map((r) => r.ms)),
  rss: median(results['reference']!.map((r) => r.rss)),
};
console.log(`startup to healthy, median of ${RUNS} runs (idle RSS measured ${IDLE_SETTLE_MS / 1000} s after healthy)`);
console.log('case                                   start ms   idle RSS MiB   start ratio   RSS ratio');
for (const [name, label] of [
  ['reference', 'bare node http (reference)'],
  ['embedded compiled', 'box, embedded (1 process), compiled'],
  ['embedded sources', 'box, embedded, sources through tsx'],
  ['nats compiled', 'box over NATS (2 nodes), compiled'],
  ['nats sources', 'box over NATS, sources through tsx'],
] as const) {
  const ms = median(results[name]!.map((r) => r.ms));
  const rss = median(results[name]!.map((r) => r.rss));
  console.log(
    `${label.padEnd(38)} ${String(ms).padStart(8)}   ${rss.toFixed(1).padStart(12)}   ${(ms / ref.ms).toFixed(2).padStart(11)}   ${(rss / ref.rss).toFixed(2).padStart(9)}`,
  );
}
