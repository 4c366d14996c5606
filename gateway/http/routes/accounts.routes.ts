// First-run setup, sign-in and out, the caller's own account and tokens, and user management.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { deleteCookie, setCookie } from 'hono/cookie';
import type { Context } from 'hono';
import type { ServiceBroker } from 'moleculer';
import * as S from '../../../services/accounts/accounts.schemas.ts';
import { permissionsOf } from '../../../lib/permissions.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { SESSION_COOKIE } from '../middleware/authenticate.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const SessionAnswer = z.object({ user: S.PublicUser, expiresAt: z.string() });
const Me = z.object({
  user: S.PublicUser,
  permissions: z.array(z.string()),
  via: z.enum(['session', 'token', 'remote']).describe('remote: a paired browser, through its tunnel'),
});
const UsernameParam = z.object({ username: S.Username });

export function accountsRoutes(
  app: OpenAPIHono<HttpEnv>,
  broker: ServiceBroker,
  options: { secureCookies: boolean },
): void {
  const startSession = (c: Context<HttpEnv>, s: S.SignedIn) => {
    setCookie(c, SESSION_COOKIE, s.session, {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      secure: options.secureCookies,
      expires: new Date(s.expiresAt),
    });
    return { user: s.user, expiresAt: s.expiresAt };
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/setup',
      tags: ['accounts'],
      summary: 'Whether the first-run setup is still open',
      responses: { 200: json(z.object({ needed: z.boolean() })) },
    }),
    async (c) => c.json(await callAs<{ needed: boolean }>(broker, c, 'accounts.needsSetup'), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/setup',
      tags: ['accounts'],
      summary: 'First-run setup: create the admin account (once) and sign in',
      request: body(S.SetupInput),
      responses: { 201: json(SessionAnswer, 'Admin created, session cookie set'), 409: errors[409], 422: errors[422] },
    }),
    async (c) =>
      c.json(startSession(c, await callAs<S.SignedIn>(broker, c, 'accounts.setup', c.req.valid('json'))), 201),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/auth/login',
      tags: ['accounts'],
      summary: 'Sign in; sets an HttpOnly session cookie',
      request: body(S.LoginInput),
      responses: { 200: json(SessionAnswer), 401: errors[401], 422: errors[422], 429: errors[429] },
    }),
    async (c) =>
      c.json(startSession(c, await callAs<S.SignedIn>(broker, c, 'accounts.login', c.req.valid('json'))), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/auth/logout',
      tags: ['accounts'],
      summary: 'Revoke the session or token this request carries',
      security: signedIn,
      responses: { 200: json(Ok), 401: errors[401] },
    }),
    async (c) => {
      await callAs(broker, c, 'accounts.logout', { credential: c.get('credential')!.value });
      deleteCookie(c, SESSION_COOKIE, { path: '/' });
      return c.json({ ok: true }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/auth/me',
      tags: ['accounts'],
      summary: 'The signed-in user and what their role may do',
      security: signedIn,
      responses: { 200: json(Me), 401: errors[401] },
    }),
    async (c) => {
      const user = await callAs<S.PublicUser>(broker, c, 'accounts.me');
      return c.json(
        { user, permissions: permissionsOf(user.role), via: c.get('credential')?.kind ?? ('remote' as const) },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/auth/me/notifications',
      tags: ['accounts'],
      summary: 'Which events you are told about (over MQTT at fogedge/users/<you>/notifications)',
      security: signedIn,
      responses: { 200: json(S.Notifications), 401: errors[401] },
    }),
    async (c) => c.json(await callAs<S.Notifications>(broker, c, 'accounts.notifications'), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/auth/me/notifications',
      tags: ['accounts'],
      summary: 'Turn your notifications on or off and choose them by camera, label, zone and time of day',
      security: signedIn,
      request: body(S.Notifications),
      responses: { 200: json(S.Notifications), 401: errors[401], 422: errors[422] },
    }),
    async (c) =>
      c.json(await callAs<S.Notifications>(broker, c, 'accounts.setNotifications', c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/auth/password',
      tags: ['accounts'],
      summary: 'Change your own password; signs out your other sessions',
      security: signedIn,
      request: body(S.ChangePasswordInput),
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 422: errors[422] },
    }),
    async (c) => {
      const params = { ...c.req.valid('json'), keepCredentialId: c.get('credential')!.id };
      return c.json(await callAs<{ ok: boolean }>(broker, c, 'accounts.changePassword', params), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/users',
      tags: ['users'],
      summary: 'List the accounts (admin)',
      security: signedIn,
      responses: { 200: json(z.array(S.PublicUser)), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs<S.PublicUser[]>(broker, c, 'accounts.listUsers'), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/users',
      tags: ['users'],
      summary: 'Add a family member, installer or admin (admin)',
      security: signedIn,
      request: body(S.CreateUserInput),
      responses: { 201: json(S.PublicUser), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<S.PublicUser>(broker, c, 'accounts.createUser', c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v1/users/{username}',
      tags: ['users'],
      summary: "Change a user's role or password (admin); a new password signs them out",
      security: signedIn,
      request: { params: UsernameParam, ...body(S.UpdateUserInput.omit({ username: true })) },
      responses: {
        200: json(S.PublicUser),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        409: errors[409],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = { ...c.req.valid('json'), username: c.req.valid('param').username };
      return c.json(await callAs<S.PublicUser>(broker, c, 'accounts.updateUser', params), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/users/{username}',
      tags: ['users'],
      summary: 'Remove a user and revoke their sessions and tokens (admin)',
      security: signedIn,
      request: { params: UsernameParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404], 409: errors[409] },
    }),
    async (c) => c.json(await callAs<{ ok: boolean }>(broker, c, 'accounts.deleteUser', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/tokens',
      tags: ['tokens'],
      summary: 'Your API tokens (secrets are never shown again)',
      security: signedIn,
      responses: { 200: json(z.array(S.TokenInfo)), 401: errors[401] },
    }),
    async (c) => c.json(await callAs<S.TokenInfo[]>(broker, c, 'accounts.listTokens'), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/tokens',
      tags: ['tokens'],
      summary: 'Create an API token for scripts: send it as "Authorization: Bearer <token>"',
      security: signedIn,
      request: body(S.CreateTokenInput),
      responses: { 201: json(S.NewToken), 401: errors[401], 422: errors[422] },
    }),
    async (c) =>
      c.json(await callAs<z.infer<typeof S.NewToken>>(broker, c, 'accounts.createToken', c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/tokens/{id}',
      tags: ['tokens'],
      summary: "Revoke a token (yours, or anyone's for an admin)",
      security: signedIn,
      request: { params: S.TokenIdInput },
      responses: { 200: json(Ok), 401: errors[401], 404: errors[404], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<{ ok: boolean }>(broker, c, 'accounts.revokeToken', c.req.valid('param')), 200),
  );
}
