// What happened, as the automations see it (a fact), and which triggers it fires.
import type { StoredEvent } from '../events/events.schemas.ts';
import type { Trigger } from './automations.schemas.ts';

export type Fact =
  | { kind: 'event'; on: 'start' | 'end' | 'loiter'; event: StoredEvent; loiterSeconds?: number }
  | { kind: 'count'; camera: string; label: string; zone: string | null; before: number; after: number }
  | { kind: 'device.message'; device: string; topic: string; payload: string; value: string | number | boolean | null }
  | { kind: 'device.connection'; device: string; state: 'online' | 'offline' }
  | { kind: 'camera.status'; camera: string; state: 'online' | 'offline' }
  | { kind: 'mode'; from: string; to: string; cause?: string[] }
  | { kind: 'schedule'; cron: string }
  | { kind: 'sun'; event: 'sunrise' | 'sunset'; offsetMinutes: number }
  | { kind: 'system'; what: 'disk.low' | 'sync.stuck' }
  | { kind: 'manual'; by: string };

/** Whether an MQTT filter (below a device's topics) matches a topic. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A field of a JSON text by its dotted path, or the text itself without a path; undefined when it is not there. */
export function fieldOf(payload: string, path: string | undefined): unknown {
  if (!path) return payload.trim();
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined; // not JSON: no field to read
  }
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Values compared as devices send them: true, "true" and "ON" are not the same; 1 and "1" are. */
export const sameValue = (a: unknown, b: unknown) => a !== undefined && String(a) === String(b);

export function fires(trigger: Trigger, fact: Fact): boolean {
  switch (trigger.kind) {
    case 'event': {
      if (fact.kind !== 'event' || fact.on !== trigger.on) return false;
      const e = fact.event;
      return (
        (trigger.camera === undefined || e.camera === trigger.camera) &&
        (trigger.label === undefined || e.label === trigger.label) &&
        (trigger.zone === undefined || e.zones.includes(trigger.zone)) &&
        (trigger.minScore === undefined || e.topScore >= trigger.minScore) &&
        (trigger.on !== 'loiter' || fact.loiterSeconds === trigger.loiterSeconds)
      );
    }
    case 'count':
      return (
        fact.kind === 'count' &&
        fact.camera === trigger.camera &&
        fact.label === trigger.label &&
        fact.zone === (trigger.zone ?? null) &&
        ((trigger.above !== undefined && fact.before <= trigger.above && fact.after > trigger.above) ||
          (trigger.below !== undefined && fact.before >= trigger.below && fact.after < trigger.below))
      );
    case 'device.message':
      return (
        fact.kind === 'device.message' &&
        fact.device === trigger.device &&
        topicMatches(trigger.topic, fact.topic) &&
        (!trigger.match ||
          sameValue(fieldOf(fact.payload, trigger.match.field), trigger.match.equals) ||
          // Without a field, the value as the device's type reads it matches too (a contact's "open").
          (!trigger.match.field && fact.value !== null && sameValue(fact.value, trigger.match.equals)))
      );
    case 'device.connection':
      return fact.kind === 'device.connection' && fact.device === trigger.device && fact.state === trigger.state;
    case 'camera.status':
      return (
        fact.kind === 'camera.status' &&
        fact.state === trigger.state &&
        (trigger.camera === undefined || fact.camera === trigger.camera)
      );
    case 'mode':
      return (
        fact.kind === 'mode' &&
        (trigger.to === undefined || fact.to === trigger.to) &&
        (trigger.from === undefined || fact.from === trigger.from)
      );
    case 'schedule':
      return fact.kind === 'schedule' && fact.cron === trigger.cron;
    case 'sun':
      return fact.kind === 'sun' && fact.event === trigger.event && fact.offsetMinutes === trigger.offsetMinutes;
    case 'system':
      return fact.kind === 'system' && fact.what === trigger.what;
  }
}

/** One line for the trace: what fired. */
export function describeFact(fact: Fact): string {
  switch (fact.kind) {
    case 'event':
      return `${fact.event.label} ${fact.on} on ${fact.event.camera} (event ${fact.event.id}, score ${fact.event.topScore.toFixed(2)}${fact.event.zones.length ? `, zones ${fact.event.zones.join(', ')}` : ''})`;
    case 'count':
      return `${fact.label} count on ${fact.camera}${fact.zone ? ` in ${fact.zone}` : ''}: ${fact.before} → ${fact.after}`;
    case 'device.message':
      return `${fact.device}/${fact.topic}: ${fact.payload.slice(0, 120)}`;
    case 'device.connection':
      return `device ${fact.device} ${fact.state}`;
    case 'camera.status':
      return `camera ${fact.camera} ${fact.state}`;
    case 'mode':
      return `mode ${fact.from} → ${fact.to}`;
    case 'schedule':
      return `schedule "${fact.cron}"`;
    case 'sun':
      return `${fact.event}${fact.offsetMinutes ? ` ${fact.offsetMinutes > 0 ? '+' : ''}${fact.offsetMinutes} min` : ''}`;
    case 'system':
      return fact.what === 'disk.low' ? 'the disk is full' : 'the cloud sync queue is stuck';
    case 'manual':
      return `run by hand by ${fact.by}`;
  }
}

/** Which device a fact comes from, to find its automations without looking at all of them. */
export const indexKeyOf = (fact: Fact): string =>
  fact.kind === 'device.message' || fact.kind === 'device.connection' ? `${fact.kind}:${fact.device}` : fact.kind;
export const indexKeyOfTrigger = (t: Trigger): string =>
  t.kind === 'device.message' || t.kind === 'device.connection' ? `${t.kind}:${t.device}` : t.kind;
