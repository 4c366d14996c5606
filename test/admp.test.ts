// The uplink to the operator's platform against a real second broker (Debian's mosquitto, with
// passwords and persistence) and an mqtt.js client acting as the platform.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { Operator, OperatorBroker } from './helpers/operator.ts';
import { waitUntil } from './helpers/processes.ts';

const ROOT = 'isp/boxes/box-7';
let box: TestBox;
let admin: string;
let adm: OperatorBroker;
let operator: Operator;

const status = async () => (await box.request('GET', '/api/v1/admp', { auth: admin })).json;
const provision = (password: string) =>
  box.request('PUT', '/api/v1/admp/provisioning', {
    auth: admin,
    body: { url: adm.url, boxId: 'box-7', username: 'box-7', password, topicRoot: 'isp/boxes' },
  });
const addDevice = (id: string) => box.request('POST', '/api/v1/devices', { auth: admin, body: { id, name: id } });

test.before(async () => {
  adm = await OperatorBroker.start({ 'box-7': 'box-secret-1', platform: 'platform-secret-1' }, { tls: true });
  operator = await Operator.connect(adm.url, 'platform', 'platform-secret-1', ROOT);
  // Short waits between tries (a fleet's are minutes): the tests take the broker away and back.
  box = await testBox({ admp: { telemetrySeconds: 1, reconnectMs: 200, reconnectMaxMs: 1000 } });
  admin = await withAdmin(box);
});
test.after(async () => {
  await operator.close();
  await box.stop();
  await adm.stop();
});

test('a box that is not provisioned runs local only and queues nothing', async () => {
  const s = await status();
  assert.is(s.provisioned, false);
  assert.is(s.connected, false);
  await addDevice('before-provisioning');
  assert.is((await status()).queue.items, 0);
});

test('wrong credentials: the status says why, and the first-run setup refuses a bad endpoint by field', async () => {
  const bad = await box.request('PUT', '/api/v1/admp/provisioning', {
    auth: admin,
    body: { url: 'http://example.com', cert: 'not a pem' },
  });
  assert.is(bad.status, 422);
  const fields = bad.json.error.data.map((d: { field: string }) => d.field);
  assert.ok(fields.includes('url') && fields.includes('cert'), JSON.stringify(bad.json));
  assert.is((await provision('wrong-password')).status, 200);
  await waitUntil('the refusal in the status', async () => /not authorized/i.test((await status()).lastError ?? ''));
  assert.is((await status()).connected, false);
  // The password never comes back.
  assert.not.match(JSON.stringify(await status()), /wrong-password/);
  // The box's health says the uplink is down and why; the box itself runs on.
  const health = (await box.request('GET', '/api/v1/health', { auth: admin })).json;
  assert.match(JSON.stringify(health), /uplink to the operator not connected: .*not authori[sz]ed/i);
  // It keeps trying, waiting longer each time: once the broker takes the password (the
  // operator fixed its backend), the box is in without being provisioned again.
  await waitUntil('a longer wait before the next try', async () => (await status()).retryInMs > 200, 10_000);
  await adm.setPassword('box-7', 'wrong-password');
  await waitUntil('connected by itself', async () => (await status()).connected, 30_000);
  await adm.setPassword('box-7', 'box-secret-1');
});

test('provisioned: online (retained, with a will), health with the machine and the cameras, the audit log', async () => {
  assert.is((await provision('box-secret-1')).status, 200);
  await waitUntil('connected', async () => (await status()).connected);
  const online = await operator.waitFor('online', 'status', (b) => b.online === true);
  assert.is(online.boxId, 'box-7');
  const health = await operator.waitFor('health', 'health');
  assert.type(health.seq, 'number');
  assert.ok(health.cpu.cores >= 1 && health.memory.totalBytes > 0 && health.disk.freeBytes > 0, JSON.stringify(health));
  assert.ok(Array.isArray(health.cameras) && Array.isArray(health.temperatures));
  assert.is(health.services.status, 'ok', JSON.stringify(health.services));
  assert.ok(health.sync && health.uplink, 'sync queue and uplink queue are in it');
  // What a fleet dashboard needs in one message: which box, its storage, its cameras' firmware, its update state.
  assert.is(health.boxId, 'box-7');
  assert.type(health.recording.recordingsBytes, 'number');
  assert.equal(health.cameraFirmware, []);
  assert.is(health.update.mode, 'checkout');
  // Who provisioned it, in the audit log; the device added before provisioning is not.
  const audit = await operator.waitFor(
    'the provisioning audited',
    'audit',
    (b) => b.action === 'admp.provisioning.changed',
  );
  assert.is(audit.by, 'admin');
  assert.not.ok(operator.on('audit').some((r) => r.body.id === 'before-provisioning'));
});

