// Local time-of-day windows ("22:00" to "06:00"), for notification rules, upload schedules and
// automations' conditions.
import { z } from 'zod';

/** A local time of day, HH:MM. */
export const TimeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM, 00:00 to 23:59');

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether a local time (minutes after midnight) is inside from..to; a window past midnight wraps. */
export function withinHours(minutes: number, from?: string, to?: string): boolean {
  if (!from && !to) return true;
  const a = from ? minutesOf(from) : 0;
  const b = to ? minutesOf(to) : 24 * 60;
  return a <= b ? minutes >= a && minutes < b : minutes >= a || minutes < b;
}

/** Minutes after local midnight of a moment. */
export const localMinutes = (at: Date) => at.getHours() * 60 + at.getMinutes();
