// The USP agent endpoint of a camera: takes Records from its controller, answers Get, Set,
// Operate and GetSupportedDM from the data model, runs asynchronous commands (Download(),
// Activate()) as Device.LocalAgent.Request.{i} and tells their end with Notify
// OperationComplete, and sends events (Boot!, TransferComplete!). Transport-free: the MQTT MTP
// hands it bytes and sends what it returns.
import { decodeRecord, encodeRecord, ERR, errorMsg, newMsgId, request, response, UnreadableMsgError, UspError, type Msg } from '../../lib/usp/codec.ts';
import { DataModel, type ObjectNode } from './data-model.ts';

export interface AgentRequest {
  n: number;
  originator: string;
  command: string;
  commandKey: string;
  status: 'Requested' | 'Active' | 'Success' | 'Error';
}

type Send = (toId: string, record: Uint8Array) => void;

export class UspAgent {
  readonly requests: AgentRequest[] = [];
  private nextRequest = 1;
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

  /** One incoming Record; replies go out through `send`. Records it cannot read are dropped (logged). */
  async receive(bytes: Uint8Array): Promise<void> {
    let envelope;
    try {
      envelope = decodeRecord(bytes);
    } catch (err) {
      if (!(err instanceof UnreadableMsgError)) return this.log(`usp: dropped a record: ${(err as Error).message}`);
      // Readable record, unreadable Msg: answered with the spec's error, no msg_id to echo.
      if (err.toId === this.endpointId) this.send(err.fromId, encodeRecord(this.endpointId, err.fromId, { msg: errorMsg('', err) }));
      return;
    }
    if (envelope.toId !== this.endpointId) return this.log(`usp: dropped a record for ${envelope.toId}`);
    if (!envelope.msg) return; // connect / disconnect records need no answer
    this.controllerId = envelope.fromId;
    const reply = await this.handle(envelope.fromId, envelope.msg).catch((err: unknown) =>
      errorMsg(envelope.msg!.header.msgId, err instanceof UspError ? err : new UspError(ERR.INTERNAL_ERROR, (err as Error).message)),
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
        return response('SET_RESP', id, { setResp: await this.model.set(req['set']?.updateObjs ?? [], Boolean(req['set']?.allowPartial)) });
      case 'GET_SUPPORTED_DM': {
        const g = req['getSupportedDm'] ?? {};
        const results = this.model.supportedDM(g.objPaths ?? [], Boolean(g.firstLevelOnly), { commands: Boolean(g.returnCommands), events: Boolean(g.returnEvents), params: Boolean(g.returnParams) });
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

  private async operate(from: string, msgId: string, op: { command?: string; commandKey?: string; sendResp?: boolean; inputArgs?: Record<string, string> }): Promise<Msg | null> {
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
      return op.sendResp === false ? null : response('OPERATE_RESP', msgId, { operateResp: { operationResults: [{ executedCommand: commandPath, ...result }] } });
    }
    const r: AgentRequest = { n: this.nextRequest++, originator: from, command: commandPath, commandKey, status: 'Active' };
    this.requests.push(r);
    // Runs after the answer; its end is told by Notify OperationComplete.
    setImmediate(() => {
      void command.run(op.inputArgs ?? {}, commandKey).then(
        (outputs) => {
          r.status = 'Success';
          this.notify(from, { operComplete: { objPath: object.path, commandName: name, commandKey, reqOutputArgs: { outputArgs: outputs } } });
        },
        (err: unknown) => {
          r.status = 'Error';
          const e = err instanceof UspError ? err : { code: (err as { code?: number }).code ?? ERR.COMMAND_FAILURE, message: (err as Error).message };
          this.notify(from, { operComplete: { objPath: object.path, commandName: name, commandKey, cmdFailure: { errCode: e.code, errMsg: e.message } } });
        },
      );
    });
    return op.sendResp === false ? null : response('OPERATE_RESP', msgId, { operateResp: { operationResults: [{ executedCommand: commandPath, reqObjPath: `Device.LocalAgent.Request.${r.n}.` }] } });
  }

  /** A Notify to a controller (events, operation completions); no response asked for. */
  notify(to: string, notification: Record<string, unknown>): void {
    this.send(to, encodeRecord(this.endpointId, to, { msg: request('NOTIFY', { notify: { subscriptionId: 'fogedge', sendResp: false, ...notification } }, newMsgId('notify')) }));
  }

  /** An event (Boot!, TransferComplete!) to the controller it knows. */
  event(objPath: string, eventName: string, params: Record<string, string>, to = this.controllerId): void {
    if (to) this.notify(to, { event: { objPath, eventName, params } });
  }
}
