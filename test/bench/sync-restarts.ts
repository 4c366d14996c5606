// The restart line of npm run bench:sync: the real box (the demo camera, detection, MQTT on)
// started and stopped RESTARTS=5 times, clean (SIGTERM) and crashed (SIGKILL) in turn, each run
// RUN_SECONDS=20 long, cloud sync to s3rver behind a proxy that counts every PUT. Then one last
// start drains what is left. Printed: events that ended on the box against event.json objects in
// the bucket (target 100%), duplicate uploads (target 0), and what the box's own process wrote to
// disk per camera per hour (its stores, snapshots, outbox; the recordings are ffmpeg's).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createServer, request } from 'node:http';
import { rm } from 'node:fs/promises';
import { tempDir } from '../helpers/box.ts';
import { freePort, getJson, startedNode, waitUntil, type Proc } from '../helpers/processes.ts';
import { S3rver } from '../helpers/storage.ts';

const RESTARTS = Number(process.env['RESTARTS'] ?? 5);
const RUN_SECONDS = Number(process.env['RUN_SECONDS'] ?? 20);

const writeBytes = (pid: number) => {
  try {
    return Number(/write_bytes:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

const dirBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, e) => sum + (e.isDirectory() ? dirBytes(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).size),
    0,
  );

/** s3rver behind a proxy that counts PUTs by object name (s3rver does not check V4 signatures). */
async function countingS3() {
  const s3 = await S3rver.create(await tempDir(), 'restarts');
  const puts = new Map<string, number>();
  const port = await freePort();
  const proxy = createServer((req, res) => {
    const key = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/restarts\//, '');
    const upstream = request(
      { host: '127.0.0.1', port: s3.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (req.method === 'PUT' && (up.statusCode ?? 500) < 300 && !/[?&]partNumber=/.test(req.url ?? ''))
          puts.set(key, (puts.get(key) ?? 0) + 1);
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
  return { s3, puts, endpoint: `http://127.0.0.1:${port}`, close: async () => (proxy.close(), await s3.stop()) };
}

export async function restartLine(): Promise<void> {
  const storage = await countingS3();
  const dataDir = await tempDir('fogedge-bench-restarts-');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    NODEID: 'restarts',
    FOGEDGE__DETECTOR__ENABLED: 'true',
    FOGEDGE__SYNC__BOXID: 'restarts',
    FOGEDGE__MQTT: JSON.stringify({ host: '127.0.0.1', port: await freePort(), tlsPort: null }),
  };
  let written = 0;
  let seconds = 0;
  let box: Proc = await startedNode(env);
  const setup = await getJson(`${base}/api/v1/setup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'restarts-password' }),
  });
  const auth = {
    authorization: `Bearer ${/fogedge_session=([^;]+)/.exec(setup.headers.get('set-cookie') ?? '')![1]}`,
    'content-type': 'application/json',
  };
  const target = { ...storage.s3.target('s3', { bucket: 'restarts' }), endpoint: storage.endpoint };
  await getJson(`${base}/api/v1/sync/targets`, { method: 'POST', headers: auth, body: JSON.stringify(target) });
  await getJson(`${base}/api/v1/sync/policy`, {
    method: 'PUT',
    headers: auth,
    body: JSON.stringify({ resources: ['events', 'snapshots'] }),
  });
  const kills: string[] = [];
  const mqttStore = path.join(dataDir, 'db', 'mqtt');
  const mqttBefore = dirBytes(mqttStore);
  for (let run = 1; run <= RESTARTS + 1; run++) {
    const w0 = writeBytes(box.pid);
    const t0 = Date.now();
    if (run > RESTARTS) {
      // The last start, with detection off (nothing new starts): what ended is handed over, and the outbox drains.
      await waitUntil(
        'the outbox drained',
        async () => {
          const s = (await getJson(`${base}/api/v1/sync/status`, { headers: auth })).json;
          return s?.queue?.items === 0 && s.waitingFor?.length === 0;
        },
        120_000,
        500,
      );
      await new Promise((r) => setTimeout(r, 3000));
    } else {
      await new Promise((r) => setTimeout(r, RUN_SECONDS * 1000));
    }
    written += writeBytes(box.pid) - w0;
    seconds += (Date.now() - t0) / 1000;
    if (run > RESTARTS) break;
    const signal = run % 2 ? 'SIGKILL' : 'SIGTERM';
    kills.push(signal);
    await box.kill(signal);
    box = await startedNode(run === RESTARTS ? { ...env, FOGEDGE__DETECTOR__ENABLED: 'false' } : env);
  }
  // Events still open now have not ended: they are not expected in the bucket yet.
  const events = (
    (await getJson(`${base}/api/v1/events?limit=1000`, { headers: auth })).json as Array<{
      id: string;
      end: string | null;
    }>
  ).filter((e) => e.end !== null);
  await box.kill('SIGTERM');
  const mqttGrowth = dirBytes(mqttStore) - mqttBefore;
  const objects = await storage.s3.list('restarts/');
  const uploaded = new Set(objects.filter((o) => o.endsWith('/event.json')).map((o) => o.split('/').at(-2)));
  const missing = events.filter((e) => !uploaded.has(e.id)).length;
  const duplicates = [...storage.puts.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
  console.log(
    `restarts (${kills.join(', ')}): ${events.length} events ended, ${events.length - missing} in the bucket (${events.length ? (((events.length - missing) / events.length) * 100).toFixed(1) : '100.0'}%), ${duplicates} duplicate uploads of ${storage.puts.size} objects`,
  );
  console.log(
    `bytes the box's process wrote (stores, event snapshots, outbox, MQTT on; recordings are ffmpeg's): ${(((written / seconds) * 3600) / 1024 / 1024).toFixed(1)} MiB per camera per hour; of it the MQTT store grew ${(((mqttGrowth / seconds) * 3600) / 1024).toFixed(0)} KiB per camera per hour`,
  );
  await storage.close();
  await rm(dataDir, { recursive: true, force: true });
}
