// The automations' clock: at each local minute, the schedules due, sunrise and sunset (with each
// trigger's offset) at the site's place, and a look at the cloud sync queue.
import { firesAt, minuteOf, msToNextMinute, parseSchedule, type Schedule } from '../../lib/schedule.ts';
import { sunTimes } from '../../lib/sun.ts';
import type { Trigger } from './automations.schemas.ts';
import type { Fact } from './triggers.ts';

const MINUTE = 60_000;

export class AutomationClock {
  private timer: NodeJS.Timeout | undefined;
  private readonly parsed = new Map<string, Schedule>();
  private lastMinute = minuteOf(Date.now());

  constructor(
    private readonly triggers: () => Trigger[],
    private readonly site: { latitude: number; longitude: number } | null,
    private readonly tell: (fact: Fact) => void,
    /** Once a minute, besides: the checks that are not a matter of time (the sync queue). */
    private readonly everyMinute: () => void,
  ) {}

  start(): void {
    this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The facts of one local minute (those of the minutes a stalled timer skipped too, not older). */
  tick(minute: number): void {
    const at = new Date(minute);
    const told = new Set<string>();
    for (const t of this.triggers()) {
      if (t.kind === 'schedule') {
        let s = this.parsed.get(t.cron);
        if (!s) this.parsed.set(t.cron, (s = parseSchedule(t.cron)));
        if (firesAt(s, at) && !told.has(t.cron)) {
          told.add(t.cron);
          this.tell({ kind: 'schedule', cron: t.cron });
        }
      } else if (t.kind === 'sun' && this.site) {
        // Today's (UTC) and the neighbouring days' times: an offset may cross midnight.
        const key = `${t.event}${t.offsetMinutes}`;
        if (told.has(key)) continue;
        for (const day of [-1, 0, 1]) {
          const times = sunTimes(new Date(minute + day * 86_400_000), this.site.latitude, this.site.longitude);
          if (times && minuteOf(times[t.event].getTime() + t.offsetMinutes * MINUTE) === minute) {
            told.add(key);
            this.tell({ kind: 'sun', event: t.event, offsetMinutes: t.offsetMinutes });
          }
        }
      }
    }
  }

  private arm() {
    this.timer = setTimeout(() => {
      const now = minuteOf(Date.now());
      for (let m = Math.max(this.lastMinute + MINUTE, now - 5 * MINUTE); m <= now; m += MINUTE) this.tick(m);
      this.lastMinute = now;
      this.everyMinute();
      this.arm();
    }, msToNextMinute());
    this.timer.unref();
  }
}
