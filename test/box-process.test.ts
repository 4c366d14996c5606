// The box as an installer runs it: `npm start` on embedded defaults, over real sockets.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Agent } from 'undici';
import { tempDir } from './helpers/box.ts';
import { Operator, OperatorBroker } from './helpers/operator.ts';
import { freePort, getJson, Proc, startedNode, waitUntil } from './helpers/processes.ts';

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

test('`npm start` brings up a box on embedded defaults that answers health and first-run setup', async () => {
  const dataDir = await tempDir();
  const port = await freePort();
  const box = new Proc('npm', ['start', '--silent'], {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
  });
  const base = `http://127.0.0.1:${port}`;
  const health = await waitUntil(
    'health 200',
    async () => {
      const r = await getJson(`${base}/api/v1/health`);
      return r.status === 200 ? r : undefined;
    },
    30_000,
    200,
  );
  assert.is(health.json.status, 'ok');
  assert.equal((await getJson(`${base}/api/v1/setup`)).json, { needed: true });
  const setup = await getJson(`${base}/api/v1/setup`, json({ username: 'installer', password: 'first-run-password' }));
  assert.is(setup.status, 201);
  assert.equal((await getJson(`${base}/api/v1/setup`)).json, { needed: false });
  assert.match((await fetch(base)).headers.get('content-type') ?? '', /text\/html/);
  box.kill('SIGTERM');
  const { code } = await box.exited;
  assert.is(code, 0);
  await rm(dataDir, { recursive: true, force: true });
});

