// USP over the MQTT MTP of the box's own broker: a camera's USP agent (its code, in this process)
// signs in with its device credentials over a real mqtt.js connection, announces itself with an
// MQTTConnect record, and the box's usp service reads its data model. The camera-agent process
// itself is tested elsewhere; this checks the transport and the controller.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { decodeRecord, encodeRecord, response } from '../lib/usp/codec.ts';
import { FirmwareSlots } from '../camera-agent/firmware-slots.ts';
import { UspAgent } from '../camera-agent/usp/agent.ts';
import { deviceModel } from '../camera-agent/usp/device-model.ts';
import { controllerId } from '../services/usp/usp.service.ts';
import { CameraAgent } from '../camera-agent/camera-agent.ts';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';

let box: TestBox;
let admin: string;
let port: number;
const closers: Array<() => Promise<unknown>> = [];

/** A camera's USP agent on the box's broker, as device `id`. */
async function cameraAgent(
  id: string,
  secret: string,
  endpointId = `os::fogcam-${id}`,
  topics = { listen: `fogedge/devices/${id}/cmd/usp`, publish: `fogedge/devices/${id}/usp` },
) {
  const dir = await tempDir('fogedge-usp-mtp-');
  const slots = await FirmwareSlots.open(dir, {
    vendorKey: generateKeyPairSync('ed25519').publicKey,
    model: 'fogcam-1',
    slotBytes: 1 << 20,
    factoryVersion: '1.4.0',
  });
  const client: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: id,
    username: id,
    password: secret,
    reconnectPeriod: 0,
  });
  let agent: UspAgent;
  const model = deviceModel({
    info: { manufacturer: 'FogEdge', modelName: 'fogcam-1', serialNumber: `SN-${id}` },
    endpointId,
    agentVersion: '0.1.0',
    slots,
    trialSeconds: 60,
    agentObjects: () => agent.agentObjects(),
    transferComplete: () => {},
    restart: () => {},
  });
  agent = new UspAgent(
    endpointId,
    model,
    (_to, bytes) => void client.publish(topics.publish, Buffer.from(bytes), { qos: 1 }),
  );
  const heard: string[] = [];
  client.on('message', (t, payload) => (heard.push(t), void agent.receive(payload)));
  await client.subscribeAsync(topics.listen, { qos: 1 });
  const controller = controllerId(box.config);
  await client.publishAsync(
    topics.publish,
    Buffer.from(
      encodeRecord(endpointId, controller, { mqttConnect: { subscribedTopic: topics.listen, version: 'V3_1_1' } }),
    ),
    { qos: 1 },
  );
  closers.push(
    () => client.endAsync(true),
    () => rm(dir, { recursive: true, force: true }),
  );
  return { client, agent, heard };
}

const addDevice = async (id: string) =>
  (await box.request('POST', '/api/v1/devices', { auth: admin, body: { id, name: id } })).json.secret as string;
const endpoints = () =>
  box.broker.call('usp.endpoints') as Promise<
    Array<{
      endpointId: string;
      device: string;
      model: string | null;
      softwareVersion: string | null;
      serialNumber: string | null;
    }>
  >;

test.before(async () => {
  port = await freePort();
  box = await testBox({ mqtt: { host: '127.0.0.1', port, tlsPort: null } });
  admin = await withAdmin(box);
});
test.after(async () => {
  for (const close of closers) await close();
  await box.stop();
});

test('an agent that connects is known by its endpoint id, with its model, serial and running version read over USP', async () => {
  await cameraAgent('cam-1', await addDevice('cam-1'));
  const e = await waitUntil('the endpoint read', async () =>
    (await endpoints()).find((x) => x.endpointId === 'os::fogcam-cam-1' && x.softwareVersion),
  );
  assert.equal([e.device, e.model, e.serialNumber, e.softwareVersion], ['cam-1', 'fogcam-1', 'SN-cam-1', '1.4.0']);
});

test('the controller reads any path; an unknown one comes back with the spec error', async () => {
  const results = (await box.broker.call('usp.get', {
    device: 'cam-1',
    paths: ['Device.DeviceInfo.FirmwareImage.*.Status', 'Device.Nope.'],
  })) as Array<{
    requestedPath: string;
    errCode: number;
    resolvedPathResults: Array<{ resultParams: Record<string, string> }>;
  }>;
  assert.equal(
    results[0]!.resolvedPathResults.map((r) => r.resultParams['Status']),
    ['Available', 'NoImage'],
  );
  assert.is(results[1]!.errCode, 7026);
});

