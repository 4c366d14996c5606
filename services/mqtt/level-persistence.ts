// aedes persistence on LevelDB: aedes-persistence's in-memory implementation does the
// matching and streaming; this writes its state through to disk and loads it back at start,
// so retained messages, persistent sessions' subscriptions and their queued QoS 1/2
// messages survive a restart, and so do the last wills of connected clients: after a crash
// aedes publishes those whose client does not come back (they name a broker id that is gone).
// (npm has no aedes persistence on LevelDB that fits aedes 1.x.)
// Writes are not fsynced: they reach the OS before aedes acknowledges, so a crash of the box
// loses nothing; a power cut may lose the last moments.
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { Client } from 'aedes';
import { Store, type Collection } from '../../lib/store.ts';

const require = createRequire(import.meta.url);
/** aedes-persistence's async in-memory class (its main export wraps it in callbacks). */
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence;
const Packet = require('aedes-packet') as new (original: object) => Packet;

interface Packet {
  cmd: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
  [key: string]: unknown;
}
interface Sub {
  topic: string;
  qos: number;
  [key: string]: unknown;
}
type ClientRef = Pick<Client, 'id'>;
interface AsyncPersistence {
  setup(broker: object): Promise<void>;
  storeRetained(packet: Packet): Promise<void>;
  addSubscriptions(client: ClientRef, subs: Sub[]): Promise<void>;
  removeSubscriptions(client: ClientRef, topics: string[]): Promise<void>;
  subscriptionsByClient(client: ClientRef): Promise<Sub[]>;
  cleanSubscriptions(client: ClientRef): Promise<void>;
  putWill(client: ClientRef, packet: Packet): Promise<void>;
  getWill(client: ClientRef): Promise<Packet | undefined>;
  delWill(client: ClientRef): Promise<Packet | undefined>;
  streamWill(brokers?: Record<string, number>): Readable;
  destroy(): Promise<void>;
}

/** MQTT 5 properties of a packet; Correlation Data is bytes. */
type Properties = { correlationData?: Buffer | string; [key: string]: unknown };
/** Stored form of a packet: JSON with the payload (and MQTT 5 Correlation Data) in base64. */
type StoredPacket = Omit<Packet, 'payload'> & { payload?: string };
const toStored = (p: Packet): StoredPacket => {
  const properties = p['properties'] as Properties | undefined;
  const stored: StoredPacket = { ...p, payload: p.payload?.toString('base64') };
  if (Buffer.isBuffer(properties?.correlationData))
    stored['properties'] = { ...properties, correlationData: properties.correlationData.toString('base64') };
  return stored;
};
const fromStored = (s: StoredPacket): Packet => {
  const properties = s['properties'] as Properties | undefined;
  const packet = { ...s, payload: Buffer.from(s.payload ?? '', 'base64') } as Packet;
  if (typeof properties?.correlationData === 'string')
    packet['properties'] = { ...properties, correlationData: Buffer.from(properties.correlationData, 'base64') };
  return packet;
};
const subKey = (clientId: string, topic: string) => `${clientId}\u0000${topic}`;

interface Queued {
  key: string;
  packet: Packet;
}

export interface LevelPersistenceOptions {
  /** Messages queued for one persistent session; past it the oldest go, and `onDrop` is told. */
  maxQueuedPerClient: number;
  onDrop?: (clientId: string, topic: string) => void;
  /**
   * Retained topics kept in memory only: what the box itself publishes and can publish again
   * (snapshot JPEGs, each new one up to hundreds of KiB): flash is not worn by them.
   */
  volatileRetained?: (topic: string) => boolean;
  /**
   * Who a client is, kept with its will: a will published after a crash, with no client left to
   * ask, is checked against what its owner may publish.
   */
  ownerOf?: (client: ClientRef) => unknown;
  /** Whether a will of a client that died with the box may go out; one that may not is dropped. */
  mayPublishWill?: (will: Packet) => boolean;
  /** Whether a client id is connected now (its session is not expiring, whatever was stored). */
  isConnected?: (clientId: string) => boolean;
  /** An MQTT 5 session ended at its Session Expiry Interval by this class (one left by a restart). */
  onSessionExpired?: (clientId: string) => void;
}

export class LevelPersistence extends MemoryPersistence {
  #store!: Store;
  #retained!: Collection<StoredPacket>;
  #subs!: Collection<Sub>;
  #outbox!: Collection<{ clientId: string; packet: StoredPacket }>;
  #owners!: Collection<string>;
  #willsDb!: Collection<StoredPacket>;
  /** client id -> its will, with the id of the broker it was connected to. */
  readonly #wills = new Map<string, Packet>();
  #brokerId = '';
  /** Each persistent session's queue in delivery order, with the key of each message on disk. */
  readonly #queues = new Map<string, Queued[]>();
  readonly #ownerOf = new Map<string, string>();
  /** MQTT 5 sessions without a client, by the time they end (ms): aedes times them in memory only. */
  #expiries!: Collection<number>;
  readonly #expiryTimers = new Map<string, NodeJS.Timeout>();
  #seq = 0;