test('commands: run through the same actions and permissions, answered once each, refusals audited', async () => {
  await addDevice('door-lock');
  const deny = await operator.command('c-1', 'devices.update', { id: 'door-lock', state: 'denied' });
  assert.is(deny.ok, true, JSON.stringify(deny));
  assert.is(deny.result.state, 'denied');
  const local = await box.request('GET', '/api/v1/devices', { auth: admin });
  assert.is(local.json.devices.find((d: { id: string }) => d.id === 'door-lock').state, 'denied');
  await operator.waitFor(
    'the change audited, by the operator',
    'audit',
    (b) => b.action === 'device.updated' && b.id === 'door-lock' && b.by === 'admp',
  );

  // Delivered twice: answered twice, run once.
  const again = await operator.command('c-1', 'devices.update', { id: 'door-lock', state: 'denied' });
  assert.is(again.duplicate, true);
  await new Promise((r) => setTimeout(r, 300));
  assert.is(
    operator.on('audit').filter((r) => r.body.action === 'device.updated' && r.body.id === 'door-lock').length,
    1,
  );

  // Three copies at once, while the first still runs: run once, each answered with its reply.
  const before = operator.on('commands/res').length;
  const copy = JSON.stringify({
    id: 'c-20',
    action: 'system.diagnostics',
    params: {},
    sentAt: new Date().toISOString(),
  });
  await Promise.all([1, 2, 3].map(() => operator.sendRaw('commands/req', copy)));
  const answers = await waitUntil(
    'three answers',
    () => {
      const got = operator
        .on('commands/res')
        .slice(before)
        .filter((r) => r.body.id === 'c-20');
      return got.length === 3 && got;
    },
    20_000,
  );
  assert.equal(answers.map((r) => Boolean(r.body.duplicate)).sort(), [false, true, true]);
  assert.ok(
    answers.every((r) => r.body.ok === true),
    JSON.stringify(answers.map((r) => r.body.error)),
  );
  await new Promise((r) => setTimeout(r, 300));
  assert.is(
    operator.on('audit').filter((r) => r.body.action === 'admp.command.handled' && r.body.id === 'c-20').length,
    1,
    'handled once',
  );
  // An id is bound to its action; a command needs its sentAt, not from the future.
  assert.is((await operator.command('c-20', 'system.info')).error.type, 'ID_REUSED');
  assert.is(
    (await operator.command('c-21', 'system.info', {}, { sentAt: new Date(Date.now() + 86_400_000).toISOString() }))
      .error.type,
    'FROM_THE_FUTURE',
  );
  await operator.sendRaw('commands/req', JSON.stringify({ id: 'c-22', action: 'system.info', params: {} }));
  const unsent = await operator.waitFor(
    'the refusal of a command without sentAt',
    'commands/res',
    (b) => b.id === 'c-22',
  );
  assert.is(unsent.error.type, 'MALFORMED_COMMAND');
  assert.ok(unsent.error.data.some((d: { field: string }) => d.field === 'sentAt'));

  // Bad values: the action's own schema answers, naming the field.
  const bad = await operator.command('c-2', 'devices.update', { id: 'door-lock', state: 'sometimes' });
  assert.is(bad.ok, false);
  assert.is(bad.error.type, 'VALIDATION_ERROR');
  assert.is(bad.error.data[0].field, 'state');
  // No way to a file or a program: unknown parameters are refused, unlisted actions too.
  const file = await operator.command('c-3', 'system.config', { file: '/etc/shadow' });
  assert.is(file.error.type, 'VALIDATION_ERROR');
  for (const [id, action] of [
    ['c-4', '$node.list'],
    ['c-5', 'accounts.listUsers'],
    ['c-6', 'recorder.file'],
    ['c-7', 'events.list'],
  ]) {
    const refused = await operator.command(id!, action!);
    assert.is(refused.error.type, 'NOT_ALLOWED', `${action}: ${JSON.stringify(refused)}`);
  }
  // Malformed: not JSON, or not a command.
  await operator.sendRaw('commands/req', '{"id": "c-8", "action": ');
  await operator.waitFor(
    'the refusal of bad JSON',
    'commands/res',
    (b) => b.id === null && b.error?.type === 'MALFORMED_COMMAND',
  );
  await operator.sendRaw(
    'commands/req',
    JSON.stringify({ id: 'c-9', action: 'system.info', params: 'all', extra: 1, sentAt: new Date().toISOString() }),
  );
  const malformed = await operator.waitFor('the refusal of a bad command', 'commands/res', (b) => b.id === 'c-9');
  assert.equal(malformed.error.data.map((d: { field: string }) => d.field).sort(), ['(root)', 'params']);
  // Late: a reboot must not land hours after it was asked for.
  const late = await operator.command(
    'c-10',
    'system.info',
    {},
    { sentAt: new Date(Date.now() - 3600_000).toISOString() },
  );
  assert.is(late.error.type, 'EXPIRED');
  // Every refusal is in the audit log with who asked.
  await operator.waitFor(
    'the refusal audited',
    'audit',
    (b) => b.action === 'admp.command.handled' && b.id === 'c-5' && b.ok === false && b.error === 'NOT_ALLOWED',
  );
  // A diagnostic bundle, with no secret in it.
  const diag = await operator.command('c-11', 'system.diagnostics');
  assert.is(diag.ok, true);
  assert.ok(
    diag.result.runtime.node && diag.result.health.status && diag.result.uplink.connected === true,
    Object.keys(diag.result).join(),
  );
  assert.not.match(JSON.stringify(diag), /box-secret-1/);
  // A camera firmware campaign is the USP controller's, with the operator's permissions: here the box has no camera agent.
  const campaign = await operator.command('c-13', 'usp.firmwareUpdate', {
    url: 'http://127.0.0.1:9/fw.img',
    sha256: 'a'.repeat(64),
    model: 'fogcam-1',
  });
  assert.is(campaign.error.type, 'SOURCE_NOT_ALLOWED', JSON.stringify(campaign));
  assert.equal((await operator.command('c-14', 'usp.endpoints')).result, []);
  // The agents' data models are the operator's to run (Device.Reboot()), not their pictures (agentCommand's snapshot).
  const reboot = await operator.command('c-15', 'usp.operate', { device: 'cam-gone', command: 'Device.Reboot()' });
  assert.is(reboot.error.type, 'USP_ENDPOINT_OF_DEVICE_NOT_FOUND', JSON.stringify(reboot));
  assert.equal((await operator.command('c-16', 'usp.notifications', {})).result, []);
  assert.is(
    (await operator.command('c-17', 'usp.agentCommand', { device: 'cam-gone', command: 'snapshot' })).error.type,
    'NOT_ALLOWED',
  );
  // Services restarted on request, and back up.
  const restart = await operator.command('c-12', 'system.restartServices', { services: ['devices', 'events'] });
  assert.is(restart.ok, true, JSON.stringify(restart));
  assert.equal(restart.result.restarted, ['devices', 'events']);
  assert.is((await box.request('GET', '/api/v1/devices', { auth: admin })).status, 200);
});

