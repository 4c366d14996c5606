// npm run bench:mqtt — the box's broker (aedes, with its device sign-in and topic
// permissions) against Debian's mosquitto (password file and ACL file) under the same
// load on loopback: PUBLISHERS devices each publishing MESSAGES small messages to their own
// topic, SUBSCRIBERS app clients reading them all; QoS 0 and QoS 1, over MQTT 3.1.1 and 5.0.
// Then the cost of the box's read check on each delivery, and memory before sign-in.
// PUBLISHERS=100 SUBSCRIBERS=10 MESSAGES=100 ROUNDS=3 by default.
import { execFile, spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import net from 'node:net';
import { tempDir } from '../helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode } from '../helpers/processes.ts';
import { cpuTicks, OTHER_CORES, pct, PIN, pin, rssMiB, threadCpuNs, TICK } from './proc-stats.ts';
import { mayReceive } from '../../services/mqtt/access-rules.ts';
import { LightClient } from './light-mqtt-client.ts';

const PUBLISHERS = Number(process.env['PUBLISHERS'] ?? 100);
const SUBSCRIBERS = Number(process.env['SUBSCRIBERS'] ?? 10);
const MESSAGES = Number(process.env['MESSAGES'] ?? 100);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const run = promisify(execFile);

interface Target {
  name: string;
  port: number;
  pid: number;
  publisher: (i: number) => { username: string; password: string; topic: string };
  subscriber: { username: string; password: string; filter: string };
}

async function load(target: Target, qos: 0 | 1, protocolVersion: 4 | 5) {
  process.stderr.write(`  … ${target.name}, MQTT ${protocolVersion === 5 ? '5.0' : '3.1.1'}, QoS ${qos}\n`);
  // Sign-ins cost a scrypt each (~100 ms here): a hundred at once take seconds before the load starts.
  const at = { port: target.port, protocolVersion };
  const subs: LightClient[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const c = await LightClient.connect({ ...at, ...target.subscriber, clientId: `bench-sub-${i}` });
    await c.subscribe(target.subscriber.filter, qos);
    subs.push(c);
  }
  const pubs = await Promise.all(
    Array.from({ length: PUBLISHERS }, (_, i) => {
      const p = target.publisher(i);
      return LightClient.connect({ ...at, ...p, clientId: `bench-pub-${i}` }).then((c) => ({ c, topic: p.topic }));
    }),
  );
  const expected = PUBLISHERS * MESSAGES * SUBSCRIBERS;
  const latencies: number[] = [];
  let delivered = 0;
  const done = new Promise<void>((resolve) => {
    for (const s of subs) {
      s.onMessage = (payload) => {
        latencies.push(performance.now() - Number(payload.toString('latin1', 0, payload.indexOf(32))));
        if (++delivered === expected) resolve();
      };
    }
  });
  const t0 = performance.now();
  const ticks0 = cpuTicks(target.pid);
  const threads0 = threadCpuNs(target.pid);
  const clientCpu0 = process.cpuUsage();
  await Promise.all(
    pubs.map(async ({ c, topic }) => {
      for (let m = 0; m < MESSAGES; m++) {
        const payload = `${performance.now()} ${'x'.repeat(64)}`;
        if (qos === 1) await c.publish(topic, payload, 1);
        else c.publish(topic, payload, 0);
        if (qos === 0 && m % 20 === 19) await new Promise((r) => setImmediate(r)); // let the socket drain
      }
    }),
  );
  await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
  const seconds = (performance.now() - t0) / 1000;
  // The broker's own CPU per delivered message: the load generator shares these cores, so
  // throughput alone also measures the clients.
  const cpuUsPerMessage = (((cpuTicks(target.pid) - ticks0) / TICK) * 1e6) / Math.max(1, delivered);
  // Of which not on the main thread: for the box, V8's garbage collection and compiler helpers
  // (and libuv's pool), which share the broker's core; Mosquitto has one thread.
  let helperNs = 0;
  for (const [thread, ns] of threadCpuNs(target.pid))
    if (thread !== 'main') helperNs += ns - (threads0.get(thread) ?? 0);
  const helperUsPerMessage = helperNs / 1000 / Math.max(1, delivered);
  // Near 100 %, the clients, not the broker, set the pace.
  const clientCpu = process.cpuUsage(clientCpu0);
  const clientBusy = (clientCpu.user + clientCpu.system) / 1e6 / seconds;
  const rss = rssMiB(target.pid);
  for (const c of [...subs, ...pubs.map((p) => p.c)]) c.end();
  return {
    rate: delivered / seconds,
    delivered,
    expected,
    p50: pct(latencies, 0.5),
    p99: pct(latencies, 0.99),
    rss,
    cpuUsPerMessage,
    helperUsPerMessage,
    clientBusy,
  };
}

// Mosquitto with a password file and an ACL file: the same rules as the box.
const dir = await tempDir();
const mosquittoPort = await freePort();
const passwords = path.join(dir, 'passwd');
await writeFile(passwords, '');
await run('mosquitto_passwd', ['-b', passwords, 'app', 'app-password-123']);
for (let i = 0; i < PUBLISHERS; i++) await run('mosquitto_passwd', ['-b', passwords, `dev${i}`, `dev${i}-secret-123`]);
await writeFile(
  path.join(dir, 'acl'),
  'user app\ntopic read fogedge/devices/#\n\npattern write fogedge/devices/%u/#\n',
);
await writeFile(
  path.join(dir, 'mosquitto.conf'),
  [
    `listener ${mosquittoPort} 127.0.0.1`,
    'user root' /* it reads files in our temp folder */,
    'allow_anonymous false',
    `password_file ${passwords}`,
    `acl_file ${path.join(dir, 'acl')}`,
    'persistence false',
    'max_queued_messages 100000',
    '',
  ].join('\n'),
);
const mosquitto = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 500));
await pin(mosquitto.pid!, '0');
await pin(process.pid, OTHER_CORES);

