// balena's update lock: while the file exists the supervisor does not restart the box's
// containers for a new release (a firmware campaign or the box's own update must not be cut in
// the middle). Taken with O_EXCL, as balena's `lockfile` does, and held while any holder in this
// process needs it; a lock file left by a crash is taken over (this process is its only writer).
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Where balena's supervisor looks for the lock; the folder exists only in a balena container. */
export const BALENA_LOCK_FILE = '/tmp/balena/updates.lock';
export const defaultLockFile = () => (existsSync(path.dirname(BALENA_LOCK_FILE)) ? BALENA_LOCK_FILE : null);

export class UpdateLock {
  private readonly holders = new Set<string>();

  /** `file` null: nothing to lock (not on balena). */
  constructor(private readonly file: string | null) {}

  get held(): string[] {
    return [...this.holders];
  }

  /** Holds the lock for `why` (named in the file) until the returned function is called. */
  async hold(why: string): Promise<() => Promise<void>> {
    const key = `${why} ${Math.random().toString(36).slice(2)}`;
    this.holders.add(key);
    if (this.file && this.holders.size === 1) {
      await mkdir(path.dirname(this.file), { recursive: true });
      await writeFile(this.file, `${process.pid} ${why}\n`);
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.holders.delete(key);
      if (this.file && this.holders.size === 0) await rm(this.file, { force: true });
    };
  }
}
