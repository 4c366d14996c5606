// The camera's USP agent, driven with encoded Records as a controller sends them (no MQTT here:
// that is the camera agent's process test): Get, Set, Operate, GetSupportedDM over the
// firmware data model, the spec's error codes, and a firmware download and activation with
// their TransferComplete! and OperationComplete notifications.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { decodeRecord, encodeRecord, errorOf, request, type Msg } from '../lib/usp/codec.ts';
import { buildImage } from '../lib/firmware-image.ts';
import { FirmwareSlots } from '../camera-agent/firmware-slots.ts';
import { UspAgent } from '../camera-agent/usp/agent.ts';
import { deviceModel } from '../camera-agent/usp/device-model.ts';
import { tempDir } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';
import { VendorServer } from './helpers/vendor-server.ts';

const CONTROLLER = 'self::fogedge-box';
const AGENT = 'os::00D0F1-fogcam-0042';
const vendor = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');
let vendorServer: VendorServer;
let dir: string;
let slots: FirmwareSlots;
let agent: UspAgent;
let restarts = 0;
const inbox: Msg[] = [];

const image = (version: string, key = vendor.privateKey) =>
  buildImage(randomBytes(5000), { model: 'fogcam-1', version }, key);

/** Sends a request and returns the reply to it. */
async function ask(msgType: string, req: Record<string, unknown>): Promise<Msg> {
  const msg = request(msgType, req);
  await agent.receive(encodeRecord(CONTROLLER, AGENT, { msg }));
  return waitUntil(`the reply to ${msgType}`, () => inbox.find((m) => m.header.msgId === msg.header.msgId), 5000, 10);
}
const get = async (path: string) =>
  (await ask('GET', { get: { paramPaths: [path] } })).body.response!['getResp'].reqPathResults[0];
const notifications = () => inbox.filter((m) => m.header.msgType === 'NOTIFY').map((m) => m.body.request!['notify']);

test.before(async () => {
  vendorServer = await VendorServer.start();
  dir = await tempDir('fogedge-usp-');
  slots = await FirmwareSlots.open(dir, {
    vendorKey: vendor.publicKey,
    model: 'fogcam-1',
    slotBytes: 1024 * 1024,
    factoryVersion: '1.0.0',
  });
  let self: UspAgent;
  const model = deviceModel({
    info: { manufacturer: 'FogEdge', modelName: 'fogcam-1', serialNumber: '0042' },
    endpointId: AGENT,
    agentVersion: '0.1.0',
    slots,
    trialSeconds: 120,
    agentObjects: () => self.agentObjects(),
    transferComplete: (params) => self.event('Device.LocalAgent.', 'TransferComplete!', params),
    restart: () => void restarts++,
  });
  agent = self = new UspAgent(AGENT, model, (to, bytes) => {
    const env = decodeRecord(bytes);
    assert.equal([env.fromId, env.toId], [AGENT, to]);
    inbox.push(env.msg!);
  });
});
test.after(async () => {
  vendorServer.close();
  await rm(dir, { recursive: true, force: true });
});

test('Get: whole objects, one parameter, every instance by *; unknown paths and search expressions get the spec codes', async () => {
  const info = await get('Device.DeviceInfo.');
  assert.is(info.errCode, 0);
  const byPath = Object.fromEntries(info.resolvedPathResults.map((r: any) => [r.resolvedPath, r.resultParams]));
  assert.equal(
    [
      byPath['Device.DeviceInfo.'].Manufacturer,
      byPath['Device.DeviceInfo.'].SoftwareVersion,
      byPath['Device.DeviceInfo.'].BootFirmwareImage,
    ],
    ['FogEdge', '1.0.0', 'Device.DeviceInfo.FirmwareImage.1'],
  );
  assert.equal(byPath['Device.DeviceInfo.FirmwareImage.2.'], {
    Alias: 'cpe-slot-B',
    Name: 'B',
    Version: '',
    Status: 'NoImage',
    Available: 'false',
    BootFailureLog: '',
  });
  const statuses = await get('Device.DeviceInfo.FirmwareImage.*.Status');
  assert.equal(
    statuses.resolvedPathResults.map((r: any) => [r.resolvedPath, r.resultParams.Status]),
    [
      ['Device.DeviceInfo.FirmwareImage.1.', 'Available'],
      ['Device.DeviceInfo.FirmwareImage.2.', 'NoImage'],
    ],
  );
  assert.equal((await get('Device.LocalAgent.EndpointID')).resolvedPathResults[0].resultParams, { EndpointID: AGENT });
  // A valid path with no such instance: no error, nothing resolved.
  assert.equal(
    [
      (await get('Device.DeviceInfo.FirmwareImage.7.Version')).errCode,
      (await get('Device.DeviceInfo.FirmwareImage.7.Version')).resolvedPathResults,
    ],
    [0, []],
  );
  assert.is((await get('Device.WiFi.')).errCode, 7026);
  assert.is((await get('Device.DeviceInfo.Colour')).errCode, 7026);
  assert.is((await get('Device.DeviceInfo.FirmwareImage.[Status=="Available"].Version')).errCode, 7008);
});

