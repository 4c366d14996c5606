// The durable outbox: every item waiting to go up, in LevelDB (written with sync before the
// enqueue returns), with its progress per target, bounded by bytes. Kept in memory as well,
// in enqueue order, since the workers scan it on every pick.
import pLimit from 'p-limit';
import { makeRoom } from '../../lib/bounded-queue.ts';
import type { Collection } from '../../lib/store.ts';
import type { Resource } from './sync.schemas.ts';
import type { Part } from './targets.ts';

export interface Progress {
  attempts: number;
  /** Not before this (ms): the item's own backoff after a failure. */
  nextAt: number;
  lastError?: string;
  /** A multipart or block upload under way: resumed from these parts after a restart. */
  upload?: {
    id: string;
    parts: Part[];
    /** The part size it began with: a changed sync.partBytes must not move the offsets of a resumed upload. */
    partBytes?: number;
  };
}

export interface Item {
  /** Sorts in enqueue order. */
  id: string;
  resource: Resource;
  camera: string | null;
  /** Object name under the target's prefix: <box>/<camera>/<date>/<event>/<file>. */
  name: string;
  /** Relative to the data root. */
  file: string;
  /** The outbox's own copy (removed when every target has it), or a recording that stays. */
  ownsFile: boolean;
  bytes: number;
  sha256: string; // hex
  md5: string; // base64
  contentType: string;
  metadata: Record<string, string>;
  enqueuedAt: number;
  /** Targets still to receive it; a target that has it is removed. */
  pending: Record<string, Progress>;
}

/** What goes first when the queue is full: the lowest value, then the oldest. */
export const DROP_ORDER: Record<Resource, number> = { recordings: 0, clips: 1, snapshots: 2, events: 3, audit: 4 };

export type Admission = { admitted: true; dropped: Item[] } | { admitted: false; reason: string };

export class Outbox {
  private readonly items = new Map<string, Item>();
  private bytes = 0;
  private seq = 0;
  /**
   * Writes go one after another: LevelDB may finish two concurrent writes of one key in either
   * order, and two targets finishing the same item must not leave the older state on disk.
   */
  private readonly inTurn = pLimit(1);

  constructor(
    private readonly store: Collection<Item>,
    private readonly maxBytes: number,
  ) {}

  async load(): Promise<void> {
    for (const item of await this.store.values()) {
      this.items.set(item.id, item);
      this.bytes += item.bytes;
    }
  }

  /** Enqueue order survives restarts: time first, then a counter within the millisecond. */
  nextId(now = Date.now()): string {
    return `${String(now).padStart(15, '0')}-${String(this.seq++ % 1e6).padStart(6, '0')}`;
  }

  /** The oldest item is the first: the map keeps enqueue order (ids sort by it, and load in key order). */
  get size(): { items: number; bytes: number; oldest: number | null } {
    return { items: this.items.size, bytes: this.bytes, oldest: this.items.values().next().value?.enqueuedAt ?? null };
  }

  get(id: string): Item | undefined {
    return this.items.get(id);
  }

  all(): IterableIterator<Item> {
    return this.items.values();
  }

  /** Room for `item`, by the queues' one drop rule (lib/bounded-queue.ts); items being uploaded stay. */
  admit(item: Pick<Item, 'resource' | 'bytes'>, busy: (id: string) => boolean): Admission {
    if (item.bytes > this.maxBytes)
      return { admitted: false, reason: `larger than the whole queue (sync.maxQueueBytes ${this.maxBytes})` };
    const dropped = makeRoom(
      this.items.values(),
      { items: 0, bytes: this.bytes + item.bytes - this.maxBytes },
      DROP_ORDER[item.resource],
      (i) => DROP_ORDER[i.resource],
      (i) => i.bytes,
      (i) => busy(i.id),
    );
    if (!dropped)
      return {
        admitted: false,
        reason: `the queue is full (sync.maxQueueBytes ${this.maxBytes}) with items worth as much or more`,
      };
    return { admitted: true, dropped };
  }

  put(item: Item): Promise<void> {
    return this.inTurn(async () => {
      await this.store.put(item.id, item);
      const before = this.items.get(item.id);
      this.bytes += item.bytes - (before?.bytes ?? 0);
      this.items.set(item.id, item);
    });
  }

  remove(id: string): Promise<Item | undefined> {
    return this.inTurn(async () => {
      const item = this.items.get(id);
      if (!item) return undefined;
      await this.store.del(id);
      this.items.delete(id);
      this.bytes -= item.bytes;
      return item;
    });
  }

  /** The first item, in enqueue order, that `target` may take now. */
  next(target: string, now: number, usable: (item: Item) => boolean): Item | undefined {
    for (const item of this.items.values()) {
      const p = item.pending[target];
      if (p && p.nextAt <= now && usable(item)) return item;
    }
    return undefined;
  }

  /** When the earliest item now waiting on its own backoff may go (ms), for the worker's sleep. */
  earliestRetry(target: string): number | undefined {
    let at: number | undefined;
    for (const item of this.items.values()) {
      const p = item.pending[target];
      if (p && (at === undefined || p.nextAt < at)) at = p.nextAt;
    }
    return at;
  }

  pendingFor(target: string): { items: number; bytes: number; oldest: number | null } {
    let items = 0;
    let bytes = 0;
    let oldest: number | null = null;
    for (const item of this.items.values()) {
      if (!item.pending[target]) continue;
      items++;
      bytes += item.bytes;
      oldest = oldest === null ? item.enqueuedAt : Math.min(oldest, item.enqueuedAt);
    }
    return { items, bytes, oldest };
  }
}
