// USP (TR-369) on the wire: the bytes match the specification's field numbers, records and
// messages round-trip, and what cannot be read is refused the way the spec says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeRecord, encodeMsg, encodeRecord, ERR, errorMsg, errorOf, request, UspError } from '../lib/usp/codec.ts';
import { boxAddress, interfaceAddress } from '../services/usp/box-address.ts';
import path from 'node:path';
import type { ServiceBroker } from 'moleculer';
import type { Config } from '../appliance/config.ts';
import { Store } from '../lib/store.ts';
import { UspController, type Endpoint } from '../services/usp/controller.ts';
import { tempDir } from './helpers/box.ts';

test('a Get encodes to the bytes TR-369 defines (header 1, body 2, request 1, get 1, param_paths 1)', () => {
  const bytes = Buffer.from(encodeMsg(request('GET', { get: { paramPaths: ['Device.'] } }, '1')));
  const expected = Buffer.from([
    0x0a,
    0x05,
    0x0a,
    0x01,
    0x31,
    0x10,
    0x01, // header { msg_id "1", msg_type GET (1) }
    0x12,
    0x0d,
    0x0a,
    0x0b,
    0x0a,
    0x09,
    0x0a,
    0x07,
    ...Buffer.from('Device.'), // body { request { get { param_paths } } }
  ]);
  assert.equal(bytes.toString('hex'), expected.toString('hex'));
});

test("Add and Delete encode with TR-369's field numbers (request add 5, delete 6; Add create_objs 2, obj_path 1)", () => {
  const add = Buffer.from(encodeMsg(request('ADD', { add: { createObjs: [{ objPath: 'Device.' }] } }, '1')));
  // body 0x12 len, request 0x0a len, add 0x2a (field 5, length-delimited) len, create_objs 0x12 len, obj_path 0x0a len "Device."
  assert.ok(
    add.includes(Buffer.from([0x2a, 0x0b, 0x12, 0x09, 0x0a, 0x07, ...Buffer.from('Device.')])),
    add.toString('hex'),
  );
  const del = Buffer.from(encodeMsg(request('DELETE', { delete: { objPaths: ['Device.'] } }, '1')));
  assert.ok(del.includes(Buffer.from([0x32, 0x09, 0x12, 0x07, ...Buffer.from('Device.')])), del.toString('hex'));
});

test("the image URL's address: on balena the device's LAN address from its supervisor, else this machine's", async () => {
  // A stand-in for balena's supervisor API (it cannot run here), answering GET /v1/device as documented.
  let asked = '';
  let answer: { status: number; body: object } = {
    status: 200,
    body: { ip_address: '192.168.7.21 10.114.101.2', status: 'Idle' },
  };
  const supervisor = http.createServer((req, res) => {
    asked = req.url ?? '';
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  });
  await new Promise<void>((r) => supervisor.listen(0, '127.0.0.1', () => r()));
  const env = {
    BALENA_SUPERVISOR_ADDRESS: `http://127.0.0.1:${(supervisor.address() as AddressInfo).port}`,
    BALENA_SUPERVISOR_API_KEY: 'k e y',
  };
  try {
    assert.is(await boxAddress(env), '192.168.7.21');
    assert.is(asked, '/v1/device?apikey=k%20e%20y');
    answer = { status: 503, body: {} };
    assert.is(await boxAddress(env), interfaceAddress(), "the supervisor not answering: this machine's address");
    assert.is(await boxAddress({}), interfaceAddress(), 'not on balena');
  } finally {
    supervisor.close();
  }
});

test('records round-trip: a message, an MQTT connect, a disconnect', () => {
  const sent = request(
    'OPERATE',
    {
      operate: {
        command: 'Device.DeviceInfo.FirmwareImage.2.Download()',
        commandKey: 'k1',
        sendResp: true,
        inputArgs: { URL: 'http://box/fw.img', FileSize: '10' },
      },
    },
    'op-1',
  );
  const env = decodeRecord(encodeRecord('proto::fogedge-box', 'os::cam-1', { msg: sent }));
  assert.equal([env.fromId, env.toId], ['proto::fogedge-box', 'os::cam-1']);
  assert.is(env.msg!.header.msgType, 'OPERATE');
  assert.is(env.msg!.body.request!['operate'].inputArgs.URL, 'http://box/fw.img');
  const connect = decodeRecord(
    encodeRecord('os::cam-1', 'proto::fogedge-box', { mqttConnect: { subscribedTopic: 'usp/agent/cam-1' } }),
  );
  assert.is(connect.mqttConnect!.subscribedTopic, 'usp/agent/cam-1');
  const bye = decodeRecord(
    encodeRecord('os::cam-1', 'proto::fogedge-box', { disconnect: { reason: 'rebooting', reasonCode: 7002 } }),
  );
  assert.equal(bye.disconnect, { reason: 'rebooting', reasonCode: 7002 });
  const err = errorMsg(
    'm-9',
    new UspError(ERR.NOT_WRITABLE, 'SoftwareVersion is read-only', [
      { paramPath: 'Device.DeviceInfo.SoftwareVersion', errCode: ERR.NOT_WRITABLE, errMsg: 'read-only' },
    ]),
  );
  const back = decodeRecord(encodeRecord('a', 'b', { msg: err })).msg!;
  const asError = errorOf(back)!;
  assert.is(asError.code, 7013);
  assert.is(asError.paramErrs[0]!.paramPath, 'Device.DeviceInfo.SoftwareVersion');
});

