// Users, roles, sessions and API tokens of one box, kept in its LevelDB.
// Sessions (cookies) and tokens (scripts) are both credentials `fe<s|t>_<id>_<secret>`;
// only a SHA-256 of the secret is stored, so a copied database opens nothing.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible';
import type { Store } from '../../lib/store.ts';
import type { Role } from '../../lib/permissions.ts';
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  TooManyRequestsError,
  UnauthorizedError,
} from '../../lib/errors.ts';
import { dummyHash, hashPassword, verifyPassword } from '../../lib/secrets.ts';
import type {
  Authenticated,
  CredentialKind,
  Notifications,
  PublicUser,
  SignedIn,
  TokenInfo,
} from './accounts.schemas.ts';

interface UserRecord {
  username: string;
  role: Role;
  passwordHash: string;
  createdAt: string;
  notifications?: Notifications;
  /** Addresses this user signed in from lately: a stranger's guesses do not lock these out. */
  knownAddresses?: string[];
}

interface CredentialRecord {
  id: string;
  kind: CredentialKind;
  username: string;
  secretHash: string;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

export interface AccountsOptions {
  sessionTtlHours: number;
  maxFailuresPerAddress: number;
  maxFailuresPerAccount: number;
  failureWindowMinutes: number;
  /** A file whose presence lifts every sign-in lock-out (written by `fogedge unlock` on the box). */
  unlockFile?: string;
}

const KNOWN_ADDRESSES = 8;

const PREFIX: Record<CredentialKind, string> = { session: 'fes', token: 'fet' };
const LAST_USED_RESOLUTION_MS = 60_000; // write lastUsedAt at most once a minute per credential

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const toPublic = (u: UserRecord): PublicUser => ({ username: u.username, role: u.role, createdAt: u.createdAt });

export class Accounts {
  private readonly users;
  private readonly credentials;
  /** Failures from one address, whatever the account: one address cannot try many accounts. */
  private failuresByAddress!: RateLimiterMemory;
  /** Failures of one account from one address: guessing one account from one place. */
  private failuresByAddressAndAccount!: RateLimiterMemory;
  /** Failures of one account from anywhere: holds back addresses the user never signed in from, only. */
  private failuresByAccount!: RateLimiterMemory;
  /** Serialises changes that check-then-write (first-run setup, last-admin rules). */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(
    store: Store,
    private readonly options: AccountsOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.users = store.collection<UserRecord>('users');
    this.credentials = store.collection<CredentialRecord>('credentials');
    this.resetFailures();
  }

  /** Lifts every lock-out. */
  resetFailures(): void {
    const duration = Math.round(this.options.failureWindowMinutes * 60);
    this.failuresByAddress = new RateLimiterMemory({ points: this.options.maxFailuresPerAddress, duration });
    this.failuresByAddressAndAccount = new RateLimiterMemory({ points: this.options.maxFailuresPerAccount, duration });
    this.failuresByAccount = new RateLimiterMemory({ points: this.options.maxFailuresPerAccount, duration });
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.writes.then(work, work);
    this.writes = run.catch(() => undefined);
    return run;
  }

  async needsSetup(): Promise<boolean> {
    return this.users.isEmpty();
  }

  /** First-run: creates the admin account, once. */
  setup(username: string, password: string): Promise<SignedIn> {
    return this.serialised(async () => {
      if (!(await this.users.isEmpty())) {
        throw new ConflictError('This box is already set up; sign in instead', 'ALREADY_SET_UP');
      }
      const user = await this.writeUser({
        username,
        role: 'admin',
        passwordHash: await hashPassword(password),
        createdAt: this.iso(),
      });
      return this.startSession(user);
    });
  }

  async login(username: string, password: string, address = 'unknown'): Promise<SignedIn> {
    const account = username.toLowerCase();
    const pair = `${address} ${account}`;
    let user = await this.users.get(account);
    const known = user?.knownAddresses?.includes(address) ?? false;
    await this.refuseIfBlocked(address, pair, known ? undefined : account);
    const ok = await verifyPassword(password, user?.passwordHash ?? (await dummyHash));
    if (!user || !ok) {
      await Promise.all([
        this.failuresByAddress.penalty(address),
        this.failuresByAddressAndAccount.penalty(pair),
        this.failuresByAccount.penalty(account),
      ]);
      throw new UnauthorizedError('Wrong username or password', 'INVALID_CREDENTIALS');
    }
    await this.failuresByAddressAndAccount.delete(pair);
    if (!known && address !== 'unknown') {
      user = await this.serialised(async () => {
        const current = await this.requireUser(account);
        return this.writeUser({
          ...current,
          knownAddresses: [address, ...(current.knownAddresses ?? [])].slice(0, KNOWN_ADDRESSES),
        });
      });
    }
    return this.startSession(user);
  }

