// npm run bench:update — the recording gap of a box update, against the gap of a plain restart
// measured in the same run. The box runs under appliance/release-runner.mjs from a releases folder
// (this checkout as its first release) and records its demo camera in 2 s segments; the gap is
// read back from the box's own segment list: the end of the last segment before, the start of
// the first one after.
//   restart: the runner stopped and started again, as `systemctl restart fogedge` does;
//   update:  a signed release installed through POST /api/v1/system/update.
// RUNS=2 of each, alternating.
import path from 'node:path';
import { freePort, getJson, Proc, waitUntil } from '../helpers/processes.ts';
import { ReleaseLab } from '../helpers/releases.ts';
import { pct } from './proc-stats.ts';

const RUNS = Number(process.env['RUNS'] ?? 2);
const lab = await ReleaseLab.create();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const env = {
  FOGEDGE_DATA_DIR: path.join(lab.root, 'data'),
  PORT: String(port),
  FOGEDGE__HTTP__HOST: '127.0.0.1',
  LOGLEVEL: 'warn',
  FOGEDGE__VIDEO__RTMP: 'null',
  FOGEDGE__DETECTOR__ENABLED: 'false',
  FOGEDGE__MQTT: 'null',
  FOGEDGE__VIDEO__SEGMENTSECONDS: '2',
  FOGEDGE__UPDATE__RELEASESOURCES: `[${lab.archiveUrl}]`,
  FOGEDGE__UPDATE__RELEASEKEYS: JSON.stringify([lab.releaseKeyPem]),
};
let runner = new Proc(process.execPath, lab.runnerArgs, env);
const version = () =>
  getJson(`${base}/api/v1/health`).then(
    (r) => r.json?.version as string | undefined,
    () => undefined,
  );
await waitUntil('the box up', async () => (await version()) !== undefined, 60_000);
const setup = await getJson(`${base}/api/v1/setup`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ username: 'admin', password: 'bench-password-1' }),
});
const auth = { authorization: `Bearer ${/fogedge_session=([^;]+)/.exec(setup.headers.get('set-cookie')!)![1]!}` };

interface Segment {
  start: string;
  end: string;
}
const segments = async (from: number): Promise<Segment[]> =>
  (
    await getJson(
      `${base}/api/v1/cameras/demo/segments?from=${new Date(from).toISOString()}&to=${new Date(Date.now() + 60_000).toISOString()}`,
      { headers: auth },
    )
  ).json ?? [];
/** Recording for `ms` after `since`: the segments' ends say so. */
const recordedAfter = (since: number, ms = 4000) =>
  waitUntil(
    'recording',
    async () =>
      (await segments(since)).some(
        (s) => Date.parse(s.end) - Math.max(since, Date.parse(s.start)) >= ms || Date.parse(s.start) > since + 1000,
      ),
    90_000,
    250,
  );
/** The longest gap between consecutive segments since `from`, ms. */
async function gapSince(from: number): Promise<number> {
  const list = (await segments(from))
    .map((s) => ({ start: Date.parse(s.start), end: Date.parse(s.end) }))
    .sort((a, b) => a.start - b.start);
  let gap = 0;
  for (let i = 1; i < list.length; i++) gap = Math.max(gap, list[i]!.start - list[i - 1]!.end);
  return gap;
}

async function restart(): Promise<number> {
  const from = Date.now() - 10_000;
  await runner.kill('SIGTERM');
  runner = new Proc(process.execPath, lab.runnerArgs, env);
  const after = Date.now();
  await waitUntil('the box up again', async () => (await version()) !== undefined, 60_000);
  await recordedAfter(after);
  return gapSince(from);
}

async function update(to: string): Promise<number> {
  const release = await lab.make(to);
  const from = Date.now() - 10_000;
  const res = await getJson(`${base}/api/v1/system/update`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      version: to,
      url: release.url,
      sha256: release.sha256,
      signature: release.signature,
      healthySeconds: 2,
    }),
  });
  if (res.status !== 202) throw new Error(`update refused: ${res.text}`);
  const after = Date.now();
  await waitUntil(`${to} up`, async () => (await version()) === to, 90_000);
  await recordedAfter(after);
  await waitUntil(
    `${to} confirmed`,
    async () => (await getJson(`${base}/api/v1/system/update`, { headers: auth })).json?.update?.state === 'confirmed',
    60_000,
  );
  return gapSince(from);
}

try {
  await recordedAfter(Date.now() - 60_000, 6000);
  const restarts: number[] = [];
  const updates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    restarts.push(await restart());
    updates.push(await update(`9.${i + 1}.0`));
  }
  console.log(`recording gap, restart (reference): ${restarts.map((g) => `${g} ms`).join(', ')}`);
  console.log(`recording gap, update:              ${updates.map((g) => `${g} ms`).join(', ')}`);
  console.log(`update / restart (median): ${(pct(updates, 0.5) / pct(restarts, 0.5)).toFixed(2)}x`);
} finally {
  await runner.kill('SIGTERM');
  await lab.close();
}
