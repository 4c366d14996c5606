// Web Push, checked as a browser's push service would see it. No push service (FCM, Mozilla's,
// Apple's) is reachable here, so the receiver is a local HTTPS server that speaks the push
// service's side of RFC 8030 (POST to the subscription's endpoint, 201, 404/410 for one that is
// gone, 429 with Retry-After), checks the VAPID authorization (RFC 8292) against the box's key,
// and decrypts each message with the subscription's keys (RFC 8291, aes128gcm, with http_ece) as
// the browser would: what the user would see is read out of what the box really sent.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createECDH, createPublicKey, randomBytes, verify } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import ece from 'http_ece';
import { generate } from 'selfsigned';
import { personSeen, testBox, withAdmin, tempDir, type TestBox } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';
import { pictureSize } from './helpers/video.ts';

const run = promisify(execFile);

interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

let box: TestBox;
let admin: string;
let receiver: Server;
let origin: string;
const received: Received[] = [];
/** What the receiver answers next, by endpoint path (default 201). */
const answers = new Map<string, number[]>();

/** A browser's side of a subscription: its ECDH key and auth secret. */
function browserKeys() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return {
    ecdh,
    auth,
    keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') },
  };
}

/** What the browser reads out of a push message: decrypted with its own keys. */
function decrypt(message: Received, browser: ReturnType<typeof browserKeys>) {
  const plain = ece.decrypt(message.body, {
    version: 'aes128gcm',
    privateKey: browser.ecdh,
    authSecret: browser.keys.auth,
  });
  return JSON.parse(plain.toString()) as {
    title: string;
    message?: string;
    camera: string | null;
    event: string | null;
    picture: string | null;
  };
}

