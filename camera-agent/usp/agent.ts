// The USP agent endpoint of a camera: takes Records from its controller, answers Get, Set,
// Operate and GetSupportedDM from the data model, Add and Delete on its one table a controller
// may create in (Device.LocalAgent.Subscription.{i}.), runs asynchronous commands (Download(),
// Activate()) as Device.LocalAgent.Request.{i} and tells their end with Notify
// OperationComplete, and sends events (Boot!, TransferComplete!). Transport-free: the MQTT MTP
// hands it bytes and sends what it returns.
import {
  decodeRecord,
  encodeRecord,
  ERR,
  errorMsg,
  newMsgId,
  request,
  response,
  UnreadableMsgError,
  UspError,
  type Msg,
} from '../../lib/usp/codec.ts';
import { DataModel, type ObjectNode } from './data-model.ts';

export interface AgentRequest {
  n: number;
  originator: string;
  command: string;
  commandKey: string;
  status: 'Requested' | 'Active' | 'Success' | 'Error';
}

/** Device.LocalAgent.Subscription.{i}.: what a controller asked to be told of. */
export interface AgentSubscription {
  n: number;
  enable: boolean;
  id: string;
  notifType: string;
  referenceList: string;
}

const SUBSCRIPTIONS = 'Device.LocalAgent.Subscription.';
const NOTIF_TYPES = ['Event', 'ValueChange', 'ObjectCreation', 'ObjectDeletion', 'OperationComplete', 'OnBoardRequest'];
/** TR-369 error codes for Add and Delete beside the codec's common ones. */
const NOT_CREATABLE = 7019;
const DUPLICATE_KEY = 7025;
const NOT_DELETABLE = 7024;

type Send = (toId: string, record: Uint8Array) => void;

export class UspAgent {
  readonly requests: AgentRequest[] = [];
  private nextRequest = 1;
  readonly subscriptions: AgentSubscription[] = [];
  private nextSubscription = 1;
  /** The controller that talked to it last: where events go. */
  controllerId: string | null = null;

  constructor(
    readonly endpointId: string,
    private readonly model: DataModel,
    private readonly send: Send,
    private readonly log: (message: string) => void = () => {},
  ) {}

  /** Device.LocalAgent.Request.{i}. objects, for the device model to include. */
  requestObjects(): ObjectNode[] {
    return this.requests.map((r) => ({
      path: `Device.LocalAgent.Request.${r.n}.`,
      params: {
        Originator: { type: 'string', get: () => r.originator },
        Command: { type: 'string', get: () => r.command },
        CommandKey: { type: 'string', get: () => r.commandKey },
        Status: { type: 'string', get: () => r.status },
      },
    }));
  }

  /** Its Request.{i} and Subscription.{i} objects, for the device model to include. */
  agentObjects(): ObjectNode[] {
    return [...this.requestObjects(), ...this.subscriptionObjects()];
  }

  /** Device.LocalAgent.Subscription.{i}. objects; their settings are writable. */
  subscriptionObjects(): ObjectNode[] {
    return this.subscriptions.map((sub) => ({
      path: `${SUBSCRIPTIONS}${sub.n}.`,
      params: {
        Enable: {
          type: 'boolean',
          get: () => String(sub.enable),
          set: (v) => void (sub.enable = parseBoolean('Enable', v)),
        },
        ID: { type: 'string', get: () => sub.id, set: (v) => void (sub.id = this.uniqueId(v, sub)) },
        NotifType: { type: 'string', get: () => sub.notifType, set: (v) => void (sub.notifType = parseNotifType(v)) },
        ReferenceList: { type: 'string', get: () => sub.referenceList, set: (v) => void (sub.referenceList = v) },
      },
    }));
  }

  private uniqueId(id: string, self?: AgentSubscription): string {
    if (this.subscriptions.some((s) => s !== self && s.id === id))
      throw new UspError(DUPLICATE_KEY, `A subscription with ID "${id}" exists`);
    return id;
  }

