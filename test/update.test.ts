// The box's own update without balena, end to end: the box runs under release-runner.mjs from a
// releases folder; a release archive is served over HTTP, checked, installed, and the box
// restarts into it. A release that crashes or never becomes healthy is rolled back; a good one
// is confirmed. The releases are this repository's own files (node_modules linked, not copied),
// with a broken program (build/gateway/main.js, gateway/main.ts) for the bad ones.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { Operator, OperatorBroker } from './helpers/operator.ts';
import { firstAdminSession, freePort, getJson, Proc, waitUntil } from './helpers/processes.ts';
import { BASE_VERSION as BASE, ReleaseLab } from './helpers/releases.ts';

let lab: ReleaseLab;
let root: string;
let runner: Proc;
let base: string;
let session: string;
let adm: OperatorBroker;
let operator: Operator;

const json = (body: unknown, method = 'POST') => ({
  method,
  headers: { 'content-type': 'application/json', authorization: `Bearer ${session}` },
  body: JSON.stringify(body),
});
/** The version of the box running, once every service is up (a box still starting answers 503). */
const health = () =>
  getJson(`${base}/api/v1/health`).then(
    (r) => (r.status === 200 ? (r.json?.version as string | undefined) : undefined),
    () => undefined,
  );
const updateStatus = async () =>
  (await getJson(`${base}/api/v1/system/update`, { headers: { authorization: `Bearer ${session}` } })).json;
const makeRelease = (version: string, edit?: (dir: string) => Promise<void>) => lab.make(version, edit);
const signed = (version: string, sha256: string, key = lab.vendor.privateKey) => lab.sign(version, sha256, key);

/** The processes `pid` started: their command lines and working folders. */
function childrenOf(pid: number): Array<{ args: string[]; cwd: string }> {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        // The parent's pid is the field after the command's (parenthesised) name.
        const parent = Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        if (parent !== pid) return [];
        const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter(Boolean);
        return [{ args, cwd: readlinkSync(`/proc/${p}/cwd`) }];
      } catch {
        return []; // gone meanwhile
      }
    });
}

test.before(async () => {
  // uvu drops an error thrown here without a word (its runner returns from a finally): say it.
  await startAll().catch((err: Error) => {
    console.error(`before: ${err.stack}`);
    throw err;
  });
});

async function startAll(): Promise<void> {
  lab = await ReleaseLab.create();
  root = lab.root;
  // An older install: the installer's settings in the release's own folder.
  await writeFile(path.join(root, 'releases', BASE, 'fogedge.yaml'), 'admp:\n  commandMaxSkewSeconds: 77\n');

  // The operator hears how each update ended.
  adm = await OperatorBroker.start({ 'box-u': 'box-secret-u', platform: 'platform-secret-u' });
  operator = await Operator.connect(adm.url, 'platform', 'platform-secret-u', 'fogedge/boxes/box-u');
  const httpPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  runner = new Proc(process.execPath, lab.runnerArgs, {
    FOGEDGE_DATA_DIR: path.join(root, 'data'),
    PORT: String(httpPort),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__RTMP: 'null',
    FOGEDGE__DETECTOR__ENABLED: 'false',
    FOGEDGE__MQTT: 'null',
    FOGEDGE__VIDEO__DEMOCAMERA: 'false',
    FOGEDGE__UPDATE__RELEASESOURCES: `[${lab.archiveUrl}]`,
    FOGEDGE__UPDATE__RELEASEKEYS: JSON.stringify([lab.releaseKeyPem]),
    FOGEDGE_ADMP_URL: adm.url,
    FOGEDGE_ADMP_BOX_ID: 'box-u',
    FOGEDGE_ADMP_USERNAME: 'box-u',
    FOGEDGE_ADMP_PASSWORD: 'box-secret-u',
    FOGEDGE__ADMP__RECONNECTMS: '200',
    FOGEDGE__ADMP__RECONNECTMAXMS: '1000',
  });
  await waitUntil('the first release up', async () => (await health()) === BASE, 30_000);
  session = await firstAdminSession(base, 'admin', 'update-password-1');
}

