// Which users hear about an event: their notifications are on, their role may see events,
// and one of their rules matches the camera, label, zones and the box's local time of day.
import type { Notifications } from '../accounts/accounts.schemas.ts';

interface EventFacts {
  camera: string;
  label: string;
  zones?: string[];
  start: string;
}

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether a local time (minutes after midnight) is inside from..to; a window past midnight wraps. */
export function withinHours(minutes: number, from?: string, to?: string): boolean {
  if (!from && !to) return true;
  const a = from ? minutesOf(from) : 0;
  const b = to ? minutesOf(to) : 24 * 60;
  return a <= b ? minutes >= a && minutes < b : minutes >= a || minutes < b;
}

export function wantsNotification(notifications: Notifications, e: EventFacts): boolean {
  if (!notifications.enabled) return false;
  if (notifications.rules.length === 0) return true;
  const at = new Date(e.start);
  const minutes = at.getHours() * 60 + at.getMinutes();
  return notifications.rules.some(
    (r) =>
      (r.cameras.length === 0 || r.cameras.includes(e.camera)) &&
      (r.labels.length === 0 || r.labels.includes(e.label)) &&
      (r.zones.length === 0 || r.zones.some((z) => e.zones?.includes(z))) &&
      withinHours(minutes, r.from, r.to),
  );
}
