// Cron-like schedules in the box's local time: five fields (minute hour day-of-month month
// day-of-week), each `*`, a number, a range `a-b`, a list `a,b`, a step `*/n` or `a-b/n`; days of
// the week 0-7 (0 and 7 are Sunday) or mon..sun. As in cron, when both day fields are restricted
// a day matching either one fires.

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface Schedule {
  minutes: Set<number>;
  hours: Set<number>;
  daysOfMonth: Set<number>;
  months: Set<number>;
  daysOfWeek: Set<number>;
  /** Whether the day fields were restricted ('*' is not). */
  anyDayOfMonth: boolean;
  anyDayOfWeek: boolean;
}

export class ScheduleError extends Error {}

function parseValue(text: string, field: (typeof FIELDS)[number]): number {
  const day = field.name === 'day of week' ? DAY_NAMES.indexOf(text.toLowerCase()) : -1;
  const n = day >= 0 ? day : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < field.min || n > field.max)
    throw new ScheduleError(`${field.name} "${text}" is not a value from ${field.min} to ${field.max}`);
  return n;
}

function parseField(text: string, field: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const [range, stepText] = part.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1)
      throw new ScheduleError(`${field.name}: step "${stepText}" is not a whole number above 0`);
    let from: number;
    let to: number;
    if (range === '*') [from, to] = [field.min, field.max];
    else if (range?.includes('-')) {
      const [a, b] = range.split('-');
      [from, to] = [parseValue(a ?? '', field), parseValue(b ?? '', field)];
      if (from > to) throw new ScheduleError(`${field.name}: range "${range}" runs backwards`);
    } else {
      from = parseValue(range ?? '', field);
      to = stepText === undefined ? from : field.max;
    }
    for (let v = from; v <= to; v += step) out.add(field.name === 'day of week' && v === 7 ? 0 : v);
  }
  return out;
}

/** Parses a five-field cron expression; a ScheduleError names the field that is wrong. */
export function parseSchedule(expression: string): Schedule {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5)
    throw new ScheduleError(
      `"${expression}" has ${parts.length} fields; a schedule has 5: minute hour day-of-month month day-of-week (e.g. "0 22 * * *")`,
    );
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = parts.map((p, i) => parseField(p, FIELDS[i]!));
  return {
    minutes: minutes!,
    hours: hours!,
    daysOfMonth: daysOfMonth!,
    months: months!,
    daysOfWeek: daysOfWeek!,
    anyDayOfMonth: parts[2] === '*',
    anyDayOfWeek: parts[4] === '*',
  };
}

/** The problem with an expression, or undefined when it parses. */
export function scheduleProblem(expression: string): string | undefined {
  try {
    parseSchedule(expression);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Whether the schedule fires in the local minute that holds `at`. */
export function firesAt(s: Schedule, at: Date): boolean {
  if (!s.minutes.has(at.getMinutes()) || !s.hours.has(at.getHours()) || !s.months.has(at.getMonth() + 1)) return false;
  const dom = s.daysOfMonth.has(at.getDate());
  const dow = s.daysOfWeek.has(at.getDay());
  if (s.anyDayOfMonth) return dow;
  if (s.anyDayOfWeek) return dom;
  return dom || dow;
}

/** The start of the local minute that holds `at`. */
export const minuteOf = (at: Date | number) => Math.floor(new Date(at).getTime() / 60_000) * 60_000;

/** Milliseconds until just after the next local minute starts: when a minute clock ticks next. */
export const msToNextMinute = (now = Date.now()) => minuteOf(now) + 60_000 - now + 50;