test.after(async () => {
  await runner?.kill('SIGTERM');
  await operator?.close();
  await adm?.stop();
  await lab?.close();
});

test('a release whose checksum is wrong, or whose version is not what it says, is refused and nothing changes', async () => {
  const good = await makeRelease('9.1.0');
  // Signed by the vendor, or nothing: unsigned, signed by someone else, or a signature of another version.
  const unsigned = await getJson(
    `${base}/api/v1/system/update`,
    json({ version: '9.1.0', url: good.url, sha256: good.sha256 }),
  );
  assert.is(unsigned.json.error.type, 'RELEASE_NOT_SIGNED', unsigned.text);
  const forged = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.1.0',
      url: good.url,
      sha256: good.sha256,
      signature: signed('9.1.0', good.sha256, generateKeyPairSync('ed25519').privateKey),
    }),
  );
  assert.is(forged.json.error.type, 'BAD_SIGNATURE', forged.text);
  const replayed = await getJson(
    `${base}/api/v1/system/update`,
    json({ version: '9.1.1', url: good.url, sha256: good.sha256, signature: signed('9.1.0', good.sha256) }),
  );
  assert.is(replayed.json.error.type, 'BAD_SIGNATURE', replayed.text);
  const wrongSum = await getJson(
    `${base}/api/v1/system/update`,
    json({ version: '9.1.0', url: good.url, sha256: 'a'.repeat(64), signature: signed('9.1.0', 'a'.repeat(64)) }),
  );
  assert.is(wrongSum.status, 400);
  assert.is(wrongSum.json.error.type, 'CHECKSUM_MISMATCH');
  assert.not.match(wrongSum.text, good.sha256, 'the answer does not tell what the URL held');
  const elsewhere = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.1.0',
      url: 'http://127.0.0.1:9/fogedge-9.1.0.tgz',
      sha256: good.sha256,
      signature: signed('9.1.0', good.sha256),
    }),
  );
  assert.is(elsewhere.json.error.type, 'SOURCE_NOT_ALLOWED', elsewhere.text);
  const wrongVersion = await getJson(
    `${base}/api/v1/system/update`,
    json({ version: '9.1.1', url: good.url, sha256: good.sha256, signature: signed('9.1.1', good.sha256) }),
  );
  assert.is(wrongVersion.json.error.type, 'VERSION_MISMATCH');
  const missing = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.1.1',
      url: `${lab.archiveUrl}/nothing.tgz`,
      sha256: good.sha256,
      signature: signed('9.1.1', good.sha256),
    }),
  );
  assert.match(missing.json.error.message, /HTTP 404/);
  const s = await updateStatus();
  assert.is(s.mode, 'release');
  assert.is(s.update, null);
  assert.equal([s.current, s.releases], [BASE, [BASE]]);
});

test('a release that crashes at start is rolled back after 3 tries, and the box says why', async () => {
  const crash = await makeRelease('9.0.0-crash', (dir) => ReleaseLab.program(dir, 'process.exit(3);\n'));
  const res = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.0.0-crash',
      url: crash.url,
      sha256: crash.sha256,
      signature: signed('9.0.0-crash', crash.sha256),
    }),
  );
  assert.is(res.status, 202, res.text);
  assert.equal([res.json.from, res.json.to, res.json.state], [BASE, '9.0.0-crash', 'restarting']);
  await runner.waitForLine(/rolled back to/, 60_000);
  await waitUntil('the old release back', async () => (await health()) === BASE, 30_000);
  await waitUntil(
    'the rollback in the status',
    async () => (await updateStatus().catch(() => ({})))?.update?.state === 'rolled-back',
    10_000,
  );
  const s = await updateStatus();
  assert.match(s.update.reason, /exited 3 times/);
  assert.is(s.current, BASE);
  await waitUntil('the outcome announced', async () => (await updateStatus()).update.reported === true);
  const told = await operator.waitFor(
    'the rollback told to the operator',
    'audit',
    (b) => b.action === 'box.update.finished',
  );
  assert.equal([told.ok, told.from, told.to, told.by], [false, BASE, '9.0.0-crash', 'admin']);
  assert.match(told.reason, /exited 3 times/);
  assert.ok(operator.on('audit').some((r) => r.body.action === 'box.update.started' && r.body.to === '9.0.0-crash'));
});