test('Set: a read-only parameter is 7013, an unknown one 7010, a wrong type 7011, the active image unavailable 7012; nothing is written', async () => {
  const set = (objPath: string, param: string, value: string) =>
    ask('SET', {
      set: { allowPartial: false, updateObjs: [{ objPath, paramSettings: [{ param, value, required: true }] }] },
    });
  const cases: Array<[string, string, string, number]> = [
    ['Device.DeviceInfo.', 'SoftwareVersion', '9.9.9', 7013],
    ['Device.DeviceInfo.', 'Colour', 'red', 7010],
    ['Device.DeviceInfo.FirmwareImage.1.', 'Available', 'maybe', 7011],
    ['Device.DeviceInfo.FirmwareImage.1.', 'Available', 'false', 7012],
  ];
  for (const [obj, param, value, code] of cases) {
    const err = errorOf(await set(obj, param, value));
    assert.ok(err, `${param}=${value} refused`);
    assert.is(err!.code, code, `${param}=${value}`);
  }
  const notWritable = errorOf(await set('Device.DeviceInfo.', 'SoftwareVersion', '9.9.9'))!;
  assert.equal(
    notWritable.paramErrs.map((e) => [e.paramPath, e.errCode]),
    [['Device.DeviceInfo.SoftwareVersion', 7013]],
  );
  assert.is(
    (await get('Device.DeviceInfo.SoftwareVersion')).resolvedPathResults[0].resultParams.SoftwareVersion,
    '1.0.0',
  );
  const ok = await set('Device.DeviceInfo.FirmwareImage.1.', 'Available', 'true');
  assert.equal(
    ok.body.response!['setResp'].updatedObjResults[0].operStatus.operSuccess.updatedInstResults[0].updatedParams,
    { Available: 'true' },
  );
});

test('Operate on what does not exist is 7026, unknown arguments 7027; a message type it does not take is 7001', async () => {
  const op = (command: string, inputArgs: Record<string, string> = {}) =>
    ask('OPERATE', { operate: { command, commandKey: 'x', sendResp: true, inputArgs } });
  assert.is(errorOf(await op('Device.DeviceInfo.Reboot()'))!.code, 7026);
  assert.is(errorOf(await op('Device.DeviceInfo.FirmwareImage.9.Download()', { URL: 'http://x' }))!.code, 7026);
  assert.is(
    errorOf(await op('Device.DeviceInfo.FirmwareImage.2.Download()', { URL: 'http://x', Flash: 'now' }))!.code,
    7027,
  );
  const instances = { header: { msgId: 'gi-1', msgType: 'GET_INSTANCES' }, body: { request: {} } } as Msg;
  await agent.receive(encodeRecord(CONTROLLER, AGENT, { msg: instances }));
  const answer = await waitUntil('the refusal of GET_INSTANCES', () => inbox.find((m) => m.header.msgId === 'gi-1'));
  assert.is(errorOf(answer)!.code, 7001);
});

test('GetSupportedDM lists the firmware objects, their parameters with access, the async commands and the events', async () => {
  const res = await ask('GET_SUPPORTED_DM', {
    getSupportedDm: {
      objPaths: ['Device.'],
      firstLevelOnly: false,
      returnCommands: true,
      returnEvents: true,
      returnParams: true,
    },
  });
  const objs = res.body.response!['getSupportedDmResp'].reqObjResults[0].supportedObjs;
  const image = objs.find((o: any) => o.supportedObjPath === 'Device.DeviceInfo.FirmwareImage.{i}.');
  assert.ok(image.isMultiInstance);
  assert.equal(
    image.supportedCommands.map((c: any) => [c.commandName, c.commandType]),
    [
      ['Download()', 'CMD_ASYNC'],
      ['Activate()', 'CMD_ASYNC'],
    ],
  );
  assert.is(image.supportedParams.find((p: any) => p.paramName === 'Available').access, 'PARAM_READ_WRITE');
  assert.is(image.supportedParams.find((p: any) => p.paramName === 'Version').access, 'PARAM_READ_ONLY');
  assert.ok(
    objs
      .find((o: any) => o.supportedObjPath === 'Device.LocalAgent.')
      .supportedEvents.some((e: any) => e.eventName === 'TransferComplete!'),
  );
  assert.ok(
    objs.find((o: any) => o.supportedObjPath === 'Device.').supportedEvents.some((e: any) => e.eventName === 'Boot!'),
  );
});

