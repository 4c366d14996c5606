// What the box owes the ADMP, in LevelDB, in the order it must go up. Each message is
// written (with sync) before enqueue returns, and deleted only once the operator's broker
// has it. Bounded by items and bytes; past the bound the queues' one drop rule applies
// (lib/bounded-queue.ts, by DROP_ORDER), counted per kind, so a long outage costs old
// telemetry, not the audit.
import pLimit from 'p-limit';
import { makeRoom } from '../../lib/bounded-queue.ts';
import type { Collection } from '../../lib/store.ts';

/** Kinds of message, from least to most worth keeping when the queue is full. */
export const DROP_ORDER = ['health', 'event', 'reported', 'reply', 'audit'] as const;
export type Kind = (typeof DROP_ORDER)[number];

export interface UpMessage {
  /** Increasing for ever on this box: the operator orders and de-duplicates by it. */
  seq: number;
  kind: Kind;
  /** Below the box's topic root: health, events, audit, commands/res, config/reported. */
  topic: string;
  payload: Record<string, unknown>;
  retain: boolean;
  bytes: number;
}

export interface QueueBounds {
  maxItems: number;
  maxBytes: number;
}

/** Keys sort as numbers. */
const keyOf = (seq: number) => String(seq).padStart(16, '0');

export class UplinkQueue {
  /** In seq order (Map keeps insertion order and seqs only grow). */
  private readonly messages = new Map<number, UpMessage>();
  private bytes = 0;
  private nextSeq = 1;
  readonly dropped: Record<Kind, number> = { health: 0, event: 0, reported: 0, reply: 0, audit: 0 };
  /** Changes go one at a time, so the map and the disk stay in seq order. */
  private readonly inTurn = pLimit(1);
  /** Sent, gone from the map, not yet deleted on disk: deleted together, in one synced write. */
  private readonly sentSeqs: number[] = [];

  constructor(
    private readonly store: Collection<UpMessage>,
    private readonly meta: Collection<unknown>,
    private readonly bounds: QueueBounds,
  ) {}

  async load(): Promise<void> {
    for (const m of await this.store.values()) {
      this.messages.set(m.seq, m);
      this.bytes += m.bytes;
    }
    const saved = (await this.meta.get('queue')) as { nextSeq: number; dropped: Record<Kind, number> } | undefined;
    // The next seq survives an empty queue: an operator must never see a number twice.
    this.nextSeq = Math.max(saved?.nextSeq ?? 1, ...[...this.messages.keys()].map((s) => s + 1));
    Object.assign(this.dropped, saved?.dropped);
  }

  get size(): { items: number; bytes: number; byKind: Record<Kind, number>; oldestSeq: number | null } {
    const byKind: Record<Kind, number> = { health: 0, event: 0, reported: 0, reply: 0, audit: 0 };
    for (const m of this.messages.values()) byKind[m.kind]++;
    return {
      items: this.messages.size,
      bytes: this.bytes,
      byKind,
      oldestSeq: this.messages.keys().next().value ?? null,
    };
  }

  /**
   * Stores a message durably and returns what was dropped to make room; `message` is null when
   * the queue is full of messages worth more (it is counted as dropped). A new reported state
   * replaces one still waiting: only the latest state of the box is worth sending.
   */
  enqueue(
    kind: Kind,
    topic: string,
    payload: Record<string, unknown>,
    retain = false,
  ): Promise<{ message: UpMessage | null; dropped: UpMessage[] }> {
    return this.inTurn(() => this.add(kind, topic, payload, retain));
  }

  private async add(
    kind: Kind,
    topic: string,
    payload: Record<string, unknown>,
    retain: boolean,
  ): Promise<{ message: UpMessage | null; dropped: UpMessage[] }> {
    const seq = this.nextSeq++;
    const body = { seq, ...payload };
    const message: UpMessage = {
      seq,
      kind,
      topic,
      payload: body,
      retain,
      bytes: Buffer.byteLength(JSON.stringify(body)),
    };
    if (kind === 'reported')
      for (const old of this.messages.values()) if (old.kind === 'reported') await this.remove(old.seq);
    const value = (m: Pick<UpMessage, 'kind'>) => DROP_ORDER.indexOf(m.kind);
    const dropped = makeRoom(
      this.messages.values(),
      {
        items: this.messages.size + 1 - this.bounds.maxItems,
        bytes: this.bytes + message.bytes - this.bounds.maxBytes,
      },
      value(message),
      value,
      (m) => m.bytes,
    );
    if (!dropped) {
      // Its seq is spent: the operator sees the gap, and the count says why.
      this.dropped[kind]++;
      await this.saveMeta(false);
      return { message: null, dropped: [] };
    }
    for (const victim of dropped) {
      await this.remove(victim.seq);
      this.dropped[victim.kind]++;
    }
    await this.store.put(keyOf(seq), message);
    this.messages.set(seq, message);
    this.bytes += message.bytes;
    // Not synced: while the queue holds messages their seqs keep nextSeq from going back.
    if (dropped.length) await this.saveMeta(false);
    return { message, dropped };
  }

  /** The oldest messages not yet handed out, in order. */
  next(count: number, skip: ReadonlySet<number>): UpMessage[] {
    const out: UpMessage[] = [];
    for (const m of this.messages.values()) {
      if (out.length >= count) break;
      if (!skip.has(m.seq)) out.push(m);
    }
    return out;
  }

  /**
   * The operator's broker has it. Acknowledgements that come together are deleted in one synced
   * write; a message whose ack is waiting is already out of `next()`.
   */
  sent(seq: number): Promise<void> {
    const m = this.messages.get(seq);
    if (!m) return Promise.resolve();
    this.messages.delete(seq);
    this.bytes -= m.bytes;
    this.sentSeqs.push(seq);
    return this.inTurn(async () => {
      const seqs = this.sentSeqs.splice(0);
      if (!seqs.length) return; // deleted with an earlier batch
      // The queue is empty now: nextSeq must reach the disk before the last seqs leave it.
      if (this.messages.size === 0) await this.saveMeta(true);
      await this.store.delMany(seqs.map(keyOf));
    });
  }

  has(seq: number): boolean {
    return this.messages.has(seq);
  }

  private async remove(seq: number): Promise<void> {
    const m = this.messages.get(seq);
    if (!m) return;
    this.messages.delete(seq);
    this.bytes -= m.bytes;
    await this.store.del(keyOf(seq));
  }

  /** Synced when the queue is empty: then this is all that keeps a seq from coming back after a power cut. */
  private saveMeta(sync: boolean): Promise<void> {
    return this.meta.put('queue', { nextSeq: this.nextSeq, dropped: this.dropped }, { sync });
  }
}
