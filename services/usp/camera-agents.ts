// FogEdge's own camera agents beside USP: their hello (a push camera and its stream key, sent to
// the agent alone on its command topic) and the commands the API sends them (snapshot,
// restart-stream, set-video, reboot), each awaited by its id.
import { randomBytes } from 'node:crypto';
import type { ServiceBroker } from 'moleculer';
import { call } from '../../lib/bus.ts';
import { BadRequestError, UnavailableError } from '../../lib/errors.ts';
import { unlessRefused } from '../../lib/refusals.ts';
import type { Config } from '../../appliance/config.ts';
import { CameraId } from '../cameras/cameras.schemas.ts';
import { notRetried, REQUEST_TIMEOUT_MS } from './controller.ts';

export interface AgentCommand {
  command: 'snapshot' | 'restart-stream' | 'set-video' | 'reboot';
  width?: number | undefined;
  height?: number | undefined;
  bitrateKbps?: number | undefined;
}

const toBase64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');

export class CameraAgents {
  /** Replies to agent commands, by `<device>/<id>`. */
  private readonly replies = new Map<string, (reply: Record<string, unknown>) => void>();

  constructor(
    private readonly config: Config,
    private readonly controllerId: string,
    private readonly broker: ServiceBroker,
    private readonly log: { info(m: string): void; warn(m: string): void },
  ) {}

  /** Sends a command and resolves with the agent's result; its refusal is a 400, its silence a 503. */
  async command(device: string, command: AgentCommand): Promise<unknown> {
    const id = randomBytes(6).toString('hex');
    const key = `${device}/${id}`;
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(key);
        reject(
          notRetried(
            new UnavailableError(
              `Camera agent ${device} did not answer ${command.command} within ${REQUEST_TIMEOUT_MS / 1000} s`,
              'AGENT_TIMEOUT',
            ),
          ),
        );
      }, REQUEST_TIMEOUT_MS);
      this.replies.set(key, (reply) => (clearTimeout(timer), this.replies.delete(key), resolve(reply)));
    });
    answer.catch(() => undefined); // awaited below, after the send
    await call(this.broker, 'mqtt.sendToDevice', {
      device,
      channel: 'agent/command',
      payloadBase64: toBase64({ id, ...command }),
    });
    const reply = await answer;
    if (!reply['ok']) throw new BadRequestError(`Camera agent ${device}: ${String(reply['error'])}`, 'AGENT_REFUSED');
    return reply['result'];
  }

  /** An agent's reply to a command: to the command waiting for it, if any still does. */
  replied(device: string, payloadBase64: string): void {
    let reply: { id?: unknown };
    try {
      reply = JSON.parse(Buffer.from(payloadBase64, 'base64').toString('utf8')) as { id?: unknown };
    } catch {
      return this.log.warn(`usp: device ${device} sent a reply that is not JSON`);
    }
    if (typeof reply.id === 'string') this.replies.get(`${device}/${reply.id}`)?.(reply as Record<string, unknown>);
  }

  /**
   * A camera agent says hello when it connects: it is welcomed with the controller's endpoint
   * id, and on first contact (or when it asks) with a stream key for its push camera (same id
   * as the device), sent to it alone, on its cmd topic.
   */
  async hello(device: string, payloadBase64: string): Promise<void> {
    let hello: { needStreamKey?: boolean; name?: string };
    try {
      hello = JSON.parse(Buffer.from(payloadBase64, 'base64').toString('utf8'));
    } catch {
      return this.log.warn(`usp: device ${device} sent a hello that is not JSON`);
    }
    if (!CameraId.safeParse(device).success) return this.log.warn(`usp: device id "${device}" cannot name a camera`);
    let key: string | undefined;
    const existing = await unlessRefused(call(this.broker, 'cameras.get', { id: device }));
    if (!existing) {
      const name = typeof hello.name === 'string' && hello.name.trim() ? hello.name.trim().slice(0, 64) : device;
      key = (await call(this.broker, 'cameras.add', { id: device, name, source: { kind: 'rtmp' } })).streamKey;
      this.log.info(`usp: camera agent ${device} got its push camera`);
    } else if (hello.needStreamKey) {
      if (existing.source.kind !== 'rtmp')
        return this.log.warn(`usp: camera ${device} is not a push camera; its agent gets no stream key`);
      key = (await call(this.broker, 'cameras.newStreamKey', { id: device })).streamKey;
    }
    const welcome = {
      controllerId: this.controllerId,
      ...(key ? { stream: { path: `/live/${device}`, key, port: this.config.video.rtmp?.port ?? null } } : {}),
    };
    await call(this.broker, 'mqtt.sendToDevice', {
      device,
      channel: 'agent/welcome',
      payloadBase64: toBase64(welcome),
    });
  }
}
