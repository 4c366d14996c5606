// Inputs and outputs of the accounts service; the same schemas document the HTTP API.
import { z } from 'zod';
import { ROLES } from '../../lib/permissions.ts';
import { TimeOfDay } from '../../lib/hours.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const Username = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{1,31}$/, '2-32 characters: lower-case letters, digits, dot, dash, underscore')
  .describe('account name');
export const Password = z.string().min(10, 'at least 10 characters').max(256, 'at most 256 characters');
export const Role = z.enum(ROLES);

export const SetupInput = z.strictObject({ username: Username, password: Password });
export const LoginInput = z.strictObject({
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(256),
});
export const CreateUserInput = z.strictObject({ username: Username, password: Password, role: Role });
export const UpdateUserInput = z.strictObject({
  username: Username,
  role: Role.optional(),
  password: Password.optional(),
});
export const UsernameInput = z.strictObject({ username: Username });
export const ChangePasswordInput = z.strictObject({
  currentPassword: z.string().min(1).max(256),
  newPassword: Password,
});
export const AuthenticateInput = z.strictObject({ credential: z.string().min(1).max(512) });
export const CreateTokenInput = z.strictObject({
  name: z.string().min(1).max(64),
  /** Omit for a token that lasts until revoked. */
  expiresInDays: z.number().int().min(1).max(3650).optional(),
});
export const TokenIdInput = z.strictObject({ id: z.string().regex(/^[a-f0-9]{16}$/, 'a token id') });

export const PublicUser = z.object({
  username: z.string(),
  role: Role,
  createdAt: z.string(),
});
export type PublicUser = z.infer<typeof PublicUser>;

export const TokenInfo = z.object({
  id: z.string(),
  name: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});
export type TokenInfo = z.infer<typeof TokenInfo>;

export const SignedIn = z.object({ user: PublicUser, session: z.string(), expiresAt: z.string() });
export type SignedIn = z.infer<typeof SignedIn>;

export type CredentialKind = 'session' | 'token';

/** Who a session or token belongs to (accounts.authenticate's answer). */
export interface Authenticated {
  user: PublicUser;
  kind: CredentialKind;
  credentialId: string;
}
export const NewToken = z.object({ token: z.string().describe('shown once: keep it safe'), info: TokenInfo });

/** Which events a user is told about: any rule matches (no rules: every event). Empty lists mean any. */
export const NotificationRule = z.strictObject({
  cameras: z.array(z.string().min(1).max(64)).max(64).default([]),
  labels: z.array(z.string().min(1).max(40)).max(80).default([]),
  zones: z.array(z.string().min(1).max(32)).max(32).default([]),
  /** Box local time; from after to (22:00 to 06:00) spans midnight. */
  from: TimeOfDay.optional(),
  to: TimeOfDay.optional(),
});
export const Notifications = z.strictObject({
  enabled: z.boolean().default(false),
  rules: z.array(NotificationRule).max(32).default([]),
});
export type Notifications = z.output<typeof Notifications>;

export const ExistsInput = z.strictObject({ username: z.string().max(200) });
export const SetAdminInput = z.strictObject({ username: Username, password: Password });

/** A user as the notifier needs them: who, their role, and what they want to hear. */
export interface NotificationTarget {
  username: string;
  role: z.infer<typeof Role>;
  notifications: Notifications;
}

/** What an account change says on the bus (who changed, by whom). */
export const PairedBrowser = z.object({
  id: z.string(),
  username: z.string(),
  name: z.string(),
  pairedAt: z.string(),
  lastUsedAt: z.string().nullable(),
});
export type PairedBrowser = z.infer<typeof PairedBrowser>;
export const BrowserInvitation = z.object({
  invitation: z.string().describe('its id, which a pairing offer names'),
  secret: z.string().describe('shown once, in the link or QR code; only its hash is kept'),
  expiresAt: z.string(),
});
export type BrowserInvitation = z.infer<typeof BrowserInvitation>;
const HexId = z.string().regex(/^[a-f0-9]{16}$/, 'an id of 16 hex digits');
export const BrowserIdInput = z.strictObject({ id: HexId });
export const InvitationIdInput = z.strictObject({ invitation: HexId });
export const PairBrowserInput = z.strictObject({
  invitation: HexId,
  secret: z.string().min(16).max(128),
  /** The browser's ECDSA P-256 public key, SPKI DER in base64 (WebCrypto's "spki" export). */
  publicKey: z.string().min(40).max(1024),
  name: z.string().trim().min(1).max(80),
});
export const RemoteSignerInput = z.strictObject({
  browser: HexId,
  signed: z.string().max(80 * 1024),
  signature: z.string().max(200),
});

export interface AccountChanged {
  username: string;
  by: string;
  changed?: string[];
}

declare module '../../lib/bus.ts' {
  interface Events {
    'account.updated': AccountChanged;
    'account.deleted': AccountChanged;
    'account.password.changed': AccountChanged;
    /** A token or session revoked: what was signed in with it is cut off. */
    'account.credential.revoked': { credentialId: string; username: string };
    /** A browser paired for remote access. */
    'account.browser.paired': { id: string; username: string; name: string };
  }
  interface Actions {
    'accounts.authenticate': { input: z.input<typeof AuthenticateInput>; answer: Authenticated };
    /** Internal: whether a user of this name exists (a device may not take a user's name). */
    'accounts.exists': { input: z.input<typeof ExistsInput>; answer: { exists: boolean } };
    /** Every user and their role (users.manage; internal callers: automations check their owner's role). */
    'accounts.listUsers': { input: Record<string, never>; answer: PublicUser[] };
    /** Internal: every user with their notification rules. */
    'accounts.notificationTargets': { input: Record<string, never>; answer: NotificationTarget[] };
    /** Internal (the set-admin command): creates the first admin or resets an admin's password. */
    'accounts.setAdmin': { input: z.input<typeof SetAdminInput>; answer: { created: boolean } };
    /** An invitation to pair a browser for remote access, for the caller. */
    'accounts.inviteBrowser': { input: Record<string, never>; answer: BrowserInvitation };
    /** Internal: whether an invitation is open (a pairing offer may be answered). */
    'accounts.invitationOpen': { input: z.input<typeof InvitationIdInput>; answer: { open: boolean } };
    /** Internal (over the box's encrypted channel only): pairs a browser, using up its invitation. */
    'accounts.pairBrowser': { input: z.input<typeof PairBrowserInput>; answer: PairedBrowser };
    /** The caller's paired browsers (an admin's: everyone's). */
    'accounts.browsers': { input: Record<string, never>; answer: PairedBrowser[] };
    'accounts.unpairBrowser': { input: z.input<typeof BrowserIdInput>; answer: PairedBrowser };
    /** Internal: who signed a remote offer (the browser's user and role now), or 401. */
    'accounts.remoteSigner': {
      input: z.input<typeof RemoteSignerInput>;
      answer: { username: string; role: z.infer<typeof Role>; browser: string };
    };
  }
}
