// The uplink of a box run as `npm start` runs it, provisioned by its environment (as a fleet
// sets per-device variables), against Debian's mosquitto: the will when the box dies, and what
// was queued while the uplink was down surviving a SIGKILL of the box.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm } from 'node:fs/promises';
import { tempDir } from './helpers/box.ts';
import { Operator, OperatorBroker } from './helpers/operator.ts';
import { freePort, getJson, startedNode, waitUntil } from './helpers/processes.ts';

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

test('provisioned by the environment: the will says offline when the box dies; what waited for the uplink survives a SIGKILL and arrives once', async () => {
  const adm = await OperatorBroker.start({ 'box-9': 'box-secret-9', platform: 'platform-secret-9' });
  const operator = await Operator.connect(adm.url, 'platform', 'platform-secret-9', 'fogedge/boxes/box-9');
  const dataDir = await tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE_ADMP_URL: adm.url,
    FOGEDGE_ADMP_BOX_ID: 'box-9',
    FOGEDGE_ADMP_USERNAME: 'box-9',
    FOGEDGE_ADMP_PASSWORD: 'box-secret-9',
    FOGEDGE__ADMP__TELEMETRYSECONDS: '3600',
    FOGEDGE__ADMP__RECONNECTMS: '200',
    FOGEDGE__ADMP__RECONNECTMAXMS: '1000',
  };
  let box = await startedNode(env);
  try {
    await operator.waitFor('the box online', 'status', (b) => b.online === true);
    const session = /fogedge_session=([^;]+)/.exec(
      (await getJson(`${base}/api/v1/setup`, json({ username: 'admin', password: 'admp-password-1' }))).headers.get(
        'set-cookie',
      )!,
    )![1]!;
    const admp = async () =>
      (await getJson(`${base}/api/v1/admp`, { headers: { authorization: `Bearer ${session}` } })).json;
    assert.is((await admp()).source, 'environment');
    await operator.waitFor('the admin creation audited', 'audit', (b) => b.action === 'account.created');
    // The first-run setup may not overwrite what the fleet set.
    const overwrite = await getJson(`${base}/api/v1/admp/provisioning`, {
      ...json({ url: 'mqtt://elsewhere:1883' }, { authorization: `Bearer ${session}` }),
      method: 'PUT',
    });
    assert.is(overwrite.status, 409);
    assert.is(overwrite.json.error.type, 'PROVISIONED_BY_ENVIRONMENT');

    // Killed while connected: the broker publishes its will.
    await box.kill('SIGKILL');
    await operator.waitFor('the will', 'status', (b) => b.online === false);
    box = await startedNode(env);
    await operator.waitFor(
      'online again',
      'status',
      (b) => b.online === true && operator.on('status').filter((r) => r.body.online === false).length === 1,
    );

    // The uplink down: failed sign-ins are audited and wait in the queue.
    await adm.stop();
    await waitUntil('the box sees the uplink down', async () => (await admp()).connected === false);
    for (let i = 0; i < 5; i++)
      await getJson(`${base}/api/v1/auth/login`, json({ username: `intruder-${i}`, password: 'guess-guess-1' }));
    await waitUntil('5 entries queued', async () => (await admp()).queue.byKind.audit >= 5);
    await box.kill('SIGKILL');
    box = await startedNode(env);
    await adm.start();
    await waitUntil(
      'the queue sent after the restart',
      async () => (await admp()).connected && (await admp()).queue.items === 0,
      20_000,
    );
    await waitUntil(
      'all 5 at the operator',
      () => operator.on('audit').filter((r) => r.body.action === 'account.sign-in.failed').length >= 5,
    );
    const failed = operator
      .on('audit')
      .filter((r) => r.body.action === 'account.sign-in.failed')
      .map((r) => r.body.username);
    assert.equal(failed, ['intruder-0', 'intruder-1', 'intruder-2', 'intruder-3', 'intruder-4'], 'in order, once');
    // The password given by the environment is in no answer and no log line.
    assert.not.match(JSON.stringify(await admp()), /box-secret-9/);
    assert.not.ok(box.lines.some((l) => l.includes('box-secret-9')));
  } finally {
    await box.kill('SIGTERM');
    await operator.close();
    await adm.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