test('logs are one JSON record a line, each naming node and module; SIGTERM exits 0 quickly and keeps data', async () => {
  const dataDir = await tempDir();
  const port = await freePort();
  const env = { FOGEDGE_DATA_DIR: dataDir, PORT: String(port), FOGEDGE__HTTP__HOST: '127.0.0.1', NODEID: 'box-1' };
  const base = `http://127.0.0.1:${port}`;
  let box = await startedNode(env);
  const setup = await getJson(`${base}/api/v1/setup`, json({ username: 'admin', password: 'persisted-password' }));
  assert.is(setup.status, 201);
  // A camera added with the MQTT broker off (startNode's default): no service may trip on it.
  const session = /fogedge_session=([^;]+)/.exec(setup.headers.get('set-cookie')!)![1];
  const camera = { id: 'gate', name: 'Gate', source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/none' } };
  const added = await getJson(`${base}/api/v1/cameras`, {
    method: 'POST',
    headers: { authorization: `Bearer ${session}`, 'content-type': 'application/json' },
    body: JSON.stringify(camera),
  });
  assert.is(added.status, 201, added.text);
  await waitUntil('the camera tried', () => box.lines.some((l) => /gate: offline/.test(l)), 15_000);

  const t0 = Date.now();
  box.kill('SIGTERM');
  const { code } = await box.exited;
  const stopMs = Date.now() - t0;
  assert.is(code, 0);
  assert.ok(stopMs < 5000, `stop took ${stopMs} ms`);
  for (const line of box.lines) {
    const record = JSON.parse(line); // throws on a line that is not JSON
    assert.ok(!['error', 'fatal'].includes(record.level), `a clean start and stop logs no error: ${line}`);
    assert.is(record.nodeID, 'box-1');
    assert.type(record.mod, 'string');
    assert.ok(record.level && record.time && typeof record.message === 'string', line);
  }
  assert.ok(
    box.lines.some((l) => JSON.parse(l).svc === 'accounts'),
    'service records carry svc',
  );
  assert.ok(box.lines.some((l) => /SIGTERM received/.test(l)));

  box = await startedNode(env);
  const login = await getJson(`${base}/api/v1/auth/login`, json({ username: 'admin', password: 'persisted-password' }));
  assert.is(login.status, 200);
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test('SIGKILL right after a write: the acknowledged account is there after restart', async () => {
  const dataDir = await tempDir();
  const port = await freePort();
  const env = { FOGEDGE_DATA_DIR: dataDir, PORT: String(port), FOGEDGE__HTTP__HOST: '127.0.0.1' };
  const base = `http://127.0.0.1:${port}`;
  let box = await startedNode(env);
  const auth = (
    await getJson(`${base}/api/v1/setup`, json({ username: 'admin', password: 'crash-password-1' }))
  ).headers.get('set-cookie')!;
  const session = /fogedge_session=([^;]+)/.exec(auth)![1]!;
  const token = (
    await getJson(`${base}/api/v1/tokens`, json({ name: 'nightly' }, { authorization: `Bearer ${session}` }))
  ).json.token;
  await box.kill('SIGKILL');
  box = await startedNode(env);
  assert.is((await getJson(`${base}/api/v1/auth/me`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  assert.equal((await getJson(`${base}/api/v1/setup`)).json, { needed: false });
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test('over a real socket, failed sign-ins are limited by remote address', async () => {
  const dataDir = await tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const box = await startedNode({
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__AUTH__MAXFAILURESPERADDRESS: '3',
  });
  await getJson(`${base}/api/v1/setup`, json({ username: 'admin', password: 'address-password' }));
  for (const user of ['a1', 'a2', 'a3']) {
    assert.is((await getJson(`${base}/api/v1/auth/login`, json({ username: user, password: 'x' }))).status, 401);
  }
  const limited = await getJson(`${base}/api/v1/auth/login`, json({ username: 'admin', password: 'address-password' }));
  assert.is(limited.status, 429);
  assert.match(limited.json.error.message, /this address/);
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test('TLS: with a certificate configured the box speaks HTTPS and marks cookies Secure', async () => {
  const dataDir = await tempDir();
  const certFile = path.join(dataDir, 'cert.pem');
  const keyFile = path.join(dataDir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=fogedge.local',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  const port = await freePort();
  const box = await startedNode({
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__HTTP__TLS__CERTFILE: certFile,
    FOGEDGE__HTTP__TLS__KEYFILE: keyFile,
  });
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  const res = await fetch(`https://127.0.0.1:${port}/api/v1/setup`, {
    ...json({ username: 'admin', password: 'tls-password-12' }),
    dispatcher,
  } as RequestInit);
  assert.is(res.status, 201);
  assert.match(res.headers.get('set-cookie') ?? '', /; Secure/);
  const plain = await fetch(`http://127.0.0.1:${port}/api/v1/health`)
    .then((r) => r.status)
    .catch(() => 'refused');
  assert.is.not(plain, 200, 'plain HTTP must not be served when TLS is on');
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test('CLI: set-admin creates the first admin, then resets its password; the box honours both', async () => {
  const dataDir = await tempDir();
  const cli = (password: string) =>
    execFileSync(process.execPath, ['--import', 'tsx', 'gateway/cli.ts', 'set-admin', 'owner'], {
      cwd: path.resolve(import.meta.dirname, '..'),
      env: { ...process.env, FOGEDGE_DATA_DIR: dataDir, FOGEDGE_ADMIN_PASSWORD: password },
      encoding: 'utf8',
    });
  assert.match(cli('cli-password-one'), /admin "owner" created/);
  assert.match(cli('cli-password-two'), /password of admin "owner" reset/);
  try {
    cli('short');
    assert.unreachable('a short password must be refused');
  } catch (err) {
    assert.match(String((err as { stderr?: string }).stderr), /password: at least 10 characters/);
  }
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const box = await startedNode({ FOGEDGE_DATA_DIR: dataDir, PORT: String(port), FOGEDGE__HTTP__HOST: '127.0.0.1' });
  assert.equal((await getJson(`${base}/api/v1/setup`)).json, { needed: false });
  assert.is(
    (await getJson(`${base}/api/v1/auth/login`, json({ username: 'owner', password: 'cli-password-one' }))).status,
    401,
  );
  assert.is(
    (await getJson(`${base}/api/v1/auth/login`, json({ username: 'owner', password: 'cli-password-two' }))).status,
    200,
  );
  await box.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test('a stop while everything works (recording 1 s segments, detecting, MQTT and the operator uplink up) logs no error, loses no segment, and every event the operator saw start it sees end', async () => {
  // STOP_ROUNDS=20 for the long run; three rounds here.
  const rounds = Number(process.env['STOP_ROUNDS'] ?? 3);
  const dataDir = await tempDir();
  const adm = await OperatorBroker.start({ 'box-s': 'box-secret-s', platform: 'platform-secret-s' });
  const operator = await Operator.connect(adm.url, 'platform', 'platform-secret-s', 'fogedge/boxes/box-s');
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(await freePort()),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__SEGMENTSECONDS: '1',
    FOGEDGE__DETECTOR__ENABLED: 'true',
    FOGEDGE__MQTT: JSON.stringify({ host: '127.0.0.1', port: await freePort(), tlsPort: null }),
    FOGEDGE_ADMP_URL: adm.url,
    FOGEDGE_ADMP_BOX_ID: 'box-s',
    FOGEDGE_ADMP_USERNAME: 'box-s',
    FOGEDGE_ADMP_PASSWORD: 'box-secret-s',
    FOGEDGE__ADMP__TELEMETRYSECONDS: '3600',
  };
  const events = (type: 'start' | 'end') =>
    new Set(
      operator
        .on('events')
        .filter((r) => r.body.type === type)
        .map((r) => r.body.event.id as string),
    );
  try {
    for (let round = 1; round <= rounds; round++) {
      const box = await startedNode(env);
      // Stopped while people are in view: at least one event open at the operator.
      const before = events('start').size;
      await waitUntil(`round ${round}: an event started at the operator`, () => events('start').size > before, 30_000);
      await new Promise((r) => setTimeout(r, (round % 4) * 230));
      box.kill('SIGTERM');
      const { code } = await box.exited;
      assert.is(code, 0, `round ${round}: exit code`);
      for (const line of box.lines) {
        const record = JSON.parse(line);
        assert.ok(!['error', 'fatal'].includes(record.level), `round ${round}: a clean stop logs no error: ${line}`);
        assert.not.match(line, /not open|not queued/i, `round ${round}: nothing refused by a closed store: ${line}`);
      }
    }
    // Ends queued during the last stop go up at the next start at the latest.
    const box = await startedNode(env);
    const unended = () => [...events('start')].filter((id) => !events('end').has(id));
    await waitUntil('every event started at the operator has ended there', () => unended().length === 0, 30_000).catch(
      () => undefined,
    );
    box.kill('SIGTERM');
    await box.exited;
    assert.equal(unended(), [], 'no event left with a start and no end at the operator');
    const ends = operator.on('events').filter((r) => r.body.type === 'end').length;
    console.log(
      `  ${rounds} clean stops with events open: ${events('start').size} events at the operator, ${events('end').size} ended (${ends} end messages), ${unended().length} without an end`,
    );
  } finally {
    await operator.close();
    await adm.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
