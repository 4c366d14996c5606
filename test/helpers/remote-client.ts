// A remote-access client that is not the web app: node-datachannel as the peer, mqtt.js over
// WebSocket to the operator's broker, and its own P-256 key, written from the protocol (the
// offer's fields and the signed text) rather than from the app's code. The tests use it to pair
// a second client, to make offers the app never would (forged, replayed, stale, for another box,
// a flood), and to watch what the box answers.
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import mqtt from 'mqtt';
import { PeerConnection, type DataChannel } from 'node-datachannel';
import { waitUntil } from './processes.ts';
import { keepUntilClosed } from '../../services/webrtc/keep-until-closed.ts';

export interface Pairing {
  box: string;
  topicRoot: string;
  broker: string;
  stun: string[];
  fingerprint: string;
  invitation: string;
  secret: string;
}

export type Reply =
  | { id: string; ok: true; session: string; sdp: string; video: string | null; audio: string | null; tunnel: boolean }
  | { id: string; ok: false; error: { type: string; message: string } };

export const pairingOf = (link: string): Pairing =>
  JSON.parse(Buffer.from(/#pair=([\w-]+)/.exec(link)![1]!, 'base64url').toString()) as Pairing;

export const offerId = () => randomBytes(16).toString('base64url');

export class RemoteClient {
  readonly keys: { privateKey: KeyObject; publicKey: KeyObject } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  browser: string | undefined;
  private readonly replies = new Map<string, Reply>();

  private constructor(
    readonly pairing: Pairing,
    private readonly client: mqtt.MqttClient,
  ) {}

  /** Connected to the operator's broker, listening to every answer of the box. */
  static async connect(pairing: Pairing): Promise<RemoteClient> {
    const client = await mqtt.connectAsync(pairing.broker, { protocolVersion: 5, reconnectPeriod: 500 });
    const remote = new RemoteClient(pairing, client);
    const prefix = `${pairing.topicRoot}/${pairing.box}/remote/answer/`;
    client.on('message', (topic, payload) => {
      if (topic.startsWith(prefix))
        remote.replies.set(topic.slice(prefix.length), JSON.parse(payload.toString()) as Reply);
    });
    await client.subscribeAsync(`${prefix}+`, { qos: 1 });
    return remote;
  }

  /** The text signed, as the protocol states it. */
  static signedText(o: {
    box: string;
    browser?: string;
    id: string;
    at: number;
    camera?: string;
    stream?: string;
    sdp: string;
  }) {
    return [
      'fogedge-remote-offer/1',
      o.box,
      o.browser ?? '',
      o.id,
      String(o.at),
      o.camera ?? '',
      o.stream ?? 'main',
      o.sdp,
    ].join('\n');
  }

  /** A signed offer of this client's (fields may be overridden, e.g. to forge one). */
  offer(sdp: string, fields: Record<string, unknown> = {}): Record<string, unknown> & { id: string } {
    const o = {
      v: 1,
      id: offerId(),
      at: Date.now(),
      box: this.pairing.box,
      browser: this.browser!,
      stream: 'main',
      sdp,
      ...fields,
    };
    const signature = sign('sha256', Buffer.from(RemoteClient.signedText(o as never)), {
      key: this.keys.privateKey,
      dsaEncoding: 'ieee-p1363',
    }).toString('base64');
    return { signature, ...o } as Record<string, unknown> & { id: string };
  }

  async publish(message: object | string): Promise<void> {
    await this.client.publishAsync(
      `${this.pairing.topicRoot}/${this.pairing.box}/remote/offer`,
      typeof message === 'string' ? message : JSON.stringify(message),
      { qos: 1 },
    );
  }

  reply(id: string, timeoutMs = 15_000): Promise<Reply> {
    return waitUntil(`the box's answer to offer ${id}`, () => this.replies.get(id), timeoutMs, 20);
  }

  async send(offer: { id: string } & Record<string, unknown>): Promise<Reply> {
    this.replies.delete(offer.id); // a message sent again waits for its own answer
    await this.publish(offer);
    return this.reply(offer.id);
  }

  /** Pairs this client through the invitation: the key goes over the box's own data channel. */
  async pair(name = 'test client'): Promise<string> {
    const { pc, sdp } = await peer((p) => p.createDataChannel('pair'));
    const channel = (pc as PeerConnection & { pairChannel: DataChannel }).pairChannel;
    try {
      const reply = await this.send({
        v: 1,
        id: offerId(),
        at: Date.now(),
        box: this.pairing.box,
        invitation: this.pairing.invitation,
        sdp,
      } as never);
      if (!reply.ok) throw new Error(`pairing refused: ${reply.error.type} ${reply.error.message}`);
      pc.setRemoteDescription(reply.sdp, 'answer');
      await waitUntil('the pairing channel open', () => channel.isOpen(), 15_000, 20);
      const answer = new Promise<string>((resolve) => channel.onMessage((m) => resolve(String(m))));
      channel.sendMessage(
        JSON.stringify({
          pair: {
            secret: this.pairing.secret,
            publicKey: this.keys.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
            name,
          },
        }),
      );
      const result = JSON.parse(await answer) as { paired?: { id: string }; error?: { type: string } };
      if (!result.paired) throw new Error(`pairing refused: ${JSON.stringify(result.error)}`);
      this.browser = result.paired.id;
      return this.browser;
    } finally {
      pc.close();
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/** A node-datachannel peer with its offer, every candidate gathered. */
export async function peer(setup: (pc: PeerConnection) => DataChannel): Promise<{ pc: PeerConnection; sdp: string }> {
  const pc = new PeerConnection(`client-${offerId().slice(0, 6)}`, { iceServers: [] });
  const gathered = new Promise<void>((resolve) => pc.onGatheringStateChange((s) => s === 'complete' && resolve()));
  const channel = setup(pc);
  keepUntilClosed(channel);
  (pc as PeerConnection & { pairChannel: DataChannel }).pairChannel = channel;
  await gathered;
  return { pc, sdp: pc.localDescription()!.sdp };
}
