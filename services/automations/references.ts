// What an automation names (cameras and their zones, devices, modes, users, webhook addresses),
// checked at save against what the box has, and found again when one of them is removed.
import type { Automation } from './automations.schemas.ts';
import { webhookAllowed } from './steps.ts';

export interface SiteNames {
  cameras: Map<string, string[]>; // camera → its zones
  devices: Set<string>;
  modes: Set<string>;
  users: Set<string>;
  webhookAllow: string[];
  hasPlace: boolean;
}

type Parts = Pick<Automation, 'triggers' | 'conditions' | 'actions'>;

/** Each thing the automation names, with the field that names it. */
export function namesOf(
  a: Parts,
): Array<{ field: string; kind: 'camera' | 'device' | 'mode' | 'user' | 'zone'; name: string; camera?: string }> {
  const out: ReturnType<typeof namesOf> = [];
  const lists = { triggers: a.triggers, conditions: a.conditions, actions: a.actions } as Record<
    string,
    Array<Record<string, unknown>>
  >;
  for (const [list, items] of Object.entries(lists)) {
    items.forEach((item, i) => {
      const at = (key: string) => `${list}.${i}.${key}`;
      const str = (key: string) => (typeof item[key] === 'string' ? (item[key] as string) : undefined);
      if (str('camera')) out.push({ field: at('camera'), kind: 'camera', name: str('camera')! });
      if (str('zone'))
        out.push({
          field: at('zone'),
          kind: 'zone',
          name: str('zone')!,
          ...(str('camera') ? { camera: str('camera')! } : {}),
        });
      if (str('device')) out.push({ field: at('device'), kind: 'device', name: str('device')! });
      for (const key of ['mode', 'to', 'from'])
        if (str(key)) out.push({ field: at(key), kind: 'mode', name: str(key)! });
      if (Array.isArray(item['in']))
        (item['in'] as string[]).forEach((m, j) => out.push({ field: `${at('in')}.${j}`, kind: 'mode', name: m }));
      if (Array.isArray(item['users']))
        (item['users'] as string[]).forEach((u, j) =>
          out.push({ field: `${at('users')}.${j}`, kind: 'user', name: u }),
        );
    });
  }
  return out;
}

/** The first thing named that the site does not have, as a sentence and its field; undefined when all is there. */
export function missingName(a: Parts, site: SiteNames): { field: string; message: string } | undefined {
  for (const n of namesOf(a)) {
    const there =
      n.kind === 'camera'
        ? site.cameras.has(n.name)
        : n.kind === 'zone'
          ? n.camera === undefined
            ? [...site.cameras.values()].some((zones) => zones.includes(n.name))
            : (site.cameras.get(n.camera)?.includes(n.name) ?? true) // an unknown camera is told of by itself
          : n.kind === 'device'
            ? site.devices.has(n.name)
            : n.kind === 'mode'
              ? site.modes.has(n.name)
              : site.users.has(n.name);
    if (!there)
      return {
        field: n.field,
        message:
          n.kind === 'zone'
            ? `${n.field}: no camera${n.camera ? ` "${n.camera}"` : ''} has a zone "${n.name}"`
            : `${n.field}: the box has no ${n.kind} "${n.name}"`,
      };
  }
  const hook = a.actions.findIndex((x) => x.kind === 'webhook' && !webhookAllowed(x.url, site.webhookAllow));
  if (hook >= 0)
    return {
      field: `actions.${hook}.url`,
      message: `actions.${hook}.url: ${(a.actions[hook] as { url: string }).url} is not under an address the admin allowed (automations.webhookAllow: ${site.webhookAllow.join(', ') || 'none'})`,
    };
  const sun = a.triggers.findIndex((t) => t.kind === 'sun');
  if (sun >= 0 && !site.hasPlace)
    return {
      field: `triggers.${sun}`,
      message: `triggers.${sun}: sunrise and sunset need the site's place (site.latitude and site.longitude in the config)`,
    };
  return undefined;
}
