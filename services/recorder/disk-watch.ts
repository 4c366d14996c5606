// The emergency clean-up: retention runs once a minute, which is late when the disk fills fast
// (a camera's bitrate jumps, a big file lands on the same disk). Free space is read every few
// seconds; when it is under the floor, or would be before the next regular run at the pace it
// is going down, retention runs now. A run that freed nothing is not repeated until the next
// regular one: a disk nothing of ours can free is reported full, not retried in a loop.

export interface DiskWatchOptions {
  freeBytes(): Promise<number>;
  floorBytes: number;
  /** Time between regular retention runs, ms. */
  regularMs: number;
  /** Runs retention now; says how many bytes it freed. */
  runNow(): Promise<number>;
  everyMs?: number;
}

export class DiskWatch {
  private last: { at: number; free: number } | undefined;
  private idleUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(private readonly options: DiskWatchOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.check().catch(() => undefined), this.options.everyMs ?? 2000).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look at the disk; whether retention ran. */
  async check(now = Date.now()): Promise<boolean> {
    if (this.checking) return false;
    this.checking = true;
    try {
      const { floorBytes, regularMs } = this.options;
      const free = await this.options.freeBytes();
      const before = this.last;
      this.last = { at: now, free };
      const pace = before && now > before.at ? Math.max(0, (before.free - free) / (now - before.at)) : 0;
      const due = free < floorBytes || free - pace * regularMs < floorBytes;
      if (!due || now < this.idleUntil) return false;
      const freed = await this.options.runNow();
      if (freed === 0) this.idleUntil = now + regularMs;
      return true;
    } finally {
      this.checking = false;
    }
  }
}
