// The mode schedule's clock: at each local minute, the last entry due switches the mode. A box
// that was off when an entry fell due switches at its start (within a day): the mode is what the
// schedule says it should be by now.
import type { LoggerInstance } from 'moleculer';
import type { Collection } from '../../lib/store.ts';
import { firesAt, minuteOf, msToNextMinute, parseSchedule } from '../../lib/schedule.ts';
import type { ScheduleEntry } from './modes.schemas.ts';

const MINUTE = 60_000;
/** How far back a start looks for an entry it missed. */
const CATCH_UP_MS = 24 * 60 * MINUTE;

export class ModeClock {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly checked: Collection<number>,
    private readonly entries: () => ScheduleEntry[],
    private readonly switchTo: (mode: string) => Promise<void>,
    private readonly log: LoggerInstance,
  ) {}

  async start(): Promise<void> {
    await this.tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** The minutes from the last one checked up to now: the mode of the last entry due, if any. */
  private async tick() {
    if (this.stopped) return;
    const now = minuteOf(Date.now());
    const last = (await this.checked.get('last').catch(() => undefined)) ?? now - MINUTE;
    const from = Math.max(last + MINUTE, now - CATCH_UP_MS);
    const schedules = this.entries().map((e) => ({ mode: e.mode, schedule: parseSchedule(e.cron) }));
    let due: string | undefined;
    for (let minute = from; minute <= now && schedules.length; minute += MINUTE) {
      const at = new Date(minute);
      for (const s of schedules) if (firesAt(s.schedule, at)) due = s.mode;
    }
    if (due) await this.switchTo(due);
    await this.checked
      .put('last', now, { sync: true })
      .catch((err: Error) => this.log.debug(`mode clock: ${err.message}`));
    if (this.stopped) return;
    // The next tick just after the next minute starts.
    this.timer = setTimeout(() => void this.tick(), msToNextMinute());
    this.timer.unref();
  }
}
