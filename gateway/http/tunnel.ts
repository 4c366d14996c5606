// The box's API over a data channel, for a browser away from home (a remote session of the
// webrtc service). The channel is the caller's: each request runs through the same app, routes
// and permissions as on the LAN, as the paired browser's user. Messages:
//   browser → box: {id, method, path, headers?, body?}   a request (path under /api/v1/)
//                  {cancel: id}                          stop sending an answer
//                  {updates: true}                       the updates stream, as /api/v1/updates
//                  {ping: n}                             answered {pong: n} (the session's sign of life)
//   box → browser: {id, status, headers}, then binary [id: u32 BE][bytes]..., then {id, end: true}
//                  (or {id, error}); {update: {type, data}}; {error} for a message it cannot read
import { z } from 'zod';
import type { Caller } from '../../lib/actions.ts';
import type { TunnelChannel } from '../../lib/stream-endpoints.ts';
import type { UpdatesClient } from './websockets.ts';

export const TUNNEL_LIMITS = {
  /** One binary message's payload: under every browser's SCTP message size (64 KiB). */
  chunkBytes: 60 * 1024,
  /** The channel's queue is let drain below this before more of an answer is sent. */
  highWaterBytes: 1024 * 1024,
  /** Requests answered at once; more get 429. */
  concurrent: 16,
  /** Messages the box cannot read before it closes the channel. */
  badMessages: 20,
};

const HEADERS_IN = new Set(['accept', 'content-type', 'range', 'if-none-match']);
const HEADERS_OUT_DROPPED = new Set(['set-cookie', 'content-security-policy', 'strict-transport-security']);

const TunnelRequest = z.strictObject({
  id: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
  path: z
    .string()
    .max(4096)
    .regex(/^\/api\/v1\/[^\s#]*$/, 'a path under /api/v1/'),
  headers: z.record(z.string(), z.string().max(1024)).optional(),
  body: z
    .string()
    .max(4 * 1024 * 1024)
    .optional(),
});
const Control = z.union([
  z.strictObject({ cancel: z.number().int() }),
  z.strictObject({ updates: z.literal(true) }),
  z.strictObject({ ping: z.number() }),
]);

export type TunnelFetch = (request: Request, caller: Caller) => Response | Promise<Response>;

export function serveTunnel(
  channel: TunnelChannel,
  caller: Caller,
  fetch: TunnelFetch,
  updates: { add(client: UpdatesClient, caller: Caller): () => void },
): void {
  const answering = new Map<number, { cancelled: boolean }>();
  let bad = 0;
  let stopUpdates: (() => void) | undefined;
  let closed = false;

  const send = (message: string | Buffer) => {
    if (!closed) channel.send(message);
  };
  const refuse = (what: string, id?: number) => {
    send(JSON.stringify(id === undefined ? { error: what } : { id, error: what }));
    if (++bad >= TUNNEL_LIMITS.badMessages) channel.close();
  };

  channel.onClose(() => {
    closed = true;
    stopUpdates?.();
    for (const a of answering.values()) a.cancelled = true;
  });

  channel.onMessage((raw) => {
    if (typeof raw !== 'string') return refuse('binary messages are not requests');
    let message: unknown;
    try {
      message = JSON.parse(raw);
    } catch {
      return refuse('not JSON');
    }
    const control = Control.safeParse(message);
    if (control.success) {
      const c = control.data;
      if ('ping' in c) send(JSON.stringify({ pong: c.ping }));
      else if ('cancel' in c) {
        const a = answering.get(c.cancel);
        if (a) a.cancelled = true;
      } else if (!stopUpdates)
        stopUpdates = updates.add(
          {
            send: (text) => send(`{"update":${text}}`),
            backlog: () => channel.buffered(),
            terminate: () => channel.close(),
          },
          caller,
        );
      return;
    }
    const request = TunnelRequest.safeParse(message);
    if (!request.success) {
      const id = (message as { id?: unknown })?.id;
      const issue = request.error.issues[0];
      return refuse(
        `bad request: ${issue?.path.join('.') || 'message'}: ${issue?.message}`,
        typeof id === 'number' ? id : undefined,
      );
    }
    const r = request.data;
    if (answering.has(r.id)) return refuse(`request ${r.id} is still being answered`, r.id);
    if (answering.size >= TUNNEL_LIMITS.concurrent) {
      send(JSON.stringify({ id: r.id, status: 429, headers: { 'retry-after': '1' } }));
      send(JSON.stringify({ id: r.id, end: true }));
      return;
    }
    const state = { cancelled: false };
    answering.set(r.id, state);
    void answer(r, state).finally(() => answering.delete(r.id));
  });

  async function answer(r: z.infer<typeof TunnelRequest>, state: { cancelled: boolean }): Promise<void> {
    const headers = new Headers();
    for (const [name, value] of Object.entries(r.headers ?? {}))
      if (HEADERS_IN.has(name.toLowerCase())) headers.set(name, value);
    try {
      const res = await fetch(
        new Request(`http://box${r.path}`, {
          method: r.method,
          headers,
          ...(r.body !== undefined && r.method !== 'GET' ? { body: r.body } : {}),
        }),
        caller,
      );
      const out: Record<string, string> = {};
      res.headers.forEach((value, name) => {
        if (!HEADERS_OUT_DROPPED.has(name)) out[name] = value;
      });
      send(JSON.stringify({ id: r.id, status: res.status, headers: out }));
      const reader = res.body?.getReader();
      const head = Buffer.alloc(4);
      head.writeUInt32BE(r.id);
      while (reader) {
        const { done, value } = await reader.read();
        if (done) break;
        if (state.cancelled || closed) {
          await reader.cancel();
          break;
        }
        for (let at = 0; at < value.byteLength; at += TUNNEL_LIMITS.chunkBytes) {
          send(Buffer.concat([head, value.subarray(at, at + TUNNEL_LIMITS.chunkBytes)]));
          // A slow link: wait for the queue to drain rather than hold the whole answer in memory.
          while (!closed && channel.buffered() > TUNNEL_LIMITS.highWaterBytes)
            await new Promise((go) => setTimeout(go, 20));
        }
      }
      send(JSON.stringify({ id: r.id, end: true }));
    } catch (err) {
      send(JSON.stringify({ id: r.id, error: (err as Error).message }));
    }
  }
}
