// What goes into the outbox: an item is admitted while the day's budget and the queue's byte
// bound allow, lower-value items making room for it; one enqueue at a time, so two events
// ending together never both find the same room.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pLimit from 'p-limit';
import { writeDurably } from '../../lib/durable-files.ts';
import type { Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths, dayDir } from '../../appliance/data-dir.ts';
import type { Item, Outbox, Progress } from './outbox.ts';
import type { Policy, Resource } from './sync.schemas.ts';

export interface Counters {
  dropped: number;
  overBudget: number;
  refused: number;
}

/** What a new item is made of; the outbox adds its id, hashes and targets. */
export interface NewItem {
  resource: Resource;
  camera: string | null;
  name: string;
  file: string;
  ownsFile: boolean;
  contentType: string;
  metadata: Record<string, string>;
}

export interface Log {
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

/** What the sync service's parts share: its settings, store and outbox, the plan in force, its log. */
export interface SyncParts {
  config: Config;
  paths: ReturnType<typeof dataPaths>;
  outbox: Outbox;
  meta: Collection<unknown>;
  policy(): Policy;
  /** Something the status shows has changed. */
  changed(): void;
  log: Log;
}

async function hashFile(file: string): Promise<{ bytes: number; sha256: string; md5: string }> {
  const sha256 = createHash('sha256');
  const md5 = createHash('md5');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    sha256.update(chunk);
    md5.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: sha256.digest('hex'), md5: md5.digest('base64') };
}

export class Intake {
  counters: Counters = { dropped: 0, overBudget: 0, refused: 0 };
  private readonly inTurn = pLimit(1);

  constructor(
    private readonly s: SyncParts,
    private readonly senders: {
      enabled(): string[];
      isBusy(item: string): boolean;
      wakeAll(): void;
    },
  ) {}

  /**
   * Loads the counters, and removes the files in outbox/ that no item owns: a crash between a
   * document's write and its enqueue, or the temporary file of a cut write, leaves one behind.
   */
  async load(): Promise<void> {
    const { paths, outbox, log } = this.s;
    this.counters = { ...this.counters, ...((await this.s.meta.get('counters')) as Counters | undefined) };
    const owned = new Set([...outbox.all()].filter((i) => i.ownsFile).map((i) => path.join(paths.root, i.file)));
    const left = (await readdir(paths.outbox)).map((f) => path.join(paths.outbox, f)).filter((f) => !owned.has(f));
    for (const file of left) await rm(file, { force: true, recursive: true });
    if (left.length) log.info(`sync: removed ${left.length} files in outbox/ that no queued item owns`);
  }

  enqueue(n: NewItem): Promise<Item | undefined> {
    return this.inTurn(() => this.admit(n));
  }

  /** A document made here (event JSON, snapshot, audit batch): the outbox keeps its own copy. */
  async enqueueBytes(n: Omit<NewItem, 'file' | 'ownsFile'>, data: Buffer | Readable): Promise<Item | undefined> {
    const { paths, outbox } = this.s;
    // Kept relative to the data root, as every item's file is.
    const file = path.relative(paths.root, path.join(paths.outbox, `${outbox.nextId()}${path.extname(n.name)}`));
    await writeDurably(path.join(paths.root, file), data);
    return this.enqueue({ ...n, file, ownsFile: true });
  }

  async remove(item: Item): Promise<void> {
    await this.s.outbox.remove(item.id);
    if (item.ownsFile) await rm(path.join(this.s.paths.root, item.file), { force: true });
    this.s.changed();
  }

  private saveCounters() {
    return this.s.meta.put('counters', this.counters, { sync: false });
  }

  private async admit(n: NewItem): Promise<Item | undefined> {
    const { paths, outbox, meta, log } = this.s;
    const policy = this.s.policy();
    const absolute = path.join(paths.root, n.file);
    const forget = async (why: string) => {
      if (n.ownsFile) await rm(absolute, { force: true });
      log.warn(`sync: ${n.resource} ${n.name} stays only on the box: ${why}`);
      return undefined;
    };
    const targets = this.senders.enabled();
    if (targets.length === 0) return forget('no cloud target is enabled');
    const hashes = await hashFile(absolute);
    if (policy.maxBytesPerDay !== null) {
      const budgetKey = `budget-${dayDir(Date.now())}`;
      const used = ((await meta.get(budgetKey)) as number | undefined) ?? 0;
      if (used + hashes.bytes > policy.maxBytesPerDay) {
        this.counters.overBudget++;
        await this.saveCounters();
        return forget(`today's budget of ${policy.maxBytesPerDay} bytes is used (${used} enqueued)`);
      }
      await meta.put(budgetKey, used + hashes.bytes);
    }
    const admission = outbox.admit({ resource: n.resource, bytes: hashes.bytes }, (id) => this.senders.isBusy(id));
    if (!admission.admitted) {
      this.counters.refused++;
      await this.saveCounters();
      return forget(admission.reason);
    }
    for (const d of admission.dropped) {
      await this.remove(d);
      this.counters.dropped++;
      log.warn(
        `sync: queue full: dropped ${d.resource} ${d.name} (${d.bytes} bytes, queued ${new Date(d.enqueuedAt).toISOString()}) for a newer ${n.resource}`,
      );
    }
    if (admission.dropped.length) await this.saveCounters();
    const item: Item = {
      ...n,
      ...hashes,
      id: outbox.nextId(),
      enqueuedAt: Date.now(),
      pending: Object.fromEntries(targets.map((t) => [t, { attempts: 0, nextAt: 0 } satisfies Progress])),
    };
    await outbox.put(item);
    this.s.changed();
    this.senders.wakeAll();
    return item;
  }
}
