// What the HTTP layer keeps per request, and how a route calls an action on
// behalf of the caller (the action's own permission check then applies).
import type { Context } from 'hono';
import type { ServiceBroker } from 'moleculer';
import type { Caller } from '../../lib/actions.ts';

export interface HttpEnv {
  Variables: {
    caller: Caller;
    /** The session or token this request came with, if any. */
    credential?: { value: string; kind: 'session' | 'token'; id: string };
  };
}

export function callAs<T>(broker: ServiceBroker, c: Context<HttpEnv>, action: string, params: object = {}): Promise<T> {
  return broker.call<T, object>(action, params, { meta: { caller: c.get('caller') } });
}