test.before(async () => {
  const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  } as never);
  const dir = await tempDir('fogedge-push-');
  const caFile = path.join(dir, 'push-service.crt');
  await writeFile(caFile, pems.cert);
  receiver = createServer({ cert: pems.cert, key: pems.private }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      const status = answers.get(req.url ?? '')?.shift() ?? 201;
      res.writeHead(status, status === 429 ? { 'retry-after': '1' } : { location: `${req.url}/m/${received.length}` });
      res.end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(receiver.address() as { port: number }).port}`;
  box = await testBox({ push: { endpointAllow: [`${origin}/push/`], caFile, contact: 'mailto:ops@example.net' } });
  admin = await withAdmin(box);
  await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'door', name: 'Front door', enabled: false, source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/x' } },
  });
});

test.after(async () => {
  await box?.stop();
  receiver?.close();
});

/** A real picture for the event: a frame of the test pattern, as the detector would give it. */
async function aPicture(): Promise<string> {
  const { stdout } = await run(
    'ffmpeg',
    [
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=1280x720',
      '-frames:v',
      '1',
      '-f',
      'image2',
      '-c:v',
      'mjpeg',
      'pipe:1',
    ],
    { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
  );
  return (stdout as unknown as Buffer).toString('base64');
}

test('a notification reaches a subscribed browser: VAPID-signed, encrypted for it, its picture inside', async () => {
  const browser = browserKeys();
  const endpoint = `${origin}/push/admin-phone`;
  const sub = await box.request('POST', '/api/v1/push/subscriptions', {
    auth: admin,
    body: { endpoint, expirationTime: null, keys: browser.keys, name: 'Phone' },
  });
  assert.is(sub.status, 201, sub.text);
  assert.is(sub.json.service, new URL(origin).host);

  await personSeen(box, 'door', 'ev-push-1', await aPicture());
  // What an automation's "tell the admin" does (the review items' notifications take the same way).
  await box.broker.call('mqtt.notifyUsers', {
    users: ['admin'],
    title: 'person at Front door',
    camera: 'door',
    event: 'ev-push-1',
  });
  const message = await waitUntil(
    'the push message',
    () => received.find((r) => r.path === '/push/admin-phone'),
    15_000,
  );

  // The push service's view: encrypted, with a TTL and urgency, and the box's VAPID signature.
  assert.is(message.headers['content-encoding'], 'aes128gcm');
  assert.ok(Number(message.headers['ttl']) > 0);
  assert.is(message.headers['urgency'], 'high');
  assert.ok(!message.body.includes(Buffer.from('Front door')), 'the push service cannot read it');
  const vapid = /^vapid t=([\w-]+\.[\w-]+\.[\w-]+), k=([\w-]+)$/.exec(String(message.headers['authorization']));
  assert.ok(vapid, String(message.headers['authorization']));
  const key = (await box.request('GET', '/api/v1/push/key', { auth: admin })).json.publicKey as string;
  assert.is(vapid![2], key);
  const [head, claims, signature] = vapid![1]!.split('.') as [string, string, string];
  const jwt = JSON.parse(Buffer.from(claims, 'base64url').toString()) as { aud: string; exp: number; sub: string };
  assert.is(jwt.aud, origin);
  assert.is(jwt.sub, 'mailto:ops@example.net');
  assert.ok(jwt.exp * 1000 > Date.now());
  const raw = Buffer.from(key, 'base64url');
  const publicKey = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: raw.subarray(1, 33).toString('base64url'),
      y: raw.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  assert.ok(
    verify(
      'sha256',
      Buffer.from(`${head}.${claims}`),
      { key: publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(signature, 'base64url'),
    ),
    'the JWT is signed with the box’s VAPID key',
  );

  // The browser's view: what it shows.
  const shown = decrypt(message, browser);
  assert.is(shown.title, 'person at Front door');
  assert.is(shown.event, 'ev-push-1');
  assert.match(shown.picture ?? '', /^data:image\/jpeg;base64,/);
  const jpeg = Buffer.from(shown.picture!.split(',')[1]!, 'base64');
  const size = await pictureSize(jpeg);
  const [width, height] = size.split(',').map(Number);
  assert.ok(width! >= 100 && width! <= 192 && Math.abs(width! / height! - 16 / 9) < 0.1, `picture ${width}x${height}`);
});

test('bad subscriptions are refused by name; one the push service says is gone is forgotten; a busy one is tried once more', async () => {
  const browser = browserKeys();
  const elsewhere = await box.request('POST', '/api/v1/push/subscriptions', {
    auth: admin,
    body: { endpoint: 'https://attacker.example/steal', keys: browser.keys },
  });
  assert.is(elsewhere.status, 400);
  assert.is(elsewhere.json.error.type, 'PUSH_SERVICE_NOT_ALLOWED');
  const badKeys = await box.request('POST', '/api/v1/push/subscriptions', {
    auth: admin,
    body: { endpoint: `${origin}/push/x`, keys: { p256dh: 'short', auth: browser.keys.auth } },
  });
  assert.is(badKeys.status, 422);
  assert.match(JSON.stringify(badKeys.json), /keys\.p256dh/);
  assert.is(
    (
      await box.request('POST', '/api/v1/push/subscriptions', {
        body: { endpoint: `${origin}/push/y`, keys: browser.keys },
      })
    ).status,
    401,
  );

  // Gone at the push service (410): forgotten, not tried again.
  await box.request('POST', '/api/v1/push/subscriptions', {
    auth: admin,
    body: { endpoint: `${origin}/push/gone`, keys: browser.keys },
  });
  answers.set('/push/gone', [410]);
  // Busy (429, Retry-After 1): tried once more.
  const busy = browserKeys();
  await box.request('POST', '/api/v1/push/subscriptions', {
    auth: admin,
    body: { endpoint: `${origin}/push/busy`, keys: busy.keys },
  });
  answers.set('/push/busy', [429]);
  await box.broker.call('mqtt.notifyUsers', { users: ['admin'], title: 'second', message: 'hello' });
  await waitUntil(
    'the busy one tried again',
    () => received.filter((r) => r.path === '/push/busy').length === 2,
    15_000,
  );
  assert.is(decrypt(received.filter((r) => r.path === '/push/busy')[1]!, busy).message, 'hello');
  const list = (await box.request('GET', '/api/v1/push/subscriptions', { auth: admin })).json as Array<{
    name: string;
    service: string;
  }>;
  assert.is(list.length, 2, JSON.stringify(list)); // the phone and the busy one; the gone one forgotten
  await box.broker.call('mqtt.notifyUsers', { users: ['admin'], title: 'third' });
  await waitUntil('the third sent', () => received.filter((r) => r.path === '/push/busy').length === 3, 15_000);
  assert.is(received.filter((r) => r.path === '/push/gone').length, 1);
});

test('a browser subscribed with a token that is revoked is no longer told (nor one of a deleted user)', async () => {
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'guest', password: 'guest-password-1', role: 'family' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'guest', password: 'guest-password-1' },
  });
  const guest = box.sessionOf(login.headers)!;
  const token = (await box.request('POST', '/api/v1/tokens', { auth: guest, body: { name: 'tablet' } })).json as {
    token: string;
    info: { id: string };
  };
  const browser = browserKeys();
  const subscribe = (endpoint: string, auth: string) =>
    box.request('POST', '/api/v1/push/subscriptions', {
      auth,
      body: { endpoint: `${origin}${endpoint}`, keys: browser.keys },
    });
  assert.is((await subscribe('/push/guest-tablet', token.token)).status, 201);
  assert.is((await subscribe('/push/guest-laptop', guest)).status, 201);
  assert.is((await box.request('DELETE', `/api/v1/tokens/${token.info.id}`, { auth: guest })).status, 200);
  await waitUntil(
    'the revoked token’s subscription forgotten',
    async () => (await box.request('GET', '/api/v1/push/subscriptions', { auth: guest })).json.length === 1,
    5000,
  );
  await box.broker.call('mqtt.notifyUsers', { users: ['guest'], title: 'for the guest' });
  await waitUntil('the laptop told', () => received.some((r) => r.path === '/push/guest-laptop'), 15_000);
  await new Promise((r) => setTimeout(r, 500));
  assert.is(
    received.filter((r) => r.path === '/push/guest-tablet').length,
    0,
    'the revoked token’s browser is not told',
  );

  assert.is((await box.request('DELETE', '/api/v1/users/guest', { auth: admin })).status, 200);
  await box.broker.call('mqtt.notifyUsers', { users: ['admin', 'guest'], title: 'after' });
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(received.filter((r) => r.path === '/push/guest-laptop').length, 1, 'a deleted user is not told');
});

test.run();
