// npm run bench:automations — the box (a process, MQTT on) with AUTOMATIONS automations loaded:
// 1. latency: a device's message arriving at the broker to the automation's command leaving it
//    (a siren's client receives it), p50 and p99, against a bare MQTT round trip through the same
//    broker in the same run (a device's message to an app's subscription). Target: p99 under
//    20 ms over the round trip. All the automations watch the trigger device (one matches the
//    payload, the others wait for other values), so each message is tested against all of them.
// 2. the broker's throughput (DEVICES devices each publishing MESSAGES to one app subscriber),
//    without automations and with them watching those devices, in alternate ROUNDS. Target 0.9x.
// AUTOMATIONS=1000 TRIALS=200 DEVICES=20 MESSAGES=2000 ROUNDS=5 PIN=1 by default.
import { rm } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { tempDir } from '../helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode } from '../helpers/processes.ts';
import { cpuTicks, OTHER_CORES, pct, PIN, pin, TICK } from './proc-stats.ts';

const AUTOMATIONS = Number(process.env['AUTOMATIONS'] ?? 1000);
const TRIALS = Number(process.env['TRIALS'] ?? 200);
const DEVICES = Number(process.env['DEVICES'] ?? 20);
const MESSAGES = Number(process.env['MESSAGES'] ?? 2000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 5);