  constructor(
    private readonly dir: string,
    private readonly options: LevelPersistenceOptions,
  ) {
    super();
  }

  override async setup(broker: object): Promise<void> {
    await super.setup(broker);
    this.#brokerId = (broker as { id: string }).id;
    this.#store = await Store.open(this.dir);
    this.#retained = this.#store.collection('retained');
    this.#subs = this.#store.collection('subscriptions');
    this.#outbox = this.#store.collection('outgoing');
    this.#owners = this.#store.collection('owners');
    for await (const [, packet] of this.#retained.entries()) await super.storeRetained(fromStored(packet));
    const byClient = new Map<string, Sub[]>();
    for await (const [key, sub] of this.#subs.entries()) {
      const clientId = key.slice(0, key.indexOf('\u0000'));
      byClient.set(clientId, [...(byClient.get(clientId) ?? []), sub]);
    }
    for (const [id, subs] of byClient) await super.addSubscriptions({ id }, subs);
    for await (const [key, { clientId, packet }] of this.#outbox.entries()) {
      this.#queueOf(clientId).push({ key, packet: fromStored(packet) });
      this.#seq = Math.max(this.#seq, parseInt(key, 16) + 1);
    }
    for await (const [clientId, owner] of this.#owners.entries()) this.#ownerOf.set(clientId, owner);
    this.#willsDb = this.#store.collection('wills');
    for await (const [clientId, will] of this.#willsDb.entries()) this.#wills.set(clientId, fromStored(will));
    this.#expiries = this.#store.collection('session-expiries');
    for await (const [clientId, at] of this.#expiries.entries()) this.#armExpiry(clientId, at);
  }

  /**
   * An MQTT 5 session whose client went away ends at `at` (ms since the epoch), here as well as
   * in aedes, so that a restart of the box in between does not keep it for good; null: its
   * client is back.
   */
  async setSessionExpiry(clientId: string, at: number | null): Promise<void> {
    // Every stored end has its timer: a client with none (most connections) costs no disk write.
    const had = this.#expiryTimers.has(clientId);
    clearTimeout(this.#expiryTimers.get(clientId));
    this.#expiryTimers.delete(clientId);
    if (at === null) return void (had && (await this.#expiries.del(clientId, { sync: false })));
    await this.#expiries.put(clientId, at, { sync: false });
    this.#armExpiry(clientId, at);
  }

  #armExpiry(clientId: string, at: number) {
    // setTimeout holds at most 2^31-1 ms (24.8 days): a later end is re-armed on the way.
    const wait = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      this.#expiryTimers.delete(clientId);
      if (at > Date.now()) return this.#armExpiry(clientId, at);
      void (async () => {
        if ((await this.#expiries.get(clientId)) !== at) return;
        await this.#expiries.del(clientId, { sync: false });
        if (this.options.isConnected?.(clientId)) return;
        await this.cleanSubscriptions({ id: clientId });
        await this.delWill({ id: clientId });
        this.options.onSessionExpired?.(clientId);
      })().catch(() => undefined); // closed while expiring: it is expired at the next start
    }, wait);
    timer.unref();
    this.#expiryTimers.set(clientId, timer);
  }

  // Wills kept here, not in the memory class: one loaded from disk keeps its old broker id.
  override async putWill(client: ClientRef, packet: Packet): Promise<void> {
    const will = {
      ...packet,
      brokerId: this.#brokerId,
      clientId: client.id,
      owner: this.options.ownerOf?.(client),
    } as Packet;
    this.#wills.set(client.id, will);
    await this.#willsDb.put(client.id, toStored(will), { sync: false });
  }

  override async getWill(client: ClientRef): Promise<Packet | undefined> {
    return this.#wills.get(client.id);
  }

  override async delWill(client: ClientRef): Promise<Packet | undefined> {
    const will = this.#wills.get(client.id);
    if (!will) return undefined;
    this.#wills.delete(client.id);
    await this.#willsDb.del(client.id, { sync: false });
    return will;
  }

  /** The wills of brokers not alive (for this box: the run before a crash). */
  override streamWill(brokers: Record<string, number> = {}): Readable {
    const due = [...this.#wills.values()].filter((w) => !brokers[w.brokerId as string]);
    // Refused here, once, and forgotten: aedes would otherwise try (and fail) at every sweep.
    const refused = due.filter((w) => this.options.mayPublishWill && !this.options.mayPublishWill(w));
    for (const w of refused) {
      this.#wills.delete(w['clientId'] as string);
      void this.#willsDb.del(w['clientId'] as string, { sync: false }).catch(() => undefined);
    }
    return Readable.from(due.filter((w) => !refused.includes(w)));
  }

  // Keys in hex of fixed width sort in the order they were queued.
  #nextKey(): string {
    return (this.#seq++).toString(16).padStart(13, '0');
  }

  #queueOf(clientId: string): Queued[] {
    let queue = this.#queues.get(clientId);
    if (!queue) this.#queues.set(clientId, (queue = []));
    return queue;
  }

  override async storeRetained(packet: Packet): Promise<void> {
    await super.storeRetained(packet);
    if (this.options.volatileRetained?.(packet.topic)) return;
    if (packet.payload.length === 0) await this.#retained.del(packet.topic, { sync: false });
    else await this.#retained.put(packet.topic, toStored({ ...packet }), { sync: false });
  }

  override async addSubscriptions(client: ClientRef, subs: Sub[]): Promise<void> {
    await super.addSubscriptions(client, subs);
    for (const sub of subs) await this.#subs.put(subKey(client.id, sub.topic), sub, { sync: false });
  }

  override async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    await super.removeSubscriptions(client, topics);
    for (const topic of topics) await this.#subs.del(subKey(client.id, topic), { sync: false });
  }

  /** A clean session: its subscriptions, queue and owner go. */
  override async cleanSubscriptions(client: ClientRef): Promise<void> {
    for (const sub of await super.subscriptionsByClient(client))
      await this.#subs.del(subKey(client.id, sub.topic), { sync: false });
    await super.cleanSubscriptions(client);
    for (const queued of this.#queues.get(client.id) ?? []) await this.#outbox.del(queued.key, { sync: false });
    this.#queues.delete(client.id);
    if (this.#ownerOf.delete(client.id)) await this.#owners.del(client.id, { sync: false });
    if (this.#expiryTimers.has(client.id)) await this.setSessionExpiry(client.id, null);
  }

  /** Who holds the stored session of a client id (see mqtt.service), if anyone. */
  sessionOwner(clientId: string): string | undefined {
    return this.#ownerOf.get(clientId);
  }

  async setSessionOwner(clientId: string, owner: string): Promise<void> {
    if (this.#ownerOf.get(clientId) === owner) return;
    this.#ownerOf.set(clientId, owner);
    await this.#owners.put(clientId, owner, { sync: false });
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: Packet): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: Packet): Promise<void> {
    for (const { clientId } of subs) {
      const queued = { key: this.#nextKey(), packet: new Packet(packet) };
      const queue = this.#queueOf(clientId);
      queue.push(queued);
      await this.#outbox.put(queued.key, { clientId, packet: toStored(queued.packet) }, { sync: false });
      if (queue.length > this.options.maxQueuedPerClient) {
        const dropped = queue.shift()!;
        await this.#outbox.del(dropped.key, { sync: false });
        this.options.onDrop?.(clientId, dropped.packet.topic);
      }
    }
  }

  /** A queued message got its packet id (or became a PUBREL): the same rules as aedes-persistence's memory. */
  async outgoingUpdate(client: ClientRef, packet: Packet): Promise<void> {
    const queue = this.#queueOf(client.id);
    for (const queued of queue) {
      const p = queued.packet;
      if (p.brokerId === packet.brokerId) {
        if (p.brokerCounter !== packet.brokerCounter) continue;
        p.messageId = packet.messageId;
      } else if (p.messageId === packet.messageId) {
        queued.packet = packet;
      } else continue;
      await this.#outbox.put(queued.key, { clientId: client.id, packet: toStored(queued.packet) }, { sync: false });
      return;
    }
    throw new Error('no such packet');
  }

  async outgoingClearMessageId(client: ClientRef, packet: { messageId?: number }): Promise<Packet | undefined> {
    const queue = this.#queueOf(client.id);
    const i = queue.findIndex((q) => q.packet.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [queued] = queue.splice(i, 1);
    await this.#outbox.del(queued!.key, { sync: false });
    return queued!.packet;
  }

  outgoingStream(client: ClientRef): Readable {
    return Readable.from((this.#queues.get(client.id) ?? []).map((q) => q.packet));
  }

  override async destroy(): Promise<void> {
    for (const timer of this.#expiryTimers.values()) clearTimeout(timer);
    this.#expiryTimers.clear();
    await super.destroy();
    await this.#store?.close();
  }
}