test("one device cannot speak for another: its records about a foreign endpoint are ignored, and it cannot read the other's commands", async () => {
  const { client } = await cameraAgent('cam-2', await addDevice('cam-2'), 'os::fogcam-cam-1');
  await new Promise((r) => setTimeout(r, 300));
  const all = await endpoints();
  assert.is(
    all.find((e) => e.endpointId === 'os::fogcam-cam-1')!.device,
    'cam-1',
    'the endpoint stays with its device',
  );
  // SUBACK 0x80: mqtt.js rejects the subscription.
  const refused = await client.subscribeAsync('fogedge/devices/cam-1/cmd/usp', { qos: 1 }).then(
    () => null,
    (err: Error) => err,
  );
  assert.match(String(refused?.message), /Subscribe error/);
});

test('as another agent: an answer from an endpoint that was not asked is not taken; garbage and a NOTIFY without a body are logged a few times, never thrown', async () => {
  // cam-3's agent holds its answers back; cam-4 (an allowed device with its own endpoint) sees
  // cam-3's msg id (here: the test tells it) and answers first, from its own endpoint.
  const held: Uint8Array[] = [];
  const victim = await cameraAgent('cam-3', await addDevice('cam-3'));
  victim.client.removeAllListeners('message');
  victim.client.on('message', (_t, payload) => held.push(payload));
  const other = await cameraAgent('cam-4', await addDevice('cam-4'));
  await waitUntil(
    'cam-4 known',
    async () => (await endpoints()).some((e) => e.device === 'cam-4' && e.softwareVersion) || undefined,
    10_000,
  );
  await waitUntil(
    'cam-3 known',
    async () => (await endpoints()).some((e) => e.device === 'cam-3') || undefined,
    10_000,
  );
  held.length = 0; // the GET of its DeviceInfo at connect, left unanswered
  const asked = box.broker.call('usp.get', { device: 'cam-3', paths: ['Device.DeviceInfo.SerialNumber'] }) as Promise<
    Array<{ resolvedPathResults: Array<{ resultParams: Record<string, string> }> }>
  >;
  await waitUntil('the GET to cam-3', () => held.length > 0, 5000);
  const request = decodeRecord(Buffer.from(held.at(-1)!));
  const forged = response('GET_RESP', request.msg!.header.msgId, {
    getResp: {
      reqPathResults: [
        {
          requestedPath: 'Device.DeviceInfo.SerialNumber',
          errCode: 0,
          resolvedPathResults: [{ resolvedPath: 'Device.DeviceInfo.', resultParams: { SerialNumber: 'FORGED' } }],
        },
      ],
    },
  });
  await other.client.publishAsync(
    'fogedge/devices/cam-4/usp',
    Buffer.from(encodeRecord('os::fogcam-cam-4', controllerId(box.config), { msg: forged })),
    { qos: 1 },
  );
  await new Promise((r) => setTimeout(r, 300));
  // Now cam-3 answers for itself.
  for (const payload of held.splice(0)) await victim.agent.receive(payload);
  const answer = await asked;
  assert.is(
    answer[0]!.resolvedPathResults[0]!.resultParams['SerialNumber'],
    'SN-cam-3',
    'the answer is the endpoint asked',
  );

  // 5,000 unreadable records and a NOTIFY with no body: a few lines in the log, no exception.
  const lines: string[] = [];
  const logger = box.broker.getLocalService('usp')!.logger as unknown as {
    warn: (m: string) => void;
    error: (m: string) => void;
  };
  const [warn, error] = [logger.warn, logger.error];
  logger.warn = (m: string) => void lines.push(`warn ${m}`);
  logger.error = (m: string) => void lines.push(`error ${m}`);
  try {
    for (let i = 0; i < 5000; i++)
      other.client.publish('fogedge/devices/cam-4/usp', Buffer.from(`garbage ${i}`), { qos: 0 });
    const bare = { header: { msgId: 'n-1', msgType: 'NOTIFY' } } as never;
    await other.client.publishAsync(
      'fogedge/devices/cam-4/usp',
      Buffer.from(encodeRecord('os::fogcam-cam-4', controllerId(box.config), { msg: bare })),
      { qos: 1 },
    );
    await new Promise((r) => setTimeout(r, 1500));
  } finally {
    Object.assign(logger, { warn, error });
  }
  assert.ok(lines.length > 0 && lines.length <= 6, `${lines.length} lines for 5,001 bad records`);
  assert.not.ok(
    lines.some((l) => /TypeError/.test(l)),
    lines.join('\n'),
  );
});

