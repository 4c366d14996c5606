// One small typed wrapper over LevelDB: a store per service under the data root,
// collections as sublevels, JSON values, `<collection>!<id>` keys.
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import { NotFoundError } from './errors.ts';

export interface ListOptions {
  gte?: string;
  lt?: string;
  reverse?: boolean;
  limit?: number;
}

/** The sublevel calls we use; `sync` is classic-level's, passed through to the root db. */
interface Sub<T> {
  get(key: string): Promise<T | undefined>;
  put(key: string, value: T, options: { sync: boolean }): Promise<void>;
  del(key: string, options: { sync: boolean }): Promise<void>;
  batch(
    operations: Array<{ type: 'del'; key: string } | { type: 'put'; key: string; value: T }>,
    options: { sync: boolean },
  ): Promise<void>;
  iterator(options: ListOptions): AsyncIterable<[string, T]>;
  keys(options: ListOptions): AsyncIterable<string>;
}

export class Collection<T> {
  constructor(private readonly db: Sub<T>) {}

  async get(id: string): Promise<T | undefined> {
    return (await this.db.get(id)) ?? undefined;
  }

  /** The item, or a 404 that names it: `Device "x" not found`. */
  async require(id: string, what: string): Promise<T> {
    const value = await this.get(id);
    if (value === undefined) throw new NotFoundError(what, id);
    return value;
  }

  /** Durable by default: the write reaches the disk before the promise resolves. */
  async put(id: string, value: T, options: { sync?: boolean } = {}): Promise<void> {
    await this.db.put(id, value, { sync: options.sync ?? true });
  }

  async del(id: string, options: { sync?: boolean } = {}): Promise<void> {
    await this.db.del(id, { sync: options.sync ?? true });
  }

  /** Several deletes in one write: one sync to the disk for all of them. */
  async delMany(ids: string[], options: { sync?: boolean } = {}): Promise<void> {
    if (ids.length)
      await this.db.batch(
        ids.map((key) => ({ type: 'del' as const, key })),
        { sync: options.sync ?? true },
      );
  }

  /** Several puts in one write: one call into LevelDB (and one sync) for all of them. */
  async putMany(items: Array<[string, T]>, options: { sync?: boolean } = {}): Promise<void> {
    if (items.length)
      await this.db.batch(
        items.map(([key, value]) => ({ type: 'put' as const, key, value })),
        { sync: options.sync ?? true },
      );
  }

  async *entries(options: ListOptions = {}): AsyncGenerator<[string, T]> {
    yield* this.db.iterator(options);
  }

  async values(options: ListOptions = {}): Promise<T[]> {
    const out: T[] = [];
    for await (const [, value] of this.entries(options)) out.push(value);
    return out;
  }

  async keys(options: ListOptions = {}): Promise<string[]> {
    const out: string[] = [];
    for await (const key of this.db.keys(options)) out.push(key);
    return out;
  }

  async isEmpty(): Promise<boolean> {
    for await (const _ of this.db.keys({ limit: 1 })) return false;
    return true;
  }
}

export class Store {
  private constructor(private readonly db: Level<string, unknown>) {}

  static async open(dir: string): Promise<Store> {
    await mkdir(dir, { recursive: true });
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    return new Store(db);
  }

  collection<T>(name: string): Collection<T> {
    return new Collection<T>(this.db.sublevel<string, T>(name, { valueEncoding: 'json' }) as unknown as Sub<T>);
  }

  get status(): string {
    return this.db.status;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
