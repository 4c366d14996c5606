// What the HTTP layer keeps per request, and how a route calls an action on
// behalf of the caller (the action's own permission check then applies).
import type { Context } from 'hono';
import type { ServiceBroker } from 'moleculer';
import type { Caller } from '../../lib/actions.ts';
import { call, type ActionName, type AnswerOf, type InputOf } from '../../lib/bus.ts';

export interface HttpEnv {
  /** Set by the tunnel (a remote browser's data channel): the caller it vouches for. */
  Bindings: { tunnelCaller?: Caller };
  Variables: {
    caller: Caller;
    /** The session or token this request came with, if any. */
    credential?: { value: string; kind: 'session' | 'token'; id: string };
  };
}

/** An action of a contract, as the caller: its answer is the contract's, which the route's answer schema checks. */
export function callAs<N extends ActionName>(
  broker: ServiceBroker,
  c: Context<HttpEnv>,
  action: N,
  params: InputOf<N>,
): Promise<AnswerOf<N>>;
/** An action not yet in a contract: the route names the answer it expects. */
export function callAs<T>(broker: ServiceBroker, c: Context<HttpEnv>, action: string, params?: object): Promise<T>;
export function callAs(
  broker: ServiceBroker,
  c: Context<HttpEnv>,
  action: string,
  params: unknown = {},
): Promise<unknown> {
  return call(broker, action as ActionName, params as never, { meta: { caller: c.get('caller') } });
}
