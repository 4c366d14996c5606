// The bus, typed from one source. Each service's contract (services/<name>/<name>.schemas.ts)
// adds its actions (input and answer) and the events it broadcasts to the maps below, by
// declaration merging; `call`, `broadcast` and `on` take their types from there, so a caller and
// a listener cannot pick their own idea of an answer or a payload.
//
//   declare module '../../lib/bus.ts' {
//     interface Actions { 'cameras.specs': { input: { id?: string }; answer: Camera[] } }
//     interface Events { 'camera.removed': { id: string; by: string } }
//   }
import type { CallingOptions, Context, Service, ServiceBroker, ServiceEvent } from 'moleculer';

// Filled in by the contracts.
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Actions {}
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Events {}

export type ActionName = keyof Actions;
export type EventName = keyof Events;
export type InputOf<N extends ActionName> = Actions[N] extends { input: infer I } ? I : never;
export type AnswerOf<N extends ActionName> = Actions[N] extends { answer: infer A } ? A : never;

/** A broker or a context: whatever can call. */
export type Caller = Pick<ServiceBroker, 'call'> | Pick<Context, 'call'>;
type Broadcaster = Pick<ServiceBroker, 'broadcast'> | Pick<Context, 'broadcast'>;
type Emitter = Pick<ServiceBroker, 'emit'> | Pick<Context, 'emit'>;

/** Calls an action of another service; its input and answer are those of the callee's contract. */
export function call<N extends ActionName>(
  via: Caller,
  name: N,
  params: InputOf<N>,
  options?: CallingOptions,
): Promise<AnswerOf<N>> {
  return (via.call as (n: string, p: unknown, o?: CallingOptions) => Promise<AnswerOf<N>>)(name, params, options);
}

/**
 * Asks an action of a service only if some node runs it now, else answers undefined: what a
 * service reads at its start from a neighbour that may not be up yet (it tells its news when it
 * is), without a warning in the log for each miss.
 */
export function callIfRunning<N extends ActionName>(
  broker: ServiceBroker,
  name: N,
  params: InputOf<N>,
): Promise<AnswerOf<N> | undefined> {
  const service = name.slice(0, name.indexOf('.'));
  const running = (broker.registry as unknown as { getServiceList(o: object): Array<{ name: string }> })
    .getServiceList({ onlyAvailable: true, skipInternal: true })
    .some((s) => s.name === service);
  return running
    ? call(broker, name, params, { timeout: 2000, retries: 0 }).catch(() => undefined)
    : Promise.resolve(undefined);
}

/** Tells every node of a fact, with the payload its contract declares. */
export function broadcast<N extends EventName>(via: Broadcaster, name: N, payload: Events[N]): Promise<void> {
  return (via.broadcast as (n: string, p: unknown) => Promise<void>)(name, payload);
}

/** Tells one instance of each listening service (Moleculer's balanced events), with the contract's payload. */
export function emit<N extends EventName>(via: Emitter, name: N, payload: Events[N]): Promise<void> {
  return (via.emit as (n: string, p: unknown) => Promise<void>)(name, payload);
}

/** A listener for one event, for a service's `events`: its payload typed by the contract. */
export function on<N extends EventName, S extends Service = Service>(
  name: N,
  handler: (this: S, payload: Events[N], ctx: Context<Events[N]>) => unknown,
): Record<N, ServiceEvent> {
  return {
    [name]: {
      handler(this: S, ctx: Context<Events[N]>) {
        return handler.call(this, ctx.params, ctx);
      },
    },
  } as Record<N, ServiceEvent>;
}