const dir = await tempDir('fogedge-bench-automations-');
const [httpPort, mqttPort] = [await freePort(), await freePort()];
const box = await startedNode({
  FOGEDGE_DATA_DIR: dir,
  PORT: String(httpPort),
  FOGEDGE__HTTP__HOST: '127.0.0.1',
  FOGEDGE__VIDEO__DEMOCAMERA: 'false',
  FOGEDGE__MQTT: '{}',
  FOGEDGE__MQTT__HOST: '127.0.0.1',
  FOGEDGE__MQTT__PORT: String(mqttPort),
  FOGEDGE__MQTT__TLSPORT: 'null',
  // The trials come one after another for minutes: not a loop.
  FOGEDGE__AUTOMATIONS__MAXRUNSPERMINUTE: '10000',
  FOGEDGE__AUTOMATIONS__MAXAUTOMATIONS: String(Math.max(2000, AUTOMATIONS + 10)),
});
await pin(box.pid, '0');
await pin(process.pid, OTHER_CORES);
const base = `http://127.0.0.1:${httpPort}`;
const session = await firstAdminSession(base, 'admin', 'admin-password-1');
const auth = { authorization: `Bearer ${session}`, 'content-type': 'application/json' };
const api = async (method: string, path: string, body?: unknown) => {
  const res = await getJson(`${base}/api/v1${path}`, {
    method,
    headers: auth,
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
  return res.json;
};
const secrets: Record<string, string> = {};
const loadDevices = Array.from({ length: DEVICES }, (_, i) => `load${i}`);
for (const id of ['trig', 'siren', ...loadDevices])
  secrets[id] = (await api('POST', '/devices', { id, name: id })).secret;
const token = (await api('POST', '/tokens', { name: 'bench' })).token as string;

const connect = (username: string, password: string) =>
  mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { username, password, reconnectPeriod: 0, protocolVersion: 5 });
const trig = await connect('trig', secrets['trig']!);
const siren = await connect('siren', secrets['siren']!);
const app = await connect('admin', token);
await siren.subscribeAsync('fogedge/devices/siren/cmd/#', { qos: 0 });
await app.subscribeAsync(['fogedge/devices/trig/rt', 'fogedge/devices/+/data'], { qos: 0 });

/** Sends `topic` from the trigger device and waits for `from` to receive a message: ms. */
function trial(client: MqttClient, topic: string, payload: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const timer = setTimeout(() => reject(new Error(`no answer to ${topic} ${payload} in 5 s`)), 5000);
    client.once('message', () => {
      clearTimeout(timer);
      resolve(performance.now() - t0);
    });
    trig.publish(topic, payload, { qos: 0 });
  });
}
/** One trial each 100 ms: under the broker's per-device limit on what reaches the services (20 a second). */
async function trials(client: MqttClient, topic: string, payload: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    out.push(await trial(client, topic, payload));
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

async function loadAutomations(): Promise<void> {
  for (let i = 0; i < AUTOMATIONS; i++) {
    const last = i === AUTOMATIONS - 1;
    // Most watch the load devices (throughput) or the trigger device for another value; the last fires the siren.
    const device = last || i % 2 === 0 ? 'trig' : loadDevices[i % loadDevices.length]!;
    await api('PUT', `/automations/bench-${i}`, {
      name: `bench ${i}`,
      triggers: [
        {
          kind: 'device.message',
          device,
          topic: device === 'trig' ? 'go' : 'data',
          match: { equals: last ? 'go' : `never-${i}` },
        },
      ],
      actions: [{ kind: 'device.publish', device: 'siren', channel: 'go', payload: 'GO' }],
    });
  }
}
async function removeAutomations(): Promise<void> {
  for (let i = 0; i < AUTOMATIONS; i++) await api('DELETE', `/automations/bench-${i}`);
}

/** Messages a second through the broker (DEVICES devices × MESSAGES each, to the app's one subscription), and the box's CPU µs per message. */
async function throughput(): Promise<{ rate: number; cpuUs: number }> {
  const pubs = await Promise.all(loadDevices.map((id) => connect(id, secrets[id]!)));
  const expected = DEVICES * MESSAGES;
  let got = 0;
  const done = new Promise<void>((resolve) => {
    const on = (topic: string) => {
      if (topic.endsWith('/data') && ++got === expected) {
        app.off('message', on);
        resolve();
      }
    };
    app.on('message', on);
  });
  const t0 = performance.now();
  const ticks0 = cpuTicks(box.pid);
  await Promise.all(
    pubs.map(async (c, i) => {
      for (let m = 0; m < MESSAGES; m++) {
        c.publish(`fogedge/devices/${loadDevices[i]}/data`, `m${m}`, { qos: 0 });
        if (m % 50 === 49) await new Promise((r) => setImmediate(r));
      }
    }),
  );
  await done;
  const rate = expected / ((performance.now() - t0) / 1000);
  const cpuUs = ((cpuTicks(box.pid) - ticks0) / TICK / expected) * 1e6;
  await Promise.all(pubs.map((c) => c.endAsync()));
  return { rate, cpuUs };
}

const without: Array<{ rate: number; cpuUs: number }> = [];
const withAutomations: Array<{ rate: number; cpuUs: number }> = [];
let bare: number[] = [];
let automated: number[] = [];
// A first run warms the broker up (JIT, buffers): not counted.
await throughput();
for (let round = 0; round < ROUNDS; round++) {
  process.stderr.write(`round ${round + 1}: throughput without automations…\n`);
  without.push(await throughput());
  process.stderr.write(`round ${round + 1}: loading ${AUTOMATIONS} automations…\n`);
  const loadStarted = performance.now();
  await loadAutomations();
  if (round === 0)
    process.stderr.write(
      `  ${AUTOMATIONS} saved through the API in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s\n`,
    );
  // The saves' own work (LevelDB compaction, garbage) settles before the broker is measured.
  await new Promise((r) => setTimeout(r, 3000));
  withAutomations.push(await throughput());
  if (round === 0) {
    process.stderr.write(`latency: ${TRIALS} bare round trips, then ${TRIALS} trigger-to-action…\n`);
    bare = await trials(app, 'fogedge/devices/trig/rt', 'ping');
    automated = await trials(siren, 'fogedge/devices/trig/go', 'go');
  }
  if (round < ROUNDS - 1) {
    await removeAutomations();
    await new Promise((r) => setTimeout(r, 3000));
  }
}

const f = (x: number) => x.toFixed(1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `\nbench:automations, ${AUTOMATIONS} automations loaded (all testing each trigger message)${PIN ? ', the box on core 0' : ''}`,
);
console.log('| what | p50 ms | p99 ms |');
console.log('| --- | --- | --- |');
console.log(`| bare MQTT round trip (reference) | ${f(pct(bare, 0.5))} | ${f(pct(bare, 0.99))} |`);
console.log(`| trigger message to the action's message | ${f(pct(automated, 0.5))} | ${f(pct(automated, 0.99))} |`);
console.log(
  `| over the round trip | ${f(pct(automated, 0.5) - pct(bare, 0.5))} | ${f(pct(automated, 0.99) - pct(bare, 0.99))} (target < 20) |`,
);
const rates = (xs: typeof without) => xs.map((x) => x.rate);
const cpus = (xs: typeof without) => xs.map((x) => x.cpuUs);
console.log(
  `\nbroker throughput, ${DEVICES} devices × ${MESSAGES} messages, QoS 0, median of ${ROUNDS} rounds (msg/s without/with: ${without.map((r, i) => `${r.rate.toFixed(0)}/${withAutomations[i]!.rate.toFixed(0)}`).join(', ')})`,
);
console.log('| | msg/s | box CPU µs per message |');
console.log('| --- | --- | --- |');
console.log(`| without automations | ${median(rates(without)).toFixed(0)} | ${f(median(cpus(without)))} |`);
console.log(
  `| with ${AUTOMATIONS} automations | ${median(rates(withAutomations)).toFixed(0)} | ${f(median(cpus(withAutomations)))} |`,
);
console.log(
  `| ratio (with / without) | ${(median(rates(withAutomations)) / median(rates(without))).toFixed(2)}x (target >= 0.9x) | ${(median(cpus(withAutomations)) / median(cpus(without))).toFixed(2)}x |`,
);

for (const c of [trig, siren, app]) c.end(true);
await box.kill('SIGTERM');
await rm(dir, { recursive: true, force: true });
