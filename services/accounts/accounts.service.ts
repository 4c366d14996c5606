// accounts: users, roles, sessions and API tokens. Its LevelDB lives under db/accounts.
import { broadcast, emit } from '../../lib/bus.ts';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { ConflictError, UnauthorizedError } from '../../lib/errors.ts';
import { Store } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { Accounts } from './accounts.ts';
import { PairedBrowsers } from './paired-browsers.ts';
import * as S from './accounts.schemas.ts';

const PURGE_EVERY_MS = 3_600_000;
const NoInput = z.strictObject({});

/** The signed-in caller of a `self` action, as the gateway vouched for them. */
function caller(ctx: Ctx<unknown>) {
  const c = ctx.meta.caller;
  if (!c?.username || !c.role) throw new UnauthorizedError('Sign in first', 'AUTH_REQUIRED');
  return { username: c.username, role: c.role };
}

export function accountsService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let accounts: Accounts | undefined;
  let browsers: PairedBrowsers | undefined;
  let purgeTimer: NodeJS.Timeout | undefined;
  const ready = () => {
    if (!accounts) throw new Error('accounts service is not started');
    return accounts;
  };
  const paired = () => {
    if (!browsers) throw new Error('accounts service is not started');
    return browsers;
  };

  return {
    name: 'accounts',

    actions: {
      /** Internal: whether a user of this name exists (a device may not take a user's name). */
      exists: action({
        input: S.ExistsInput,
        handler: async (ctx) => ({
          exists: await ready()
            .getUser(ctx.params.username.toLowerCase())
            .then(
              () => true,
              () => false,
            ),
        }),
      }),
      /** Internal (the `fogedge set-admin` command on the box): creates the first admin, or resets an admin's password. */
      setAdmin: action({
        input: S.SetAdminInput,
        handler: async (ctx) => {
          const { username, password } = ctx.params;
          if (await ready().needsSetup()) {
            await ready().setup(username, password);
            ctx.emit('account.created', { username, role: 'admin', by: 'set-admin' });
            return { created: true };
          }
          const user = await ready().getUser(username);
          if (user.role !== 'admin')
            throw new ConflictError(
              `"${username}" exists and is not an admin; set-admin only creates or resets admins`,
              'NOT_AN_ADMIN',
            );
          await ready().updateUser(username, { password });
          return { created: false };
        },
      }),
      needsSetup: action({
        input: NoInput,
        permission: 'public',
        handler: async () => ({ needed: await ready().needsSetup() }),
      }),
      setup: action({
        input: S.SetupInput,
        permission: 'public',
        handler: async (ctx) => {
          const signedIn = await ready().setup(ctx.params.username, ctx.params.password);
          ctx.emit('account.created', { username: signedIn.user.username, role: 'admin', by: 'first-run setup' });
          return signedIn;
        },
      }),
      login: action({
        input: S.LoginInput,
        permission: 'public',
        handler: async (ctx) => {
          const ip = ctx.meta.caller?.ip ?? 'unknown';
          try {
            const signedIn = await ready().login(ctx.params.username, ctx.params.password, ip);
            ctx.emit('account.signed-in', { username: signedIn.user.username, ip });
            return signedIn;
          } catch (err) {
            ctx.emit('account.sign-in.failed', { username: ctx.params.username, ip, reason: (err as Error).message });
            throw err;
          }
        },
      }),
      // Internal: the gateway turns a cookie or bearer token into a caller.
      authenticate: action({
        input: S.AuthenticateInput,
        visibility: 'public',
        handler: (ctx) => ready().authenticate(ctx.params.credential),
      }),
      logout: action({
        input: S.AuthenticateInput,
        permission: 'self',
        handler: async (ctx) => {
          await ready().logout(ctx.params.credential);
          return { ok: true };
        },
      }),
      me: action({
        input: NoInput,
        permission: 'self',
        handler: (ctx) => ready().getUser(caller(ctx).username),
      }),
      notifications: action({
        input: NoInput,
        permission: 'self',
        handler: (ctx) => ready().getNotifications(caller(ctx).username),
      }),
      setNotifications: action({
        input: S.Notifications,
        permission: 'self',
        async handler(ctx) {
          const saved = await ready().setNotifications(caller(ctx).username, ctx.params);
          ctx.broadcast('account.notifications.changed', { username: caller(ctx).username });
          return saved;
        },
      }),
      // Internal: who wants to hear about events (the mqtt service sends them).
      notificationTargets: action({
        input: NoInput,
        handler: () => ready().notificationTargets(),
      }),
      changePassword: action({
        input: S.ChangePasswordInput.extend({ keepCredentialId: z.string().optional() }),
        permission: 'self',
        handler: async (ctx) => {
          const { username } = caller(ctx);
          await ready().changePassword(
            username,
            ctx.params.currentPassword,
            ctx.params.newPassword,
            ctx.params.keepCredentialId,
          );
          void emit(ctx, 'account.password.changed', { username, by: username });
          return { ok: true };
        },
      }),
      listUsers: action({
        input: NoInput,
        permission: 'users.manage',
        handler: () => ready().listUsers(),
      }),
      createUser: action({
        input: S.CreateUserInput,
        permission: 'users.manage',
        handler: async (ctx) => {
          const user = await ready().createUser(ctx.params.username, ctx.params.password, ctx.params.role);
          ctx.emit('account.created', {
            username: user.username,
            role: user.role,
            by: ctx.meta.caller?.username ?? 'box',
          });
          return user;
        },
      }),
      updateUser: action({
        input: S.UpdateUserInput,
        permission: 'users.manage',
        handler: async (ctx) => {
          const { username, ...changes } = ctx.params;
          const user = await ready().updateUser(username, changes);
          void emit(ctx, 'account.updated', {
            username,
            changed: Object.keys(changes),
            by: ctx.meta.caller?.username ?? 'box',
          });
          return user;
        },
      }),
      deleteUser: action({
        input: S.UsernameInput,
        permission: 'users.manage',
        handler: async (ctx) => {
          await ready().deleteUser(ctx.params.username);
          await paired().revokeAllOf(ctx.params.username);
          void emit(ctx, 'account.deleted', { username: ctx.params.username, by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true };
        },
      }),
      createToken: action({
        input: S.CreateTokenInput,
        permission: 'self',
        handler: (ctx) => ready().createToken(caller(ctx).username, ctx.params.name, ctx.params.expiresInDays),
      }),
      listTokens: action({
        input: NoInput,
        permission: 'self',
        handler: (ctx) => ready().listTokens(caller(ctx).username),
      }),
      revokeToken: action({
        input: S.TokenIdInput,
        permission: 'self',
        handler: async (ctx) => {
          await ready().revokeToken(ctx.params.id, caller(ctx));
          // Connections signed in with it (MQTT) end at once.
          void broadcast(ctx, 'account.credential.revoked', {
            credentialId: ctx.params.id,
            username: caller(ctx).username,
          });
          return { ok: true };
        },
      }),
      inviteBrowser: action({
        input: NoInput,
        permission: 'self',
        handler: (ctx) => paired().invite(caller(ctx).username),
      }),
      invitationOpen: action({
        input: S.InvitationIdInput,
        handler: async (ctx) => ({ open: await paired().isOpen(ctx.params.invitation) }),
      }),
      pairBrowser: action({
        input: S.PairBrowserInput,
        handler: async (ctx) => {
          const browser = await paired().pair(ctx.params);
          void broadcast(ctx, 'account.browser.paired', {
            id: browser.id,
            username: browser.username,
            name: browser.name,
          });
          return browser;
        },
      }),
      browsers: action({
        input: NoInput,
        permission: 'self',
        handler: (ctx) => {
          const who = caller(ctx);
          return paired().list(who.role === 'admin' ? undefined : who.username);
        },
      }),
      unpairBrowser: action({
        input: S.BrowserIdInput,
        permission: 'self',
        handler: async (ctx) => {
          const browser = await paired().revoke(ctx.params.id, caller(ctx));
          // Its remote sessions end at once.
          void broadcast(ctx, 'account.credential.revoked', { credentialId: browser.id, username: browser.username });
          return browser;
        },
      }),
      remoteSigner: action({
        input: S.RemoteSignerInput,
        handler: (ctx) => paired().signer(ctx.params.browser, ctx.params.signed, ctx.params.signature),
      }),
      health: action({
        input: NoInput,
        handler: () => ({ status: store?.status === 'open' ? 'ok' : 'down', db: store?.status ?? 'closed' }),
      }),
    },

    async started() {
      store = await Store.open(dataPaths(config).db('accounts'));
      accounts = new Accounts(store, { ...config.auth, unlockFile: dataPaths(config).unlockSignIns });
      browsers = new PairedBrowsers(store, (username) =>
        accounts!.getUser(username).then(
          (u) => u.role,
          () => undefined, // gone: the browser's offers are refused as not paired
        ),
      );
      const purge = () =>
        Promise.all([accounts?.purgeExpired(), browsers?.purgeExpired()]).catch((err: Error) =>
          this.logger.warn(`purge of expired credentials failed: ${err.message}`),
        );
      await purge();
      purgeTimer = setInterval(purge, PURGE_EVERY_MS).unref();
    },

    async stopped() {
      clearInterval(purgeTimer);
      accounts = undefined;
      browsers = undefined;
      await store?.close();
      store = undefined;
    },
  };
}
