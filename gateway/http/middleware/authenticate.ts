// Turns the session cookie or bearer token into `caller`. Every /api route
// needs one, except the public paths given (health, login, first-run setup).
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { ServiceBroker } from 'moleculer';
import { UnauthorizedError } from '../../../lib/errors.ts';
import type { Authenticated } from '../../../services/accounts/accounts.ts';
import type { HttpEnv } from '../context.ts';

export const SESSION_COOKIE = 'fogedge_session';

function remoteAddress(c: Parameters<MiddlewareHandler<HttpEnv>>[0]): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown'; // app.request() in tests has no socket
  }
}

export function authenticate(broker: ServiceBroker, options: { publicPaths: string[] }): MiddlewareHandler<HttpEnv> {
  const publicPaths = new Set(options.publicPaths);
  return async (c, next) => {
    const ip = remoteAddress(c);
    const bearer = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const value = bearer ?? getCookie(c, SESSION_COOKIE);
    if (value) {
      try {
        const auth = await broker.call<Authenticated, { credential: string }>('accounts.authenticate', { credential: value });
        c.set('caller', { username: auth.user.username, role: auth.user.role, ip, via: 'http' });
        c.set('credential', { value, kind: auth.kind, id: auth.credentialId });
        return next();
      } catch (err) {
        // A stale cookie on a public page is no error; on anything else it is.
        if (!publicPaths.has(c.req.path) || (err as { code?: number }).code !== 401) throw err;
      }
    }
    if (!publicPaths.has(c.req.path)) throw new UnauthorizedError('Sign in, or send an API token as "Authorization: Bearer ..."', 'AUTH_REQUIRED');
    c.set('caller', { ip, via: 'http' });
    return next();
  };
}