test('a good release is confirmed once healthy; the one that failed is cleared away', async () => {
  const good = await makeRelease('9.1.0');
  const res = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.1.0',
      url: good.url,
      sha256: good.sha256,
      signature: signed('9.1.0', good.sha256),
      healthySeconds: 2,
    }),
  );
  assert.is(res.status, 202, res.text);
  await waitUntil('the new release up', async () => (await health()) === '9.1.0', 60_000);
  await waitUntil('confirmed', async () => (await updateStatus()).update.state === 'confirmed', 20_000);
  const s = await updateStatus();
  assert.equal([s.current, s.previous, s.releases], ['9.1.0', BASE, [BASE, '9.1.0'].sort()]);
  // The runner starts the release's compiled program, from the release's folder, with no loader.
  const box = childrenOf(runner.pid);
  assert.equal(
    box.map((p) => [p.args.slice(1), p.cwd]),
    [[['build/gateway/main.js'], realpathSync(path.join(root, 'releases', '9.1.0'))]],
  );
  await operator.waitFor(
    'the success told to the operator',
    'audit',
    (b) => b.action === 'box.update.finished' && b.ok === true && b.to === '9.1.0',
  );
  await operator.waitFor('the new version online', 'status', (b) => b.online === true && b.version === '9.1.0');
  // The data root is the same: the session made on the first release still works.
  assert.is((await getJson(`${base}/api/v1/auth/me`, { headers: { authorization: `Bearer ${session}` } })).status, 200);
  // The installer's settings came along: moved from the first release's folder into the data root.
  const config = (await getJson(`${base}/api/v1/system/config`, { headers: { authorization: `Bearer ${session}` } }))
    .json;
  assert.is(
    config.admp.commandMaxSkewSeconds,
    77,
    "the setting from the installer's fogedge.yaml is in force in the new release",
  );
  assert.ok(existsSync(path.join(root, 'data', 'fogedge.yaml')));
  assert.not.ok(existsSync(path.join(root, 'releases', BASE, 'fogedge.yaml')));
});

test('a release that runs but never becomes healthy is stopped at its deadline and rolled back', async () => {
  const hang = await makeRelease('9.2.0-hang', (dir) => ReleaseLab.program(dir, 'setInterval(() => {}, 1000);\n'));
  const res = await getJson(
    `${base}/api/v1/system/update`,
    json({
      version: '9.2.0-hang',
      url: hang.url,
      sha256: hang.sha256,
      signature: signed('9.2.0-hang', hang.sha256),
      deadlineSeconds: 10,
    }),
  );
  assert.is(res.status, 202, res.text);
  await waitUntil(
    'the good release back',
    async () => (await updateStatus().catch(() => ({})))?.update?.state === 'rolled-back',
    60_000,
  );
  const s = await updateStatus();
  assert.match(s.update.reason, /not healthy by/);
  assert.is(s.current, '9.1.0');
  await waitUntil('the good release answering', async () => (await health()) === '9.1.0', 30_000);
  // The runner's kill timer for the stopped release must not hit the one restored in its place.
  const from = runner.lines.length;
  await new Promise((r) => setTimeout(r, 11_500)); // past the runner's 10 s grace
  const since = runner.lines.slice(from).filter((l) => l.includes('"mod":"release-runner"'));
  assert.not.ok(
    since.some((l) => /exited/.test(l)),
    since.join('\n'),
  );
  await waitUntil('the good release answering', async () => (await health()) === '9.1.0', 30_000);
});

test.run();