test('desired configuration: applied and reported; a bad one refused with the reason, the old one kept', async () => {
  await addDevice('sensor-1');
  const desired = {
    version: 1,
    config: {
      syncPolicy: { resources: ['events', 'audit'], maxBytesPerDay: 1_000_000 },
      devices: { 'sensor-1': { state: 'denied' } },
      uplink: { telemetrySeconds: 2, events: true, eventLabels: ['person'], audit: true },
    },
  };
  await operator.sendRaw('config/desired', JSON.stringify(desired), true);
  const reported = await operator.waitFor('version 1 reported', 'config/reported', (b) => b.version === 1);
  assert.equal(reported.config.devices, desired.config.devices);
  assert.equal(reported.config.uplink, desired.config.uplink);
  assert.is(reported.config.syncPolicy.maxBytesPerDay, 1_000_000);
  assert.is(reported.rejected, null);
  assert.is((await box.request('GET', '/api/v1/sync/policy', { auth: admin })).json.maxBytesPerDay, 1_000_000);
  assert.is((await status()).settings.telemetrySeconds, 2);

  // A value out of range: refused as a whole (the policy part is not applied), reported with the field.
  await operator.sendRaw(
    'config/desired',
    JSON.stringify({ version: 2, config: { syncPolicy: { maxBytesPerDay: 5 }, uplink: { telemetrySeconds: 0 } } }),
    true,
  );
  const refused = await operator.waitFor('version 2 refused', 'config/reported', (b) => b.rejected?.version === 2);
  assert.is(refused.version, 1);
  assert.is(refused.rejected.error.type, 'VALIDATION_ERROR');
  assert.equal(refused.rejected.error.data.map((d: { field: string }) => d.field).sort(), [
    'config.syncPolicy.maxBytesPerDay',
    'config.uplink.telemetrySeconds',
  ]);
  assert.is((await box.request('GET', '/api/v1/sync/policy', { auth: admin })).json.maxBytesPerDay, 1_000_000);

  // Naming a camera the box does not have: nothing changes.
  await operator.sendRaw(
    'config/desired',
    JSON.stringify({
      version: 3,
      config: { syncPolicy: { maxBytesPerDay: 2_000_000 }, cameras: { ghost: { enabled: false } } },
    }),
    true,
  );
  const missing = await operator.waitFor('version 3 refused', 'config/reported', (b) => b.rejected?.version === 3);
  assert.match(missing.rejected.error.message, /camera "ghost"/);
  assert.is((await box.request('GET', '/api/v1/sync/policy', { auth: admin })).json.maxBytesPerDay, 1_000_000);
  await operator.waitFor('the refusal audited', 'audit', (b) => b.action === 'admp.config.rejected' && b.version === 3);
  const s = await status();
  assert.is(s.desired.appliedVersion, 1);
  assert.is(s.desired.lastRejected.version, 3);

  // A step refused half way (a wider cloud plan, which the operator's installer role may not set):
  // the device and the camera changed before it are put back; nothing of version 4 stays.
  assert.is(
    (
      await box.request('POST', '/api/v1/cameras', {
        auth: admin,
        body: { id: 'porch', name: 'Porch', enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' } },
      })
    ).status,
    201,
  );
  const wider = {
    version: 4,
    config: {
      devices: { 'sensor-1': { state: 'allowed' } },
      cameras: { porch: { detection: { enabled: false } } },
      syncPolicy: { resources: ['events', 'audit', 'snapshots', 'clips', 'recordings'] },
    },
  };
  await operator.sendRaw('config/desired', JSON.stringify(wider), true);
  const half = await operator.waitFor('version 4 refused', 'config/reported', (b) => b.rejected?.version === 4);
  assert.is(half.version, 1, 'version 1 is in force');
  assert.is(half.rejected.error.type, 'FORBIDDEN', JSON.stringify(half.rejected));
  const sensor = (await box.request('GET', '/api/v1/devices', { auth: admin })).json.devices.find(
    (d: { id: string }) => d.id === 'sensor-1',
  );
  assert.is(sensor.state, 'denied', 'the device is back as version 1 left it');
  assert.is(
    (await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.detection.enabled,
    true,
    'the camera is back too',
  );
  assert.equal((await box.request('GET', '/api/v1/sync/policy', { auth: admin })).json.resources, ['events', 'audit']);
  // Version 1 sent again: in force, and the refusal of 4 is no longer reported.
  await operator.sendRaw('config/desired', JSON.stringify(desired), true);
  await operator.waitFor(
    'version 1 reported again without a refusal',
    'config/reported',
    (b) =>
      b.version === 1 &&
      b.rejected === null &&
      operator.on('config/reported').indexOf(operator.on('config/reported').find((r) => r.body === b)!) >
        operator.on('config/reported').findIndex((r) => r.body.rejected?.version === 4),
  );
});

test('events go up as the desired configuration says: start and end of the labels asked for, no picture', async () => {
  const record = (type: string, id: string, label: string, end: string | null = null) =>
    box.broker.call('events.record', {
      type,
      id,
      camera: 'yard',
      label,
      topScore: 0.9,
      box: [0.1, 0.1, 0.5, 0.9],
      zones: ['drive'],
      start: new Date().toISOString(),
      end,
      stationary: false,
      snapshot: Buffer.from([0xff, 0xd8, 0xff, 0xd9]).toString('base64'),
    });
  // A camera of the box's own, so its activity is grouped into review items.
  const yard = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'yard', name: 'Yard', enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' } },
  });
  assert.is(yard.status, 201, yard.text);
  await record('start', 'ev-car', 'car'); // version 1 asked for people only
  await record('start', 'ev-person', 'person');
  await record('end', 'ev-person', 'person', new Date().toISOString());
  const end = await operator.waitFor(
    'the end of the person event',
    'events',
    (b) => b.type === 'end' && b.event.id === 'ev-person',
  );
  assert.is(end.event.camera, 'yard');
  assert.equal(end.event.zones, ['drive']);
  assert.not.ok('snapshot' in end.event);
  assert.ok(operator.on('events').some((r) => r.body.type === 'start' && r.body.event.id === 'ev-person'));
  assert.not.ok(operator.on('events').some((r) => r.body.event.id === 'ev-car'));
  // The review item (the car, then the person) goes up as it closes; it opened as a car only, which
  // the operator did not ask for, so its opening stayed on the box.
  await record('end', 'ev-car', 'car', new Date().toISOString());
  const item = await operator.waitFor('the closed review item', 'reviews', (b) => b.type === 'end');
  assert.equal(item.item.labels, ['car', 'person']);
  assert.equal(
    item.item.objects.map((o: { event: string }) => o.event),
    ['ev-car', 'ev-person'],
  );
  assert.not.ok(operator.on('reviews').some((r) => r.body.type === 'new'));
});

