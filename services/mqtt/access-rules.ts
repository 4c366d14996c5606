// Who may read and publish what on the site broker. Devices read their own command topics, the
// box's status and what they were granted; they publish under fogedge/devices/<id>/ only. App
// users read what their role may see and publish camera switches (and Home Assistant's birth
// message). Checked at subscribe (mayRead), at every delivery (mayReceive) and at publish.
import { can, type Permission, type Role } from '../../lib/permissions.ts';
import { SWITCH_SET, topics } from '../../lib/topics.ts';

export type Identity =
  | { kind: 'device'; id: string; grants: string[]; prefix: string }
  | { kind: 'user'; username: string; role: Role; credentialId?: string };
export const identityKey = (i: Identity) => (i.kind === 'device' ? `device:${i.id}` : `user:${i.username}`);

/** Topic roots an app user may read, by the permission they need. */
const USER_READS: Array<[string, Permission]> = [
  [topics.status, 'live.view'],
  [topics.modeState, 'live.view'],
  [topics.cameras, 'live.view'],
  [topics.events, 'events.view'],
  [topics.reviews, 'events.view'],
  [topics.devices, 'devices.manage'],
  ['homeassistant/#', 'live.view'],
];

/** The filters whose topics `who` may read. */
function readRoots(who: Identity): string[] {
  if (who.kind === 'device') return [topics.deviceCommand(who.id, '#'), topics.status, ...who.grants];
  return [
    ...USER_READS.filter(([, permission]) => can(who.role, permission)).map(([root]) => root),
    `${topics.user(who.username)}/#`,
  ];
}

/** Whether `who` may read everything `filter` (a topic, or a filter with wildcards) matches: checked at subscribe. */
export function mayRead(who: Identity | undefined, filter: string): boolean {
  return who !== undefined && readRoots(who).some((root) => filterWithin(filter, root));
}

/** Per identity, its read roots made into one test of a topic: built once, run at every delivery. */
const topicReaders = new WeakMap<Identity, (topic: string) => boolean>();

/** Whether `who` may be sent a message on `topic` (no wildcards): mayRead's answer, at the cost of a lookup. */
export function mayReceive(who: Identity | undefined, topic: string): boolean {
  if (!who) return false;
  let reads = topicReaders.get(who);
  if (!reads) topicReaders.set(who, (reads = topicTest(readRoots(who))));
  return reads(topic);
}

/** One function matching a topic against MQTT filters: exact names, `<prefix>/#`, and any others as a regular expression. */
function topicTest(filters: string[]): (topic: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const patterns: RegExp[] = [];
  const literal = (level: string) => level.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const filter of filters) {
    const levels = filter.split('/');
    const multi = levels.at(-1) === '#';
    const fixed = multi ? levels.slice(0, -1) : levels;
    if (!fixed.includes('+') && !fixed.includes('#')) {
      if (!multi) exact.add(filter);
      else if (fixed.length === 0) patterns.push(/^[^$]/);
      else {
        exact.add(fixed.join('/')); // `a/#` matches `a` too
        prefixes.push(`${fixed.join('/')}/`);
      }
      continue;
    }
    // '+' takes a level that is not empty, as filterWithin does.
    const body = fixed.map((level) => (level === '+' ? '[^/]+' : literal(level))).join('/');
    patterns.push(new RegExp(multi ? `^${body}(?:/.*)?$` : `^${body}$`));
  }
  // One regular expression for all of them: a delivery is one native match, not a walk of lists.
  const alternatives = [
    ...[...exact].map((t) => `${literal(t)}$`),
    ...prefixes.map((p) => literal(p)),
    ...patterns.map((r) => r.source.slice(1)),
  ];
  if (!alternatives.length) return () => false;
  const test = new RegExp(`^(?:${alternatives.join('|')})`);
  return (topic) => test.test(topic);
}

/** Whether `who` may publish to `topic` (retained or not). */
export function mayPublish(
  who: Identity | undefined,
  topic: string,
  retain: boolean,
  discoveryPrefix: string | null,
): boolean {
  if (topic.startsWith('$')) return false;
  if (who?.kind === 'device') return topic.startsWith(who.prefix);
  // App users send commands only (switches come with the command topics), and Home Assistant
  // its birth message; nothing else.
  if (who?.kind === 'user')
    return (
      (SWITCH_SET.test(topic) && can(who.role, 'cameras.manage')) ||
      (topic === topics.modeSet && !retain && can(who.role, 'modes.switch')) ||
      (discoveryPrefix !== null && topic === `${discoveryPrefix}/status` && !retain)
    );
  return false;
}

/** A client for the log: `device "x"`, `user "y"`, or its client id. */
export const describe = (who: Identity | undefined, clientId = '?') =>
  who?.kind === 'device'
    ? `device "${who.id}"`
    : who?.kind === 'user'
      ? `user "${who.username}"`
      : `client "${clientId}"`;

/** Whether every topic the filter can match is also matched by `allowed` (both MQTT filters). */
export function filterWithin(filter: string, allowed: string): boolean {
  const f = filter.split('/');
  const a = allowed.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = a[i];
    if (level === '#') return true;
    if (level === undefined) return false;
    if (f[i] === '#') return false; // wider than `allowed` from here
    if (level === '+') {
      if (f[i] === '') return false;
      continue;
    }
    if (f[i] === '+' || f[i] !== level) return false;
  }
  // `a/#` also matches `a` itself (MQTT's multi-level wildcard covers the parent level).
  return f.length === a.length || (f.length === a.length - 1 && a[f.length] === '#');
}