  /**
   * Failures are counted per address, per address and account, and per account; the last holds
   * back only addresses the user has not signed in from, so guesses from elsewhere never lock
   * the owner out of their own devices.
   */
  private async refuseIfBlocked(address: string, pair: string, account: string | undefined): Promise<void> {
    const checks: Array<[RateLimiterMemory, string, number, string]> = [
      [this.failuresByAddress, address, this.options.maxFailuresPerAddress, 'this address'],
      [this.failuresByAddressAndAccount, pair, this.options.maxFailuresPerAccount, 'this account from this address'],
      ...(account
        ? [
            [
              this.failuresByAccount,
              account,
              this.options.maxFailuresPerAccount,
              'this account from a new address',
            ] as [RateLimiterMemory, string, number, string],
          ]
        : []),
    ];
    for (const [limiter, key, max, who] of checks) {
      const state: RateLimiterRes | null = await limiter.get(key);
      if (state && state.consumedPoints >= max) {
        if (await this.unlockRequested()) return;
        const retryAfterSeconds = Math.ceil(state.msBeforeNext / 1000);
        throw new TooManyRequestsError(
          `Too many failed sign-ins for ${who}; try again in ${retryAfterSeconds} s`,
          retryAfterSeconds,
          'LOGIN_RATE_LIMITED',
        );
      }
    }
  }

  /** `fogedge unlock` on the box leaves a file; it is looked for only when a sign-in would be refused. */
  private async unlockRequested(): Promise<boolean> {
    const file = this.options.unlockFile;
    if (!file || !(await stat(file).catch(() => null))) return false;
    await rm(file, { force: true });
    this.resetFailures();
    return true;
  }

  async authenticate(credential: string): Promise<Authenticated> {
    const match = /^(fes|fet)_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$/.exec(credential);
    const record = match ? await this.credentials.get(match[2]!) : undefined;
    if (
      !match ||
      !record ||
      PREFIX[record.kind] !== match[1] ||
      !timingSafeEqual(sha256(match[3]!), Buffer.from(record.secretHash, 'hex'))
    ) {
      throw new UnauthorizedError('Not signed in, or the session or token was revoked', 'INVALID_CREDENTIAL');
    }
    if (record.expiresAt && Date.parse(record.expiresAt) <= this.now()) {
      await this.credentials.del(record.id);
      throw new UnauthorizedError(`The ${record.kind} has expired; sign in again`, 'CREDENTIAL_EXPIRED');
    }
    const user = await this.users.get(record.username);
    if (!user) throw new UnauthorizedError('The account no longer exists', 'INVALID_CREDENTIAL');
    const lastUsed = record.lastUsedAt ? Date.parse(record.lastUsedAt) : 0;
    if (this.now() - lastUsed > LAST_USED_RESOLUTION_MS) {
      await this.credentials.put(record.id, { ...record, lastUsedAt: this.iso() }, { sync: false });
    }
    return { user: toPublic(user), kind: record.kind, credentialId: record.id };
  }

  /** Revokes the session or token it is given; unknown ones are already gone. */
  async logout(credential: string): Promise<void> {
    const id = /^fe[st]_([a-f0-9]{16})_/.exec(credential)?.[1];
    if (id) await this.credentials.del(id);
  }

  async listUsers(): Promise<PublicUser[]> {
    return (await this.users.values()).map(toPublic);
  }

  async getNotifications(username: string): Promise<Notifications> {
    return (await this.requireUser(username)).notifications ?? { enabled: false, rules: [] };
  }

  setNotifications(username: string, notifications: Notifications): Promise<Notifications> {
    return this.serialised(async () => {
      await this.writeUser({ ...(await this.requireUser(username)), notifications });
      return notifications;
    });
  }

  /** Users who want notifications, with their role (what they may see) and their rules. */
  async notificationTargets(): Promise<Array<{ username: string; role: Role; notifications: Notifications }>> {
    return (await this.users.values())
      .filter((u) => u.notifications?.enabled)
      .map((u) => ({ username: u.username, role: u.role, notifications: u.notifications! }));
  }

  async getUser(username: string): Promise<PublicUser> {
    return toPublic(await this.requireUser(username));
  }

  createUser(username: string, password: string, role: Role): Promise<PublicUser> {
    return this.serialised(async () => {
      if (await this.users.get(username)) throw new ConflictError(`User "${username}" already exists`, 'USER_EXISTS');
      return toPublic(
        await this.writeUser({ username, role, passwordHash: await hashPassword(password), createdAt: this.iso() }),
      );
    });
  }

