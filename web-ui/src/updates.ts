// Live updates from the box (/api/v1/updates): new events, cameras going on- or offline, devices
// asking to pair. One socket for the app; pages subscribe by message type prefix.
import { useEffect } from 'preact/hooks';
import { signal } from '@preact/signals';
import { tunnel } from './remote.ts';

type Handler = (type: string, data: unknown) => void;
const handlers = new Set<Handler>();
/** Whether the updates socket is open (shown in the header). */
export const live = signal(false);
let socket: { close(): void } | undefined;
let retry: ReturnType<typeof setTimeout> | undefined;
let wanted = false;

function open(): void {
  // Away from home: the same stream through the tunnel (which comes back whole or not at all).
  const away = tunnel();
  if (away) {
    live.value = true;
    const off = away.onUpdate((type, data) => {
      for (const h of handlers) h(type, data);
    });
    socket = {
      close: () => {
        off();
        live.value = false;
        socket = undefined;
      },
    };
    return;
  }
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/updates`);
  socket = ws;
  ws.onopen = () => (live.value = true);
  ws.onmessage = (m) => {
    const { type, data } = JSON.parse(String(m.data)) as { type: string; data: unknown };
    for (const h of handlers) h(type, data);
  };
  ws.onclose = () => {
    live.value = false;
    socket = undefined;
    if (wanted) retry = setTimeout(open, 3000);
  };
}

export function startUpdates(): void {
  wanted = true;
  if (!socket) open();
}

export function stopUpdates(): void {
  wanted = false;
  clearTimeout(retry);
  socket?.close();
}

/**
 * Calls handler for each update whose type starts with one of the prefixes ("event.", "camera."),
 * and with "hello" each time the socket (re)opens: what changed while it was not open (the page
 * loading, the box away) was not heard, so the page reads its data again.
 */
export function useUpdates(prefixes: string[], handler: Handler): void {
  useEffect(() => {
    const h: Handler = (type, data) =>
      (type === 'hello' || prefixes.some((p) => type.startsWith(p))) && handler(type, data);
    handlers.add(h);
    return () => void handlers.delete(h);
  }, [prefixes.join(','), handler]);
}