// The box, as a process, with the devices added through its API.
const boxPort = await freePort();
const mqttPort = await freePort();
const boxDir = await tempDir();
const box = await startedNode({
  FOGEDGE_DATA_DIR: boxDir,
  PORT: String(boxPort),
  FOGEDGE__HTTP__HOST: '127.0.0.1',
  FOGEDGE__VIDEO__DEMOCAMERA: 'false',
  FOGEDGE__MQTT: '{}',
  FOGEDGE__MQTT__HOST: '127.0.0.1',
  FOGEDGE__MQTT__PORT: String(mqttPort),
  FOGEDGE__MQTT__TLSPORT: 'null',
});
await pin(box.pid, '0');
const base = `http://127.0.0.1:${boxPort}`;
const session = await firstAdminSession(base, 'app', 'app-password-123');
const auth = { authorization: `Bearer ${session}`, 'content-type': 'application/json' };
const secrets: string[] = [];
for (let i = 0; i < PUBLISHERS; i++) {
  secrets.push(
    (
      await getJson(`${base}/api/v1/devices`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ id: `dev${i}`, name: `dev${i}` }),
      })
    ).json.secret,
  );
}

const targets: Target[] = [
  {
    name: 'mosquitto (reference)',
    port: mosquittoPort,
    pid: mosquitto.pid!,
    publisher: (i) => ({ username: `dev${i}`, password: `dev${i}-secret-123`, topic: `fogedge/devices/dev${i}/data` }),
    subscriber: { username: 'app', password: 'app-password-123', filter: 'fogedge/devices/+/data' },
  },
  {
    name: 'FogEdge box (aedes)',
    port: mqttPort,
    pid: box.pid,
    publisher: (i) => ({ username: `dev${i}`, password: secrets[i]!, topic: `fogedge/devices/dev${i}/data` }),
    subscriber: { username: 'app', password: session, filter: 'fogedge/devices/+/data' },
  },
];

// VERSION=4|5 and QOS=0|1 run one case only (with PROF=<dir>, to profile it alone).
const VERSIONS = (
  [
    [4, '3.1.1'],
    [5, '5.0'],
  ] as const
).filter(([v]) => !process.env['VERSION'] || String(v) === process.env['VERSION']);
const QOS_LEVELS = ([0, 1] as const).filter((q) => !process.env['QOS'] || String(q) === process.env['QOS']);
// Two brokers and their clients share two cores: one run's ratio moves by ±30 %. So each case
// runs ROUNDS times, the order of the two brokers alternating, and the median is told.
type Result = Awaited<ReturnType<typeof load>>;
const results: Record<string, Result[]> = {};
for (const [version] of VERSIONS) {
  for (const qos of QOS_LEVELS) {
    // A first round, not counted: the box's JavaScript is compiled as it runs (Mosquitto's is not).
    for (const t of targets) await load(t, qos, version);
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of round % 2 ? [...targets].reverse() : targets)
        (results[`${t.name}|${qos}|${version}`] ??= []).push(await load(t, qos, version));
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** The round whose throughput is the median one. */
const typical = (rs: Result[]) => [...rs].sort((a, b) => a.rate - b.rate)[Math.floor(rs.length / 2)]!;
// The read check the box makes on every delivery (mayReceive, as the broker calls it), timed here
// over the same topics, against the broker's whole CPU per delivered message measured above.
const CHECKS = 1_000_000;
const reader = { kind: 'user', username: 'app', role: 'admin' } as const;
const topics = Array.from({ length: PUBLISHERS }, (_, i) => `fogedge/devices/dev${i}/data`);
let allowed = 0;
const c0 = process.cpuUsage();
for (let i = 0; i < CHECKS; i++) if (mayReceive(reader, topics[i % topics.length]!)) allowed++;
const c1 = process.cpuUsage(c0);
const checkUs = (c1.user + c1.system) / CHECKS;
if (allowed !== CHECKS) throw new Error(`the read check refused ${CHECKS - allowed} of the bench's deliveries`);
// Before sign-in: PREAUTH=1000 connections each sending a CONNECT that announces 1 MiB, all of
// it (as an attacker would), a few at a time; the box's RSS against its idle RSS.
const PREAUTH = Number(process.env['PREAUTH'] ?? 1000);
const idleRss = rssMiB(box.pid);
let peakRss = idleRss;
const MiB1 = 1024 * 1024;
const connectOf1MiB = Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x40]), Buffer.alloc(MiB1)]);
let refusedConnects = 0;
const attack = async () => {
  const socket = net.connect(mqttPort, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.write(connectOf1MiB);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
  if (socket.destroyed) refusedConnects++;
  socket.destroy();
};
for (let i = 0; i < PREAUTH; i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, PREAUTH - i) }, attack));
  peakRss = Math.max(peakRss, rssMiB(box.pid));
}
await new Promise((r) => setTimeout(r, 2000));
const afterRss = rssMiB(box.pid);

