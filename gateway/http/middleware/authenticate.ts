// Turns the session cookie or bearer token into `caller`. Every /api route
// needs one, except the public paths given (health, login, first-run setup).
import { call } from '../../../lib/bus.ts';
import type { MiddlewareHandler } from 'hono';
import { parse as parseCookies } from 'hono/utils/cookie';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { ServiceBroker } from 'moleculer';
import { UnauthorizedError } from '../../../lib/errors.ts';
import type { HttpEnv } from '../context.ts';

export const SESSION_COOKIE = 'fogedge_session';

/** What a request signs in with: a bearer token, else the session cookie (HTTP and WebSocket alike). */
export function credentialOf(
  authorization: string | undefined,
  cookies: string | undefined,
): { value: string; from: 'bearer' | 'cookie' } | undefined {
  const bearer = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  if (bearer) return { value: bearer, from: 'bearer' };
  const session = cookies ? parseCookies(cookies, SESSION_COOKIE)[SESSION_COOKIE] : undefined;
  return session ? { value: session, from: 'cookie' } : undefined;
}

export const signInRequired = () =>
  new UnauthorizedError('Sign in, or send an API token as "Authorization: Bearer ..."', 'AUTH_REQUIRED');

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
    // Through a remote session's tunnel: the paired browser's signed offer signed it in.
    const tunnelled = c.env?.tunnelCaller;
    if (tunnelled) {
      c.set('caller', tunnelled);
      return next();
    }
    const ip = remoteAddress(c);
    const value = credentialOf(c.req.header('authorization'), c.req.header('cookie'))?.value;
    if (value) {
      try {
        const auth = await call(broker, 'accounts.authenticate', {
          credential: value,
        });
        c.set('caller', {
          username: auth.user.username,
          role: auth.user.role,
          ip,
          via: 'http',
          credential: auth.credentialId,
        });
        c.set('credential', { value, kind: auth.kind, id: auth.credentialId });
        return next();
      } catch (err) {
        // A public page (health above all) answers whatever the credential's fate: stale, or
        // not checkable now because the accounts service is away.
        if (!publicPaths.has(c.req.path)) throw err;
      }
    }
    if (!publicPaths.has(c.req.path)) throw signInRequired();
    c.set('caller', { ip, via: 'http' });
    return next();
  };
}
