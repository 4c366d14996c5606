// Whether the site is as an automation asks, at the moment it fires: each condition's answer
// and why, for the run's trace.
import { localMinutes, withinHours } from '../../lib/hours.ts';
import type { DeviceStates } from '../devices/devices.schemas.ts';
import type { Condition } from './automations.schemas.ts';
import { fieldOf, sameValue } from './triggers.ts';

export interface SiteNow {
  mode: string;
  now: Date;
  deviceStates(device: string): DeviceStates;
  /** Whether an event of the label (on the camera) started since `since`. */
  eventSince(label: string, camera: string | undefined, since: Date): Promise<boolean>;
}

export async function check(c: Condition, site: SiteNow): Promise<{ ok: boolean; detail: string }> {
  switch (c.kind) {
    case 'mode':
      return { ok: c.in.includes(site.mode), detail: `mode is ${site.mode} (wanted ${c.in.join(' or ')})` };
    case 'time': {
      const ok = withinHours(localMinutes(site.now), c.from, c.to);
      return {
        ok,
        detail: `local time ${site.now.toTimeString().slice(0, 5)} ${ok ? 'within' : 'outside'} ${c.from}-${c.to}`,
      };
    }
    case 'device.state': {
      const entry = site.deviceStates(c.device)[c.topic];
      if (!entry) return { ok: false, detail: `${c.device}/${c.topic} has sent nothing yet` };
      const value = c.field ? fieldOf(entry.payload, c.field) : (entry.value ?? entry.payload);
      const ok = sameValue(value, c.equals);
      return {
        ok,
        detail: `${c.device}/${c.topic}${c.field ? ` ${c.field}` : ''} is ${JSON.stringify(value) ?? 'absent'} (wanted ${JSON.stringify(c.equals)}, since ${entry.at})`,
      };
    }
    case 'no.event': {
      const since = new Date(site.now.getTime() - c.minutes * 60_000);
      const seen = await site.eventSince(c.label, c.camera, since);
      return {
        ok: !seen,
        detail: `${seen ? 'a' : 'no'} ${c.label} event${c.camera ? ` on ${c.camera}` : ''} in the last ${c.minutes} min`,
      };
    }
  }
}