test("MQTTS with the operator's CA and a client certificate; without the CA the box does not trust the server", async () => {
  const other = await testBox({ admp: { reconnectMs: 200 } });
  try {
    const otherAdmin = await withAdmin(other);
    const otherStatus = async () => (await other.request('GET', '/api/v1/admp', { auth: otherAdmin })).json;
    const { cert, key } = await adm.tls!.pki.client('box-tls');
    const put = (extra: object) =>
      other.request('PUT', '/api/v1/admp/provisioning', {
        auth: otherAdmin,
        body: { url: adm.tlsUrl, boxId: 'box-tls', topicRoot: 'isp/boxes', cert, key, ...extra },
      });
    assert.is((await put({})).status, 200);
    await waitUntil('the server refused as untrusted', async () =>
      /certificate/i.test((await otherStatus()).lastError ?? ''),
    );
    assert.is((await put({ ca: adm.tls!.pki.ca })).status, 200);
    await waitUntil('connected over TLS', async () => (await otherStatus()).connected);
    const s = await otherStatus();
    assert.equal([s.endpoint.clientCertificate, s.endpoint.customCa], [true, true]);
    assert.not.match(JSON.stringify(s), /PRIVATE KEY/);
    // The broker knows the box by its certificate's name; the platform reaches it as usual.
    const platform = await Operator.connect(adm.url, 'platform', 'platform-secret-1', 'isp/boxes/box-tls');
    await platform.waitFor('online over TLS', 'status', (b) => b.online === true);
    const info = await platform.command('t-1', 'system.info');
    assert.is(info.ok, true, JSON.stringify(info));
    await platform.close();
  } finally {
    await other.stop();
  }
});

