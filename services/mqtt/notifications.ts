// Which users hear about an event: their notifications are on, their role may see events,
// and one of their rules matches the camera, label, zones and the box's local time of day.
import type { Notifications } from '../accounts/accounts.schemas.ts';
import { localMinutes, withinHours } from '../../lib/hours.ts';

interface EventFacts {
  camera: string;
  label: string;
  zones?: string[];
  start: string;
}

export function wantsNotification(notifications: Notifications, e: EventFacts): boolean {
  if (!notifications.enabled) return false;
  if (notifications.rules.length === 0) return true;
  const minutes = localMinutes(new Date(e.start));
  return notifications.rules.some(
    (r) =>
      (r.cameras.length === 0 || r.cameras.includes(e.camera)) &&
      (r.labels.length === 0 || r.labels.includes(e.label)) &&
      (r.zones.length === 0 || r.zones.some((z) => e.zones?.includes(z))) &&
      withinHours(minutes, r.from, r.to),
  );
}
