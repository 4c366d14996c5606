// USP (TR-369) on the wire: the bytes match the specification's field numbers, records and
// messages round-trip, and what cannot be read is refused the way the spec says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeRecord, encodeMsg, encodeRecord, ERR, errorMsg, errorOf, request, UspError } from '../lib/usp/codec.ts';

test('a Get encodes to the bytes TR-369 defines (header 1, body 2, request 1, get 1, param_paths 1)', () => {
  const bytes = Buffer.from(encodeMsg(request('GET', { get: { paramPaths: ['Device.'] } }, '1')));
  const expected = Buffer.from([
    0x0a, 0x05, 0x0a, 0x01, 0x31, 0x10, 0x01, // header { msg_id "1", msg_type GET (1) }
    0x12, 0x0d, 0x0a, 0x0b, 0x0a, 0x09, 0x0a, 0x07, ...Buffer.from('Device.'), // body { request { get { param_paths } } }
  ]);
  assert.equal(bytes.toString('hex'), expected.toString('hex'));
});

test('records round-trip: a message, an MQTT connect, a disconnect', () => {
  const sent = request('OPERATE', { operate: { command: 'Device.DeviceInfo.FirmwareImage.2.Download()', commandKey: 'k1', sendResp: true, inputArgs: { URL: 'http://box/fw.img', FileSize: '10' } } }, 'op-1');
  const env = decodeRecord(encodeRecord('proto::fogedge-box', 'os::cam-1', { msg: sent }));
  assert.equal([env.fromId, env.toId], ['proto::fogedge-box', 'os::cam-1']);
  assert.is(env.msg!.header.msgType, 'OPERATE');
  assert.is(env.msg!.body.request!['operate'].inputArgs.URL, 'http://box/fw.img');
  const connect = decodeRecord(encodeRecord('os::cam-1', 'proto::fogedge-box', { mqttConnect: { subscribedTopic: 'usp/agent/cam-1' } }));
  assert.is(connect.mqttConnect!.subscribedTopic, 'usp/agent/cam-1');
  const bye = decodeRecord(encodeRecord('os::cam-1', 'proto::fogedge-box', { disconnect: { reason: 'rebooting', reasonCode: 7002 } }));
  assert.equal(bye.disconnect, { reason: 'rebooting', reasonCode: 7002 });
  const err = errorMsg('m-9', new UspError(ERR.NOT_WRITABLE, 'SoftwareVersion is read-only', [{ paramPath: 'Device.DeviceInfo.SoftwareVersion', errCode: ERR.NOT_WRITABLE, errMsg: 'read-only' }]));
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
  const record = Buffer.concat([Buffer.from([0x0a, 3]), Buffer.from('1.2'), Buffer.from([0x12, 1]), Buffer.from('b'), Buffer.from([0x1a, 1]), Buffer.from('a'), Buffer.from([0x3a, inner.length]), inner]);
  try {
    decodeRecord(record);
    assert.unreachable('a cut-off Msg is refused');
  } catch (err) {
    assert.instance(err, UspError);
    assert.is((err as UspError).code, ERR.MESSAGE_FAILED);
  }
});

test.run();