  /**
   * Add: only subscriptions can be created here. Without allow_partial one failure creates
   * nothing and the whole message fails; with it, each object succeeds or fails on its own.
   */
  private add(req: {
    allowPartial?: boolean;
    createObjs?: Array<{
      objPath: string;
      paramSettings?: Array<{ param: string; value: string; required?: boolean }>;
    }>;
  }) {
    const made: AgentSubscription[] = [];
    const results = (req.createObjs ?? []).map((obj) => {
      try {
        if (obj.objPath !== SUBSCRIPTIONS)
          throw new UspError(
            NOT_CREATABLE,
            `${obj.objPath} is not a table a controller may add to (only ${SUBSCRIPTIONS})`,
          );
        const sub: AgentSubscription = {
          n: this.nextSubscription + made.length,
          enable: false,
          id: '',
          notifType: '',
          referenceList: '',
        };
        const paramErrs: Array<{ param: string; errCode: number; errMsg: string }> = [];
        for (const ps of obj.paramSettings ?? []) {
          try {
            if (ps.param === 'Enable') sub.enable = parseBoolean('Enable', ps.value);
            else if (ps.param === 'ID') sub.id = ps.value;
            else if (ps.param === 'NotifType') sub.notifType = parseNotifType(ps.value);
            else if (ps.param === 'ReferenceList') sub.referenceList = ps.value;
            else throw new UspError(ERR.UNSUPPORTED_PARAM, `${SUBSCRIPTIONS}{i}.${ps.param} does not exist`);
          } catch (err) {
            const e = err as UspError;
            if (ps.required) throw new UspError(e.code, `${ps.param}: ${e.message}`);
            paramErrs.push({ param: ps.param, errCode: e.code, errMsg: e.message });
          }
        }
        sub.id ||= `fogedge-${sub.n}`;
        if (made.some((m) => m.id === sub.id))
          throw new UspError(DUPLICATE_KEY, `A subscription with ID "${sub.id}" exists`);
        this.uniqueId(sub.id);
        made.push(sub);
        return {
          requestedPath: obj.objPath,
          operStatus: {
            operSuccess: { instantiatedPath: `${SUBSCRIPTIONS}${sub.n}.`, paramErrs, uniqueKeys: { ID: sub.id } },
          },
        };
      } catch (err) {
        const e = err instanceof UspError ? err : new UspError(ERR.INTERNAL_ERROR, (err as Error).message);
        if (!req.allowPartial) throw e;
        return { requestedPath: obj.objPath, operStatus: { operFailure: { errCode: e.code, errMsg: e.message } } };
      }
    });
    this.subscriptions.push(...made);
    this.nextSubscription += made.length;
    return { createdObjResults: results };
  }

  /** Delete: instances of the subscription table (by number or *); an instance already gone is no failure. */
  private delete(req: { allowPartial?: boolean; objPaths?: string[] }) {
    const doomed = new Set<AgentSubscription>();
    const results = (req.objPaths ?? []).map((path) => {
      const m = /^Device\.LocalAgent\.Subscription\.(\d+|\*)\.$/.exec(path);
      if (!m) {
        const e = new UspError(
          NOT_DELETABLE,
          `${path} is not an instance a controller may delete (only ${SUBSCRIPTIONS}{i}.)`,
        );
        if (!req.allowPartial) throw e;
        return { requestedPath: path, operStatus: { operFailure: { errCode: e.code, errMsg: e.message } } };
      }
      const hit = this.subscriptions.filter((sub) => m[1] === '*' || String(sub.n) === m[1]);
      for (const sub of hit) doomed.add(sub);
      return {
        requestedPath: path,
        operStatus: {
          operSuccess: { affectedPaths: hit.map((sub) => `${SUBSCRIPTIONS}${sub.n}.`), unaffectedPathErrs: [] },
        },
      };
    });
    for (const sub of doomed) this.subscriptions.splice(this.subscriptions.indexOf(sub), 1);
    return { deletedObjResults: results };
  }

  /** One incoming Record; replies go out through `send`. Records it cannot read are dropped (logged). */
  async receive(bytes: Uint8Array): Promise<void> {
    let envelope;
    try {
      envelope = decodeRecord(bytes);
    } catch (err) {
      if (!(err instanceof UnreadableMsgError)) return this.log(`usp: dropped a record: ${(err as Error).message}`);
      // Readable record, unreadable Msg: answered with the spec's error, no msg_id to echo.
      if (err.toId === this.endpointId)
        this.send(err.fromId, encodeRecord(this.endpointId, err.fromId, { msg: errorMsg('', err) }));
      return;
    }
    if (envelope.toId !== this.endpointId) return this.log(`usp: dropped a record for ${envelope.toId}`);
    if (!envelope.msg) return; // connect / disconnect records need no answer
    this.controllerId = envelope.fromId;
    const reply = await this.handle(envelope.fromId, envelope.msg).catch((err: unknown) =>
      errorMsg(
        envelope.msg!.header.msgId,
        err instanceof UspError ? err : new UspError(ERR.INTERNAL_ERROR, (err as Error).message),
      ),
    );
    if (reply) this.send(envelope.fromId, encodeRecord(this.endpointId, envelope.fromId, { msg: reply }));
  }