  updateUser(username: string, changes: { role?: Role; password?: string }): Promise<PublicUser> {
    return this.serialised(async () => {
      const user = await this.requireUser(username);
      if (changes.role && changes.role !== 'admin' && user.role === 'admin') await this.refuseLastAdmin(username);
      const updated: UserRecord = {
        ...user,
        role: changes.role ?? user.role,
        passwordHash: changes.password ? await hashPassword(changes.password) : user.passwordHash,
      };
      await this.writeUser(updated);
      if (changes.password) await this.revokeAll(username, 'session');
      return toPublic(updated);
    });
  }

  deleteUser(username: string): Promise<void> {
    return this.serialised(async () => {
      const user = await this.requireUser(username);
      if (user.role === 'admin') await this.refuseLastAdmin(username);
      await this.revokeAll(username);
      await this.users.del(username);
    });
  }

  /** A user's own change: needs the current password; signs out every other session. */
  async changePassword(username: string, current: string, next: string, keepCredentialId?: string): Promise<void> {
    const user = await this.requireUser(username);
    if (!(await verifyPassword(current, user.passwordHash))) {
      throw new ForbiddenError('The current password is wrong', { field: 'currentPassword' });
    }
    await this.writeUser({ ...user, passwordHash: await hashPassword(next) });
    await this.revokeAll(username, 'session', keepCredentialId);
  }

  async createToken(
    username: string,
    name: string,
    expiresInDays?: number,
  ): Promise<{ token: string; info: TokenInfo }> {
    await this.requireUser(username);
    const expiresAt = expiresInDays ? new Date(this.now() + expiresInDays * 86_400_000).toISOString() : null;
    const { credential, record } = await this.issue('token', username, name, expiresAt);
    return { token: credential, info: tokenInfo(record) };
  }

  async listTokens(username: string): Promise<TokenInfo[]> {
    return (await this.credentialsOf(username)).filter((c) => c.kind === 'token').map(tokenInfo);
  }

  /** Owners revoke their own tokens; admins revoke anyone's. */
  async revokeToken(id: string, by: { username: string; role: Role }): Promise<void> {
    const record = await this.credentials.get(id);
    if (!record || record.kind !== 'token' || (record.username !== by.username && by.role !== 'admin')) {
      throw new NotFoundError('Token', id);
    }
    await this.credentials.del(id);
  }

  /** Drops expired credentials; run at start and now and then. */
  async purgeExpired(): Promise<number> {
    let purged = 0;
    for await (const [id, record] of this.credentials.entries()) {
      if (record.expiresAt && Date.parse(record.expiresAt) <= this.now()) {
        await this.credentials.del(id, { sync: false });
        purged++;
      }
    }
    return purged;
  }

  private async startSession(user: UserRecord): Promise<SignedIn> {
    const expiresAt = new Date(this.now() + this.options.sessionTtlHours * 3_600_000).toISOString();
    const { credential } = await this.issue('session', user.username, 'web session', expiresAt);
    return { user: toPublic(user), session: credential, expiresAt };
  }

  private async issue(kind: CredentialKind, username: string, name: string, expiresAt: string | null) {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: CredentialRecord = {
      id,
      kind,
      username,
      name,
      secretHash: sha256(secret).toString('hex'),
      createdAt: this.iso(),
      expiresAt,
      lastUsedAt: null,
    };
    await this.credentials.put(id, record);
    return { credential: `${PREFIX[kind]}_${id}_${secret}`, record };
  }

  private async credentialsOf(username: string): Promise<CredentialRecord[]> {
    return (await this.credentials.values()).filter((c) => c.username === username);
  }

  private async revokeAll(username: string, kind?: CredentialKind, keepId?: string): Promise<void> {
    for (const c of await this.credentialsOf(username)) {
      if ((!kind || c.kind === kind) && c.id !== keepId) await this.credentials.del(c.id);
    }
  }

  private async refuseLastAdmin(username: string): Promise<void> {
    const admins = (await this.users.values()).filter((u) => u.role === 'admin' && u.username !== username);
    if (admins.length === 0) throw new ConflictError('The box must keep at least one admin', 'LAST_ADMIN');
  }

  private requireUser(username: string): Promise<UserRecord> {
    return this.users.require(username, 'User');
  }

  private async writeUser(user: UserRecord): Promise<UserRecord> {
    await this.users.put(user.username, user);
    return user;
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

const tokenInfo = (c: CredentialRecord): TokenInfo => ({
  id: c.id,
  name: c.name,
  createdAt: c.createdAt,
  expiresAt: c.expiresAt,
  lastUsedAt: c.lastUsedAt,
});
