// Roles and what each may do. Actions declare the permission they need; the
// bus middleware in actions.ts checks it for callers that come from outside.
export const ROLES = ['admin', 'family', 'installer'] as const;
export type Role = (typeof ROLES)[number];

const GRANTS = {
  /** Anyone, signed in or not (login, first-run setup, health). */
  public: ['admin', 'family', 'installer'],
  /** Any signed-in user: own profile, own password, own API tokens. */
  self: ['admin', 'family', 'installer'],
  'live.view': ['admin', 'family', 'installer'],
  // The installer aims cameras but does not see what the household recorded.
  'events.view': ['admin', 'family'],
  'events.review': ['admin', 'family'],
  'recordings.view': ['admin', 'family'],
  'cameras.manage': ['admin', 'installer'],
  'devices.manage': ['admin', 'installer'],
  'settings.manage': ['admin', 'installer'],
  // Where the household's video goes (cloud targets), and widening what goes there, is the
  // household's choice: the installer and the operator may only narrow it or set limits.
  'cloud.manage': ['admin'],
  'system.view': ['admin', 'family', 'installer'],
  // The site's mode (Home, Away, Night): anyone of the household switches it, the operator too
  // (remote support); what a mode does is the admin's.
  'modes.switch': ['admin', 'family', 'installer'],
  'modes.manage': ['admin'],
  // Automations run as their owner, with the owner's permissions.
  'automations.manage': ['admin', 'family'],
  // Sending a device a command (a siren, a light) on its command topic.
  'devices.command': ['admin', 'family', 'installer'],
  'users.manage': ['admin'],
} as const satisfies Record<string, readonly Role[]>;

export type Permission = keyof typeof GRANTS;

export function can(role: Role, permission: Permission): boolean {
  return (GRANTS[permission] as readonly Role[]).includes(role);
}

export function permissionsOf(role: Role): Permission[] {
  return (Object.keys(GRANTS) as Permission[]).filter((p) => can(role, p));
}