test("an agent command to an agent that does not answer goes out once, and ends in its own 503 after the wait (not the bus's timeout)", async () => {
  const sent: string[] = [];
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'admin',
    password: admin,
    reconnectPeriod: 0,
  });
  await watcher.subscribeAsync('fogedge/devices/cam-3/cmd/agent/command', { qos: 1 }).catch(() => undefined);
  watcher.on('message', (_t, payload) => sent.push(payload.toString()));
  const t0 = Date.now();
  const res = await box.request('POST', '/api/v1/usp/endpoints/cam-3/command', {
    auth: admin,
    body: { command: 'reboot' },
  });
  const seconds = (Date.now() - t0) / 1000;
  await watcher.endAsync();
  assert.is(res.status, 503, res.text);
  assert.is(res.json.error.type, 'AGENT_TIMEOUT');
  assert.ok(seconds < 18, `answered after ${seconds} s`);
  assert.is(sent.length, 1, `the command went out ${sent.length} times`);
});

test("TR-369 MQTT MTP on 3.1.1: an agent that listens on its own topic and sends with /reply-to= (R-MQTT.24) is answered there (R-MQTT.25); one that names another device's topic is not connected", async () => {
  const listen = 'fogedge/devices/cam-5/cmd/usp-agent';
  const third = await cameraAgent('cam-5', await addDevice('cam-5'), 'proto::third-party-5', {
    listen,
    publish: `fogedge/devices/cam-5/usp/reply-to=${encodeURIComponent(listen)}`,
  });
  const e = await waitUntil(
    'the third-party agent read',
    async () => (await endpoints()).find((x) => x.endpointId === 'proto::third-party-5' && x.softwareVersion),
    10_000,
  );
  assert.is(e.serialNumber, 'SN-cam-5');
  assert.ok(
    third.heard.length > 0 && third.heard.every((t) => t === listen),
    `answered on ${[...new Set(third.heard)].join(', ')}`,
  );
  const results = (await box.broker.call('usp.get', {
    device: 'cam-5',
    paths: ['Device.DeviceInfo.SerialNumber'],
  })) as Array<{ resolvedPathResults: Array<{ resultParams: Record<string, string> }> }>;
  assert.is(results[0]!.resolvedPathResults[0]!.resultParams['SerialNumber'], 'SN-cam-5');

  // An agent that names a topic of another device as its own gets nothing sent there.
  await cameraAgent('cam-6', await addDevice('cam-6'), 'proto::sly-6', {
    listen: 'fogedge/devices/cam-6/cmd/usp',
    publish: 'fogedge/devices/cam-6/usp/reply-to=fogedge%2Fdevices%2Fcam-1%2Fcmd%2Fusp',
  }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 500));
  const sly = (await endpoints()).find((x) => x.endpointId === 'proto::sly-6');
  assert.ok(!sly || !sly.softwareVersion, 'the controller sent nothing to the topic of cam-1 for it');
});

