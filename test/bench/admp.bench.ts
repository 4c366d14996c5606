// npm run bench:admp — the ADMP uplink against bare mqtt.js and bare LevelDB, in one run, on
// Debian's mosquitto as the operator's broker. MESSAGES=5000 audit entries of about 300 bytes:
//  1. store: the uplink queues them while the link is down (durable, synced writes), against a
//     loop of synced LevelDB puts of the same JSON;
//  2. drain: the link comes back and the backlog goes up (QoS 2, in order, window capped by the
//     broker's receive maximum), against a bare mqtt.js client publishing the same messages with
//     QoS 2 and the same window, both timed until the operator's subscriber has them all.
import { mkdir, rm } from 'node:fs/promises';
import { Level } from 'level';
import mqtt from 'mqtt';
import { ConfigSchema } from '../../appliance/config.ts';
import { writeProvisioning } from '../../appliance/provisioning.ts';
import { createBroker } from '../../gateway/broker.ts';
import { tempDir } from '../helpers/box.ts';
import { Operator, OperatorBroker } from '../helpers/operator.ts';
import { waitUntil } from '../helpers/processes.ts';

const MESSAGES = Number(process.env['MESSAGES'] ?? 5000);
const WINDOW = 16;
const entry = (i: number) => ({
  username: `intruder-${i}`,
  ip: '192.168.1.77',
  reason: 'Wrong user name or password',
  pad: 'x'.repeat(160),
});

const adm = await OperatorBroker.start({ box: 'box-secret', bare: 'bare-secret', platform: 'platform-secret' });
const operator = await Operator.connect(adm.url, 'platform', 'platform-secret', 'bench');
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);
const arrived = (topic: string) => operator.received.filter((r) => r.topic.startsWith(topic)).length;

// Reference 1: synced LevelDB puts of the same JSON.
const levelDir = await tempDir('fogedge-bench-level-');
const db = new Level<string, unknown>(levelDir, { valueEncoding: 'json' });
let t0 = performance.now();
for (let i = 0; i < MESSAGES; i++)
  await db.put(
    String(i).padStart(16, '0'),
    { seq: i, at: new Date().toISOString(), action: 'account.sign-in.failed', ...entry(i) },
    { sync: true },
  );
const levelMs = performance.now() - t0;
await db.close();

// Reference 2: bare mqtt.js, QoS 2, the same window.
const bare = await mqtt.connectAsync(adm.url, {
  clientId: 'bare',
  username: 'bare',
  password: 'bare-secret',
  protocolVersion: 5,
});
t0 = performance.now();
await new Promise<void>((resolve) => {
  let next = 0;
  let done = 0;
  const pump = () => {
    while (next < MESSAGES && next - done < WINDOW) {
      const i = next++;
      bare.publish(
        'bench/bare/audit',
        JSON.stringify({ seq: i, at: new Date().toISOString(), action: 'account.sign-in.failed', ...entry(i) }),
        { qos: 2 },
        () => {
          done++;
          if (done === MESSAGES) resolve();
          else pump();
        },
      );
    }
  };
  pump();
});
await waitUntil('the bare messages at the operator', () => arrived('bare/') >= MESSAGES, 120_000, 5);
const bareMs = performance.now() - t0;
await bare.endAsync();

// The box: provisioned, the operator's broker down while the entries are made.
const dataDir = await tempDir('fogedge-bench-admp-');
await mkdir(dataDir, { recursive: true });
const config = ConfigSchema.parse({
  dataDir,
  services: ['system', 'admp'],
  mqtt: null,
  logLevel: 'warn',
  admp: { telemetrySeconds: 86_400, reconnectMs: 100, maxQueueItems: MESSAGES * 2, inFlight: WINDOW },
});
await writeProvisioning(config, {
  url: adm.url,
  boxId: 'box',
  username: 'box',
  password: 'box-secret',
  topicRoot: 'bench',
  protocolVersion: 5,
});
const box = createBroker(config, { logger: false });
await box.start();
await waitUntil(
  'the box online',
  async () => ((await box.call('admp.status')) as { connected: boolean }).connected,
  10_000,
);
await adm.stop();
await waitUntil(
  'the box sees the link down',
  async () => !((await box.call('admp.status')) as { connected: boolean }).connected,
  10_000,
);
t0 = performance.now();
for (let i = 0; i < MESSAGES; i++) await box.broadcast('account.sign-in.failed', entry(i));
await waitUntil(
  'all queued',
  async () => ((await box.call('admp.status')) as { queue: { items: number } }).queue.items >= MESSAGES,
  120_000,
  5,
);
const storeMs = performance.now() - t0;
const onlineBefore = operator.received.filter((r) => r.topic === 'box/status' && r.body.online === true).length;
await adm.start();
// From the box's reconnect (its retained "online" comes first), so the reconnect delay is not counted.
await waitUntil(
  'the box online again',
  () => operator.received.filter((r) => r.topic === 'box/status' && r.body.online === true).length > onlineBefore,
  30_000,
  2,
);
t0 = performance.now();
await waitUntil('the backlog at the operator', () => arrived('box/audit') >= MESSAGES, 300_000, 5);
const drainMs = performance.now() - t0;
const audits = operator.received.filter((r) => r.topic === 'box/audit').map((r) => r.body.seq as number);
const inOrder = audits.every((s, i) => i === 0 || s > audits[i - 1]!);

console.log(
  `\nADMP uplink, ${MESSAGES} audit entries of ~${JSON.stringify(entry(0)).length + 80} B, mosquitto 2.0 on loopback, window ${WINDOW}`,
);
console.table({
  'store while offline (msg/s)': {
    uplink: rate(MESSAGES, storeMs),
    reference: rate(MESSAGES, levelMs),
    ratio: +(levelMs / storeMs).toFixed(2),
    'reference is': 'synced LevelDB puts',
  },
  'drain to the operator (msg/s)': {
    uplink: rate(MESSAGES, drainMs),
    reference: rate(MESSAGES, bareMs),
    ratio: +(bareMs / drainMs).toFixed(2),
    'reference is': 'bare mqtt.js QoS 2',
  },
});
console.log(
  `backlog of ${MESSAGES} drained in ${(drainMs / 1000).toFixed(1)} s after the reconnect; in order: ${inOrder}; duplicates: ${audits.length - new Set(audits).size}`,
);

await box.stop();
await operator.close();
await adm.stop();
for (const d of [dataDir, levelDir]) await rm(d, { recursive: true, force: true });
process.exit(0);