  private async handle(from: string, msg: Msg): Promise<Msg | null> {
    const id = msg.header.msgId;
    const req = msg.body.request ?? {};
    switch (msg.header.msgType) {
      case 'GET':
        return response('GET_RESP', id, { getResp: { reqPathResults: this.model.get(req['get']?.paramPaths ?? []) } });
      case 'SET':
        return response('SET_RESP', id, {
          setResp: await this.model.set(req['set']?.updateObjs ?? [], Boolean(req['set']?.allowPartial)),
        });
      case 'ADD':
        return response('ADD_RESP', id, { addResp: this.add(req['add'] ?? {}) });
      case 'DELETE':
        return response('DELETE_RESP', id, { deleteResp: this.delete(req['delete'] ?? {}) });
      case 'GET_SUPPORTED_DM': {
        const g = req['getSupportedDm'] ?? {};
        const results = this.model.supportedDM(g.objPaths ?? [], Boolean(g.firstLevelOnly), {
          commands: Boolean(g.returnCommands),
          events: Boolean(g.returnEvents),
          params: Boolean(g.returnParams),
        });
        return response('GET_SUPPORTED_DM_RESP', id, { getSupportedDmResp: { reqObjResults: results } });
      }
      case 'OPERATE':
        return this.operate(from, id, req['operate'] ?? {});
      case 'NOTIFY_RESP':
        return null;
      default:
        throw new UspError(ERR.MESSAGE_NOT_SUPPORTED, `This agent does not take ${msg.header.msgType} messages`);
    }
  }

  private async operate(
    from: string,
    msgId: string,
    op: { command?: string; commandKey?: string; sendResp?: boolean; inputArgs?: Record<string, string> },
  ): Promise<Msg | null> {
    const commandPath = op.command ?? '';
    const { object, name, command } = this.model.command(commandPath, op.inputArgs ?? {});
    const commandKey = op.commandKey ?? '';
    if (!command.async) {
      let result;
      try {
        result = { reqOutputArgs: { outputArgs: await command.run(op.inputArgs ?? {}, commandKey) } };
      } catch (err) {
        const e = err instanceof UspError ? err : new UspError(ERR.COMMAND_FAILURE, (err as Error).message);
        result = { cmdFailure: { errCode: e.code, errMsg: e.message } };
      }
      return op.sendResp === false
        ? null
        : response('OPERATE_RESP', msgId, {
            operateResp: { operationResults: [{ executedCommand: commandPath, ...result }] },
          });
    }
    const r: AgentRequest = {
      n: this.nextRequest++,
      originator: from,
      command: commandPath,
      commandKey,
      status: 'Active',
    };
    this.requests.push(r);
    // Runs after the answer; its end is told by Notify OperationComplete.
    setImmediate(() => {
      void command.run(op.inputArgs ?? {}, commandKey).then(
        (outputs) => {
          r.status = 'Success';
          this.notify(from, {
            operComplete: {
              objPath: object.path,
              commandName: name,
              commandKey,
              reqOutputArgs: { outputArgs: outputs },
            },
          });
        },
        (err: unknown) => {
          r.status = 'Error';
          const e =
            err instanceof UspError
              ? err
              : { code: (err as { code?: number }).code ?? ERR.COMMAND_FAILURE, message: (err as Error).message };
          this.notify(from, {
            operComplete: {
              objPath: object.path,
              commandName: name,
              commandKey,
              cmdFailure: { errCode: e.code, errMsg: e.message },
            },
          });
        },
      );
    });
    return op.sendResp === false
      ? null
      : response('OPERATE_RESP', msgId, {
          operateResp: {
            operationResults: [{ executedCommand: commandPath, reqObjPath: `Device.LocalAgent.Request.${r.n}.` }],
          },
        });
  }

  /** A Notify to a controller (events, operation completions); no response asked for. */
  notify(to: string, notification: Record<string, unknown>): void {
    this.send(
      to,
      encodeRecord(this.endpointId, to, {
        msg: request(
          'NOTIFY',
          { notify: { subscriptionId: 'fogedge', sendResp: false, ...notification } },
          newMsgId('notify'),
        ),
      }),
    );
  }

  /** An event (Boot!, TransferComplete!) to the controller it knows. */
  event(objPath: string, eventName: string, params: Record<string, string>, to = this.controllerId): void {
    if (to) this.notify(to, { event: { objPath, eventName, params } });
  }
}

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new UspError(ERR.INVALID_VALUE, `${name} takes true or false, not "${value}"`);
}

function parseNotifType(value: string): string {
  if (!NOTIF_TYPES.includes(value))
    throw new UspError(ERR.INVALID_VALUE, `NotifType takes ${NOTIF_TYPES.join(', ')}, not "${value}"`);
  return value;
}
