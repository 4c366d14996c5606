// USP Records and Messages on the wire (protobufjs with the .proto files beside this one), the
// spec's error codes, and small builders. Shared by the camera agent and the box's controller.
import { randomBytes } from 'node:crypto';
import protobuf from 'protobufjs';
import { projectPath } from '../project-root.ts';

const root = protobuf.loadSync([
  projectPath('lib', 'usp', 'usp-record.proto'),
  projectPath('lib', 'usp', 'usp-msg.proto'),
]);
const RecordType = root.lookupType('usp_record.Record');
const MsgType = root.lookupType('usp.Msg');

export const USP_VERSION = '1.2';
/** The MQTT 5 Content Type of a PUBLISH that carries a USP Record (TR-369's MQTT binding). */
export const USP_CONTENT_TYPE = 'usp.msg';

/** TR-369 error codes (section "Error Codes") that FogEdge answers with. */
export const ERR = {
  MESSAGE_FAILED: 7000,
  MESSAGE_NOT_SUPPORTED: 7001,
  REQUEST_DENIED: 7002,
  INTERNAL_ERROR: 7003,
  INVALID_ARGUMENTS: 7004,
  RESOURCES_EXCEEDED: 7005,
  PERMISSION_DENIED: 7006,
  INVALID_CONFIGURATION: 7007,
  INVALID_PATH_SYNTAX: 7008,
  PARAM_ACTION_FAILED: 7009,
  UNSUPPORTED_PARAM: 7010,
  INVALID_TYPE: 7011,
  INVALID_VALUE: 7012,
  NOT_WRITABLE: 7013,
  OBJECT_DOES_NOT_EXIST: 7016,
  COMMAND_FAILURE: 7022,
  INVALID_PATH: 7026,
  INVALID_COMMAND_ARGS: 7027,
} as const;

export interface ParamErr {
  paramPath: string;
  errCode: number;
  errMsg: string;
}

/** A failure answered as a USP Error message. */
export class UspError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly paramErrs: ParamErr[] = [],
  ) {
    super(message);
    this.name = 'UspError';
  }
}

/** A Msg as protobufjs gives it: camelCase fields, enums as names, oneofs named. */
/** A readable Record whose Msg is not: answerable (7000) to the sender it names. */
export class UnreadableMsgError extends UspError {
  constructor(
    readonly fromId: string,
    readonly toId: string,
    message: string,
  ) {
    super(ERR.MESSAGE_FAILED, message);
  }
}

export interface Msg {
  header: { msgId: string; msgType: string };
  body: {
    msgBody?: 'request' | 'response' | 'error';
    request?: Record<string, any>;
    response?: Record<string, any>;
    error?: { errCode: number; errMsg: string; paramErrs?: ParamErr[] };
  };
}

export interface Envelope {
  fromId: string;
  toId: string;
  /** Present for a NoSessionContext record. */
  msg?: Msg;
  /** An MQTTConnect record: the topic where the sender takes its messages. */
  mqttConnect?: { subscribedTopic: string };
  disconnect?: { reason: string; reasonCode: number };
}

const TO_OBJECT = { enums: String, longs: Number, defaults: true, oneofs: true, arrays: true, objects: true } as const;

export function encodeMsg(msg: Msg): Uint8Array {
  return MsgType.encode(MsgType.fromObject(msg)).finish();
}

export function encodeRecord(
  fromId: string,
  toId: string,
  content:
    | { msg: Msg }
    | { mqttConnect: { subscribedTopic: string; version?: 'V3_1_1' | 'V5' } }
    | { disconnect: { reason: string; reasonCode: number } },
): Uint8Array {
  const base = { version: USP_VERSION, fromId, toId, payloadSecurity: 'PLAINTEXT' };
  const body =
    'msg' in content
      ? { noSessionContext: { payload: encodeMsg(content.msg) } }
      : 'mqttConnect' in content
        ? {
            mqttConnect: {
              version: content.mqttConnect.version ?? 'V5',
              subscribedTopic: content.mqttConnect.subscribedTopic,
            },
          }
        : { disconnect: content.disconnect };
  return RecordType.encode(RecordType.fromObject({ ...base, ...body })).finish();
}

/**
 * A Record from the wire. A record that cannot be read throws a plain Error (the sender cannot be
 * answered); a readable record whose Msg cannot be read throws an UnreadableMsgError (7000).
 */
export function decodeRecord(bytes: Uint8Array): Envelope {
  let record: Record<string, any>;
  try {
    record = RecordType.toObject(RecordType.decode(bytes), TO_OBJECT);
  } catch (err) {
    throw new Error(`not a USP Record: ${(err as Error).message}`, { cause: err });
  }
  if (!record['fromId'] || !record['toId']) throw new Error('a USP Record without from_id or to_id');
  const out: Envelope = { fromId: record['fromId'], toId: record['toId'] };
  if (record['recordType'] === 'mqttConnect')
    out.mqttConnect = { subscribedTopic: record['mqttConnect'].subscribedTopic };
  else if (record['recordType'] === 'disconnect') out.disconnect = record['disconnect'];
  else if (record['recordType'] === 'noSessionContext') {
    try {
      out.msg = MsgType.toObject(MsgType.decode(record['noSessionContext'].payload), TO_OBJECT) as Msg;
    } catch (err) {
      throw new UnreadableMsgError(
        out.fromId,
        out.toId,
        `The Msg in the record cannot be read: ${(err as Error).message}`,
      );
    }
    // An Error answering a Msg that could not be read has no msg_id to echo; anything else needs one.
    if (!out.msg.header?.msgId && out.msg.header?.msgType !== 'ERROR')
      throw new UnreadableMsgError(out.fromId, out.toId, 'The Msg has no header msg_id');
  } else throw new Error(`a USP Record of a type this endpoint does not take (${record['recordType'] ?? 'none'})`);
  return out;
}

// ---- builders ----

/** Random: another endpoint cannot guess the id of a request it was not sent, and answer it. */
export const newMsgId = (prefix = 'm') => `${prefix}-${randomBytes(12).toString('base64url')}`;

export const request = (msgType: string, req: Record<string, unknown>, msgId = newMsgId()): Msg => ({
  header: { msgId, msgType },
  body: { request: req },
});
export const response = (msgType: string, msgId: string, resp: Record<string, unknown>): Msg => ({
  header: { msgId, msgType },
  body: { response: resp },
});
export const errorMsg = (msgId: string, err: UspError): Msg => ({
  header: { msgId, msgType: 'ERROR' },
  body: { error: { errCode: err.code, errMsg: err.message, paramErrs: err.paramErrs } },
});

/** The error of an Error message, as a UspError; null for any other message. */
export function errorOf(msg: Msg): UspError | null {
  const e = msg.body.error;
  return msg.body.msgBody === 'error' && e ? new UspError(e.errCode, e.errMsg, e.paramErrs ?? []) : null;
}
