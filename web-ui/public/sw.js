// The app's service worker, registered where the app is not served by the box itself (the
// operator's static host: the app away from home). Two jobs:
// - the app shell (the page and its hashed assets) from a cache, so the installed app opens
//   even before the box is reached;
// - every request to /api/v1/ (the app's own, its pictures, its recordings) handed to the page,
//   which sends it through its tunnel to the box and hands back the answer.
const SHELL = 'fogedge-shell-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/api/')) {
    event.respondWith(throughPage(event, url));
    return;
  }
  if (event.request.method !== 'GET') return;
  // Hashed assets never change: the cache first. The page: the network first, the cache offline.
  const immutable = url.pathname.startsWith('/assets/');
  event.respondWith(
    (async () => {
      const cache = await caches.open(SHELL);
      if (immutable) {
        const hit = await cache.match(event.request);
        if (hit) return hit;
      }
      try {
        const res = await fetch(event.request);
        if (res.ok) await cache.put(event.request, res.clone());
        return res;
      } catch (err) {
        const hit =
          (await cache.match(event.request, { ignoreSearch: true })) ??
          (event.request.mode === 'navigate' ? await cache.match('/') : undefined);
        if (hit) return hit;
        throw err;
      }
    })(),
  );
});

async function throughPage(event, url) {
  const client = event.clientId ? await self.clients.get(event.clientId) : undefined;
  if (!client)
    return new Response('{"error":{"type":"AWAY","message":"Open the app to reach the box"}}', {
      status: 503,
      headers: { 'content-type': 'application/json' },
    });
  const request = event.request.clone();
  const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.text();
  const headers = {};
  request.headers.forEach((value, name) => (headers[name] = value));
  const channel = new MessageChannel();
  const reply = new Promise((resolve) => (channel.port1.onmessage = (m) => resolve(m.data)));
  client.postMessage({ type: 'tunnel-fetch', method: request.method, path: url.pathname + url.search, headers, body }, [
    channel.port2,
  ]);
  const answer = await reply;
  if (answer.passthrough) return fetch(event.request);
  if (answer.error) return Response.error();
  return new Response(answer.status === 204 || answer.status === 304 ? null : answer.body, {
    status: answer.status,
    headers: answer.headers,
  });
}

// Web Push from the box (encrypted end to end; the push service cannot read it): shown at once,
// with the event's small picture inside the message itself.
self.addEventListener('push', (event) => {
  let n = { title: 'FogEdge' };
  try {
    n = event.data ? event.data.json() : n;
  } catch {
    // not ours: shown with the default title
  }
  event.waitUntil(
    self.registration.showNotification(n.title, {
      body: n.message || (n.camera ? `Camera ${n.camera}` : ''),
      icon: '/icon.svg',
      ...(n.picture ? { image: n.picture } : {}),
      tag: n.review || n.event || undefined,
      data: { review: n.review || null },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow('/review'));
});