mosquitto.kill('SIGTERM');
await box.kill('SIGTERM');
await rm(dir, { recursive: true, force: true });
await rm(boxDir, { recursive: true, force: true });

console.log(
  `bench:mqtt — ${PUBLISHERS} publishers x ${MESSAGES} messages (64 B), ${SUBSCRIBERS} subscribers, loopback, auth + ACL on both; medians of ${ROUNDS} rounds after one not counted; ${PIN ? 'each broker on core 0, the clients on the others' : 'not pinned'}`,
);
for (const [version, name] of VERSIONS) {
  for (const qos of QOS_LEVELS) {
    for (const t of targets) {
      const r = typical(results[`${t.name}|${qos}|${version}`]!);
      console.log(
        `  MQTT ${name.padEnd(5)} QoS ${qos} ${t.name.padEnd(22)} ${r.rate.toFixed(0).padStart(7)} msg/s delivered (${r.delivered}/${r.expected}), latency p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms, broker CPU ${r.cpuUsPerMessage.toFixed(1)} µs/msg, broker RSS ${r.rss.toFixed(0)} MiB, clients busy ${(100 * r.clientBusy).toFixed(0)}% of a core`,
      );
    }
    const box = results[`${targets[1]!.name}|${qos}|${version}`]!;
    const reference = results[`${targets[0]!.name}|${qos}|${version}`]!;
    const ratios = box.map((b, i) => b.rate / reference[i]!.rate);
    const cpuRatios = box.map((b, i) => b.cpuUsPerMessage / reference[i]!.cpuUsPerMessage);
    console.log(
      `  MQTT ${name.padEnd(5)} QoS ${qos} throughput ratio box / mosquitto: ${median(ratios).toFixed(2)}x (rounds ${ratios.map((x) => x.toFixed(2)).join(', ')}; target >= 0.9x); broker CPU per message box / mosquitto: ${median(cpuRatios).toFixed(2)}x (box ${box.map((b) => b.cpuUsPerMessage.toFixed(1)).join(', ')} µs, of which off its main thread ${box.map((b) => b.helperUsPerMessage.toFixed(1)).join(', ')} µs; mosquitto ${reference.map((r) => r.cpuUsPerMessage.toFixed(1)).join(', ')} µs)`,
    );
  }
}
const boxCpu = Math.min(
  ...VERSIONS.flatMap(([version]) =>
    QOS_LEVELS.map((qos) => typical(results[`${targets[1]!.name}|${qos}|${version}`]!).cpuUsPerMessage),
  ),
);
console.log(
  `  read check on each delivery: ${(checkUs * 1000).toFixed(0)} ns per message, ${((100 * checkUs) / boxCpu).toFixed(1)}% of the box's least CPU per delivered message (${boxCpu.toFixed(1)} µs; target <= 10%)`,
);
console.log(
  `  before sign-in: ${PREAUTH} connections sending 1 MiB CONNECTs (50 at a time), ${refusedConnects} cut off by the box; its RSS idle ${idleRss.toFixed(0)} MiB, peak ${peakRss.toFixed(0)} MiB (+${(peakRss - idleRss).toFixed(0)} MiB, target < 100), 2 s after ${afterRss.toFixed(0)} MiB`,
);
process.exit(0);