test('the uplink cut while 200 audit entries are made, and the broker flapping: all arrive, in order, once', async () => {
  await waitUntil('connected', async () => (await status()).connected);
  const firstSeq = Math.max(...operator.received.map((r) => r.body.seq ?? 0));
  await adm.stop();
  await waitUntil('the box sees the uplink down', async () => !(await status()).connected);
  for (let i = 0; i < 200; i++) assert.is((await addDevice(`offline-${i}`)).status, 201);
  const waiting = await status();
  assert.ok(waiting.queue.items >= 200, JSON.stringify(waiting.queue));
  // Back, then down and up twice more while the backlog drains.
  for (let flap = 0; flap < 3; flap++) {
    await adm.start();
    await new Promise((r) => setTimeout(r, flap < 2 ? 400 : 0));
    if (flap < 2) await adm.stop();
  }
  await waitUntil(
    'the backlog sent',
    async () => (await status()).queue.items === 0 && (await status()).connected,
    30_000,
  );
  await waitUntil(
    'all 200 at the operator',
    () => operator.on('audit').filter((r) => String(r.body.id).startsWith('offline-')).length >= 200,
    15_000,
  ).catch((err) => {
    const got = operator
      .on('audit')
      .filter((r) => String(r.body.id).startsWith('offline-'))
      .map((r) => r.body.id.slice(8));
    throw new Error(`${err.message}: ${got.length} arrived: ${got.join(' ')}`);
  });
  const audits = operator
    .on('audit')
    .filter((r) => String(r.body.id).startsWith('offline-'))
    .map((r) => r.body);
  assert.equal(
    audits.map((a) => a.id),
    Array.from({ length: 200 }, (_, i) => `offline-${i}`),
    'each once, in order',
  );
  // Nothing the box sent after the cut came twice or out of order.
  const seqs = operator.received
    .map((r) => r.body.seq)
    .filter((s): s is number => typeof s === 'number' && s > firstSeq);
  assert.is(new Set(seqs).size, seqs.length, 'no duplicates');
  assert.ok(
    seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
    'in order',
  );
  assert.equal((await status()).queue.dropped, { health: 0, event: 0, reported: 0, reply: 0, audit: 0 });
});

test.run();