test('the camera agent on MQTT 5 sends and is sent records with Content Type usp.msg and a Response Topic; on 3.1.1 it sends with /reply-to=; the controller reads both', async () => {
  // Watched as an admin's MQTT 5 client sees them on the wire.
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    username: 'admin',
    password: admin,
    reconnectPeriod: 0,
  });
  closers.push(() => watcher.endAsync(true));
  const seen: Array<{ topic: string; properties?: Record<string, unknown> }> = [];
  watcher.on('message', (topic, _payload, packet) =>
    seen.push({ topic, properties: packet.properties as Record<string, unknown> }),
  );
  await watcher.subscribeAsync(['fogedge/devices/cam-7/#', 'fogedge/devices/cam-8/#'], { qos: 1 });
  for (const [id, mqttVersion] of [
    ['cam-7', 5],
    ['cam-8', 4],
  ] as const) {
    const dataDir = await tempDir('fogedge-usp-mtp-agent-');
    const agent = await CameraAgent.start({
      id,
      secret: await addDevice(id),
      mqttUrl: `mqtt://127.0.0.1:${port}`,
      mqttVersion,
      dataDir,
      hasStreamKey: () => true,
      vendorKey: generateKeyPairSync('ed25519').publicKey,
      info: { manufacturer: 'FogEdge', modelName: 'fogcam-1', serialNumber: `SN-${id}` },
      factoryVersion: '1.0.0',
      agentVersion: '0.1.0',
      slotBytes: 1 << 20,
      trialSeconds: 60,
      healthy: () => true,
      reboot: () => undefined,
    });
    closers.push(
      () => agent.stop(),
      () => rm(dataDir, { recursive: true, force: true }),
    );
  }
  for (const id of ['cam-7', 'cam-8'])
    await waitUntil(
      `${id} read over USP`,
      async () => (await endpoints()).find((x) => x.device === id && x.softwareVersion),
      10_000,
    );

  const fromAgent = seen.find((m) => m.topic === 'fogedge/devices/cam-7/usp');
  assert.equal(
    [fromAgent?.properties?.['contentType'], fromAgent?.properties?.['responseTopic']],
    ['usp.msg', 'fogedge/devices/cam-7/cmd/usp'],
  );
  const toAgent = seen.find((m) => m.topic === 'fogedge/devices/cam-7/cmd/usp');
  assert.equal(
    [toAgent?.properties?.['contentType'], toAgent?.properties?.['responseTopic']],
    ['usp.msg', 'fogedge/devices/cam-7/usp'],
  );
  const reply311 = seen.filter((m) => m.topic.startsWith('fogedge/devices/cam-8/usp'));
  assert.ok(
    reply311.length > 0 &&
      reply311.every((m) => m.topic === 'fogedge/devices/cam-8/usp/reply-to=fogedge%2Fdevices%2Fcam-8%2Fcmd%2Fusp'),
    reply311.map((m) => m.topic).join(', '),
  );
});

test("Set, Add, Delete and Operate from the API: the spec's messages and answers, each audited; Operate waits for OperationComplete; notifications are kept per endpoint", async () => {
  const audited: Array<{ request: string; device: string; by: string }> = [];
  await box.broker.createService({
    name: 'audit-watch',
    events: {
      'usp.request.done'(ctx: { params: (typeof audited)[number] }) {
        audited.push(ctx.params);
      },
    },
  });
  const api = (path: string, body: object) =>
    box.request('POST', `/api/v1/usp/endpoints/cam-1/${path}`, { auth: admin, body });
  const sub = 'Device.LocalAgent.Subscription.';
  const added = await api('add', {
    objects: [
      { path: sub, params: { Enable: 'true', ID: 'boot-watch', NotifType: 'Event', ReferenceList: 'Device.Boot!' } },
    ],
  });
  assert.is(added.status, 200, added.text);
  assert.equal(added.json[0].operStatus.operSuccess.instantiatedPath, `${sub}1.`);
  assert.equal({ ...added.json[0].operStatus.operSuccess.uniqueKeys }, { ID: 'boot-watch' });
  const set = await api('set', { objects: [{ path: `${sub}1.`, params: { Enable: 'false' } }] });
  assert.is(set.status, 200, set.text);
  const read = await api('get', { paths: [`${sub}1.`] });
  assert.equal(
    { ...read.json[0].resolvedPathResults[0].resultParams },
    { Enable: 'false', ID: 'boot-watch', NotifType: 'Event', ReferenceList: 'Device.Boot!' },
  );

  // Refusals carry the spec's codes: a duplicate unique key (7025); a table nobody may add to (7019), per object with allowPartial.
  const dup = await api('add', { objects: [{ path: sub, params: { ID: 'boot-watch' } }] });
  assert.is(dup.json.error.type, 'USP_ERROR');
  assert.match(dup.json.error.message, /7025/);
  const partial = await api('add', {
    allowPartial: true,
    objects: [
      { path: 'Device.DeviceInfo.', params: {} },
      { path: sub, params: { NotifType: 'ValueChange', ReferenceList: 'Device.DeviceInfo.SoftwareVersion' } },
    ],
  });
  assert.is(partial.json[0].operStatus.operFailure.errCode, 7019);
  assert.is(partial.json[1].operStatus.operSuccess.instantiatedPath, `${sub}2.`);
  const bad = await api('set', { objects: [{ path: `${sub}2.`, params: { NotifType: 'Sometimes' } }] });
  assert.match(bad.json.error.message, /7012|NotifType/);

  const deleted = await api('delete', { paths: [`${sub}*.`] });
  assert.is(deleted.status, 200, deleted.text);
  assert.equal(deleted.json[0].operStatus.operSuccess.affectedPaths, [`${sub}1.`, `${sub}2.`]);
  const gone = await api('get', { paths: [`${sub}*.`] });
  assert.equal(gone.json[0].resolvedPathResults ?? [], []);
  const notDeletable = await api('delete', { paths: ['Device.DeviceInfo.'] });
  assert.match(notDeletable.json.error.message, /7024/);

  // Operate: Device.Reboot() answers at once; Download() runs as a Request and ends in OperationComplete.
  const reboot = await api('operate', { command: 'Device.Reboot()' });
  assert.is(reboot.status, 200, reboot.text);
  assert.is(reboot.json.state, 'done');
  const download = await api('operate', {
    command: 'Device.DeviceInfo.FirmwareImage.2.Download()',
    args: { URL: 'http://127.0.0.1:9/none.img' },
    wait: true,
    waitSeconds: 20,
  });
  assert.is(download.status, 200, download.text);
  assert.is(download.json.state, 'failed');
  assert.match(download.json.request, /^Device\.LocalAgent\.Request\.\d+\.$/);
  assert.ok(download.json.failure.code >= 7000, JSON.stringify(download.json));

  const listed = await box.request('GET', '/api/v1/usp/notifications?device=cam-1', { auth: admin });
  assert.is(listed.status, 200, listed.text);
  const completion = listed.json.find(
    (n: { type: string; commandKey?: string }) =>
      n.type === 'operationComplete' && n.commandKey === download.json.commandKey,
  );
  assert.ok(completion, 'the OperationComplete is kept');
  assert.is(completion.name, 'Download()');
  assert.ok(
    audited.every((a) => a.device === 'cam-1' && a.by === 'admin'),
    'who asked, for each',
  );
  assert.ok(
    ['ADD', 'SET', 'DELETE', 'OPERATE'].every((r) => audited.some((a) => a.request === r)),
    audited.map((a) => a.request).join(', '),
  );
});