test('what cannot be read: garbage is not a record; a record with a broken Msg is a 7000', () => {
  assert.throws(() => decodeRecord(Buffer.from('not protobuf at all, just text')), /not a USP Record|without from_id/);
  assert.throws(() => decodeRecord(new Uint8Array()), /without from_id/);
  // A well-formed record whose payload is a cut-off Msg: answerable, with the spec's "Message failed".
  const msg = Buffer.from(encodeMsg(request('GET', { get: { paramPaths: ['Device.'] } }, '7'))).subarray(0, -3);
  const inner = Buffer.concat([Buffer.from([0x12, msg.length]), msg]); // NoSessionContextRecord { payload (2) }
  const record = Buffer.concat([
    Buffer.from([0x0a, 3]),
    Buffer.from('1.2'),
    Buffer.from([0x12, 1]),
    Buffer.from('b'),
    Buffer.from([0x1a, 1]),
    Buffer.from('a'),
    Buffer.from([0x3a, inner.length]),
    inner,
  ]);
  try {
    decodeRecord(record);
    assert.unreachable('a cut-off Msg is refused');
  } catch (err) {
    assert.instance(err, UspError);
    assert.is((err as UspError).code, ERR.MESSAGE_FAILED);
  }
});

test("the controller: a Boot! handled beside the answer to the connect-time Get loses neither (the new version, the boot's cause)", async () => {
  const store = await Store.open(path.join(await tempDir(), 'db'));
  const sent: Array<ReturnType<typeof decodeRecord>> = [];
  // The bus stands in for the broker: what the controller sends to the agent is only kept here.
  const broker = {
    call: async (_action: string, p: { payloadBase64: string }) =>
      void sent.push(decodeRecord(Buffer.from(p.payloadBase64, 'base64'))),
    broadcast: () => undefined,
  } as unknown as ServiceBroker;
  const log = { info: () => undefined, warn: () => undefined, debug: () => undefined };
  const c = new UspController({ sync: { boxId: 'box1' } } as Config, store, broker, log as never);
  const agent = 'os::cam-a';
  const record = (content: Parameters<typeof encodeRecord>[2]) =>
    Buffer.from(encodeRecord(agent, c.self, content)).toString('base64');
  const read = c.endpoints.get.bind(c.endpoints);
  // Known from before its reboot, on 1.0.0; each read of its record takes a while (a busy disk).
  await c.endpoints.put(agent, {
    endpointId: agent,
    device: 'cam-a',
    manufacturer: null,
    model: null,
    serialNumber: null,
    softwareVersion: '1.0.0',
    connected: false,
  } as Endpoint);
  c.endpoints.get = async (key: string) => {
    const value = await read(key);
    await new Promise((r) => setTimeout(r, 30));
    return value;
  };
  await c.receive(
    'cam-a',
    record({ mqttConnect: { subscribedTopic: 'fogedge/devices/cam-a/cmd/usp', version: 'V5' } }),
    undefined,
  );
  while (!sent.length) await new Promise((r) => setTimeout(r, 5));
  const notify = { event: { objPath: 'Device.', eventName: 'Boot!', params: { Cause: 'LocalReboot' } } };
  const boot = c.receive(
    'cam-a',
    record({ msg: { header: { msgId: 'b1', msgType: 'NOTIFY' }, body: { request: { notify } } } }),
    undefined,
  );
  await new Promise((r) => setTimeout(r, 40));
  const getResp = {
    reqPathResults: [
      {
        requestedPath: 'Device.DeviceInfo.',
        resolvedPathResults: [{ resolvedPath: 'Device.DeviceInfo.', resultParams: { SoftwareVersion: '2.0.0' } }],
      },
    ],
  };
  const msgId = sent[0]!.msg!.header.msgId;
  const answer = c.receive(
    'cam-a',
    record({ msg: { header: { msgId, msgType: 'GET_RESP' }, body: { response: { getResp } } } }),
    undefined,
  );
  await Promise.all([boot, answer]);
  await new Promise((r) => setTimeout(r, 300)); // the Get's answer is written after receive returns
  const e = await read(agent);
  assert.is(e!.softwareVersion, '2.0.0');
  assert.is(e!.lastBoot?.cause, 'LocalReboot');
  c.stop();
  await store.close();
});

test.run();