test('Download() of a forged image fails with TransferComplete! and OperationComplete carrying 7022; the running image is untouched', async () => {
  const forged = image('6.6.6', stranger.privateKey);
  const served = vendorServer.serve('forged.img', forged);
  const before = notifications().length;
  const res = await ask('OPERATE', {
    operate: {
      command: 'Device.DeviceInfo.FirmwareImage.2.Download()',
      commandKey: 'bad-1',
      sendResp: true,
      inputArgs: { URL: served.url, CheckSumAlgorithm: 'SHA-256', CheckSum: served.sha256 },
    },
  });
  assert.match(
    res.body.response!['operateResp'].operationResults[0].reqObjPath,
    /^Device\.LocalAgent\.Request\.\d+\.$/,
  );
  await waitUntil('two notifications', () => notifications().length >= before + 2);
  const [transfer, complete] = notifications().slice(before);
  assert.equal(
    [transfer.event.eventName, transfer.event.params.FaultCode, transfer.event.params.CommandKey],
    ['TransferComplete!', '7022', 'bad-1'],
  );
  assert.match(transfer.event.params.FaultString, /not signed by the vendor key/);
  assert.equal([complete.operComplete.commandName, complete.operComplete.cmdFailure.errCode], ['Download()', 7022]);
  assert.equal((await get('Device.DeviceInfo.FirmwareImage.2.Status')).resolvedPathResults[0].resultParams, {
    Status: 'ValidationFailed',
  });
  assert.is(slots.version, '1.0.0');
});

test('Download() then Activate(): the image is Available, then the camera restarts into it, on trial', async () => {
  const good = image('2.0.0');
  const served = vendorServer.serve('good.img', good);
  const before = notifications().length;
  await ask('OPERATE', {
    operate: {
      command: 'Device.DeviceInfo.FirmwareImage.2.Download()',
      commandKey: 'camp-1',
      sendResp: true,
      inputArgs: {
        URL: served.url,
        FileSize: String(good.length),
        CheckSumAlgorithm: 'SHA-256',
        CheckSum: served.sha256,
      },
    },
  });
  await waitUntil('the download done', () =>
    notifications()
      .slice(before)
      .some((n) => n.operComplete),
  );
  const done = notifications()
    .slice(before)
    .find((n) => n.operComplete)!;
  assert.ok(done.operComplete.reqOutputArgs, JSON.stringify(done));
  assert.is(
    notifications()
      .slice(before)
      .find((n) => n.event)!.event.params.FaultCode,
    '0',
  );
  const b = (await get('Device.DeviceInfo.FirmwareImage.2.')).resolvedPathResults[0].resultParams;
  assert.equal([b.Version, b.Status, b.Available], ['2.0.0', 'Available', 'true']);
  const request = (await get('Device.LocalAgent.Request.')).resolvedPathResults.find(
    (r: any) => r.resultParams.CommandKey === 'camp-1',
  ).resultParams;
  assert.equal([request.Status, request.Originator], ['Success', CONTROLLER]);

  await ask('OPERATE', {
    operate: {
      command: 'Device.DeviceInfo.FirmwareImage.2.Activate()',
      commandKey: 'camp-1',
      sendResp: true,
      inputArgs: {},
    },
  });
  await waitUntil('the restart', () => restarts === 1);
  assert.equal([slots.active, slots.state.trying?.from, slots.version], ['B', 'A', '2.0.0']);
  // Downloading into the active image is refused.
  const again = await ask('OPERATE', {
    operate: {
      command: 'Device.DeviceInfo.FirmwareImage.2.Download()',
      commandKey: 'camp-2',
      sendResp: true,
      inputArgs: { URL: served.url },
    },
  });
  assert.ok(again.body.response);
  await waitUntil('the refusal', () => notifications().some((n) => n.operComplete?.commandKey === 'camp-2'));
  assert.match(
    notifications().find((n) => n.operComplete?.commandKey === 'camp-2')!.operComplete.cmdFailure.errMsg,
    /active image/,
  );
});

test('records it cannot read: garbage is dropped; a readable record with a broken Msg is answered 7000; a record for someone else is ignored', async () => {
  const count = inbox.length;
  await agent.receive(Buffer.from('garbage'));
  await agent.receive(
    encodeRecord(CONTROLLER, 'os::somebody-else', { msg: request('GET', { get: { paramPaths: ['Device.'] } }) }),
  );
  await new Promise((r) => setTimeout(r, 50));
  assert.is(inbox.length, count);
  const msg = Buffer.from([0x0a, 0x05, 0x0a, 0x01, 0x31, 0x10, 0x01, 0x12, 0x7f]); // body says 127 bytes, has none
  const inner = Buffer.concat([Buffer.from([0x12, msg.length]), msg]);
  const record = Buffer.concat([
    Buffer.from([0x0a, 3]),
    Buffer.from('1.2'),
    Buffer.from([0x12, AGENT.length]),
    Buffer.from(AGENT),
    Buffer.from([0x1a, CONTROLLER.length]),
    Buffer.from(CONTROLLER),
    Buffer.from([0x3a, inner.length]),
    inner,
  ]);
  await agent.receive(record);
  const answer = await waitUntil('the 7000', () => inbox.slice(count).find((m) => m.header.msgType === 'ERROR'));
  assert.is(errorOf(answer)!.code, 7000);
});

test.run();