test('Boot! is kept with its endpoint and in its notifications; an agent whose connection goes is offline at once, and requests to it fail fast', async () => {
  const agent = await cameraAgent('cam-9', await addDevice('cam-9'));
  await waitUntil(
    'cam-9 read',
    async () => (await endpoints()).find((x) => x.device === 'cam-9' && x.softwareVersion),
    10_000,
  );
  agent.agent.event(
    'Device.',
    'Boot!',
    {
      CommandKey: 'op-1',
      Cause: 'RemoteReboot',
      FirmwareUpdated: 'false',
      ParameterMap: '{"Device.DeviceInfo.SoftwareVersion":"1.4.0"}',
    },
    controllerId(box.config),
  );
  const all = () =>
    box.request('GET', '/api/v1/usp/endpoints', { auth: admin }).then(
      (r) =>
        r.json as Array<{
          device: string;
          connected?: boolean;
          lastBoot?: { cause: string; commandKey: string; parameterMap: Record<string, string> };
        }>,
    );
  const e = await waitUntil('the Boot! kept', async () =>
    (await all()).find((x) => x.device === 'cam-9' && x.lastBoot),
  );
  assert.equal(
    [e.lastBoot!.cause, e.lastBoot!.commandKey, e.lastBoot!.parameterMap['Device.DeviceInfo.SoftwareVersion']],
    ['RemoteReboot', 'op-1', '1.4.0'],
  );
  const listed = (await box.request('GET', '/api/v1/usp/notifications?device=cam-9', { auth: admin })).json as Array<{
    type: string;
    name: string;
  }>;
  assert.ok(listed.some((n) => n.type === 'event' && n.name === 'Boot!'));

  await agent.client.endAsync(true);
  await waitUntil('offline', async () => (await all()).find((x) => x.device === 'cam-9')?.connected === false, 5000);
  // AGENT_OFFLINE at once, not USP_TIMEOUT after waiting 15 s for an answer that cannot come.
  const asked = await box.request('POST', '/api/v1/usp/endpoints/cam-9/get', {
    auth: admin,
    body: { paths: ['Device.DeviceInfo.'] },
  });
  assert.is(asked.json.error.type, 'AGENT_OFFLINE');
});

test.run();
