// Away from home, on a network made of namespaces (helpers/away-network.ts): the box at home
// behind a NAT filter, the operator's Mosquitto (with a WebSocket listener for browsers),
// coturn (STUN and TURN with per-session credentials) and a static host for the app, and
// Chromium away, which cannot reach the box's address at all. The app is paired from the box's
// invitation link, then everything goes through the tunnel: the API, pictures, live video and
// sound. Every camera the app shows comes on the tunnel's own peer connection (one slot each);
// a camera WebRTC cannot carry (B-frames) plays over MSE, streamed through the tunnel. A second client written from the protocol (node-datachannel, its own key) makes the
// offers an attacker or a broken client would.
import { test } from 'uvu';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as assert from 'uvu/assert';
import type { Browser, Page } from 'playwright-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, Proc, waitUntil } from './helpers/processes.ts';
import { addRtspCameras, cameraClip, patternClip, RtspCamera, subStreamClip } from './helpers/video.ts';
import { launch, shot, videoAdvances } from './helpers/browser.ts';
import { TurnServer } from './helpers/turn.ts';
import { OperatorBroker } from './helpers/operator.ts';
import { AwayNetwork, INET } from './helpers/away-network.ts';
import { offerId, pairingOf, peer, RemoteClient } from './helpers/remote-client.ts';
import { PeerConnection, Video, type DataChannel } from 'node-datachannel';
import { keepUntilClosed } from '../services/webrtc/keep-until-closed.ts';

const run = promisify(execFile);

let net: AwayNetwork;
let turn: TurnServer;
let operator: OperatorBroker;
let appHost: Proc;
let box: TestBox;
let admin: string;
let door: RtspCamera;
let doorSub: RtspCamera;
let porch: RtspCamera; // a test pattern at 480x270: its picture is told from the door's by its size
let yard: RtspCamera; // the bundled street, with B-frames: MSE only
let browser: Browser;
let page: Page;
let appUrl: string;

const invitation = async (credential = admin) => {
  const res = await box.request('POST', '/api/v1/remote/invitations', { auth: credential });
  assert.is(res.status, 201, res.text);
  return res.json as { link: string; pairing: { fingerprint: string } };
};

/** How the app says it reaches the box ("Away: direct" / "Away: relayed"), once it does. */
const reachShown = (p: Page) => p.locator('.reach').innerText({ timeout: 30_000 });

test.before(async () => {
  net = await AwayNetwork.create();
  turn = new TurnServer({ netns: INET, host: net.operator });
  await turn.start();
  operator = await OperatorBroker.start(
    { 'home-1': 'box-secret-1' },
    { netns: { name: INET, host: net.operator }, websockets: true },
  );
  // The operator's site serving the app as built (any static host does).
  appHost = new Proc('ip', [
    'netns',
    'exec',
    INET,
    'python3',
    '-m',
    'http.server',
    '8080',
    '--bind',
    net.operator,
    '--directory',
    'web-ui/dist',
  ]);
  await appHost.waitForLine(/Serving HTTP/);
  appUrl = `http://${net.operator}:8080/`;
  // A box as installed: listening on every address of home.
  box = await testBox({ http: { host: '0.0.0.0', port: await freePort() }, video: { segmentSeconds: 4 } });
  admin = await withAdmin(box);
  door = new RtspCamera(await freePort(), { clip: await cameraClip(), audio: 'pcma' });
  porch = new RtspCamera(await freePort(), { clip: await patternClip() });
  yard = new RtspCamera(await freePort());
  await Promise.all([door.start(), porch.start(), yard.start()]);
  await addRtspCameras(box, admin, { door, porch, yard });
  // Its sub-stream (640x360, about a seventh of the main stream's bitrate).
  doorSub = new RtspCamera(await freePort(), { clip: await subStreamClip() });
  await doorSub.start();
  const withSub = await box.request('PATCH', '/api/v1/cameras/door', {
    auth: admin,
    body: { subStream: { kind: 'rtsp', url: doorSub.url() } },
  });
  assert.is(withSub.status, 200, withSub.text);
  const provisioned = await box.request('PUT', '/api/v1/admp/provisioning', {
    auth: admin,
    body: {
      url: operator.url,
      boxId: 'home-1',
      username: 'home-1',
      password: 'box-secret-1',
      remote: {
        browserUrl: operator.websocketUrl,
        appUrl,
        stun: [`stun:${net.operator}:3478`],
        turn: { urls: [`turn:${net.operator}:3478`], secret: turn.sharedSecret },
      },
    },
  });
  assert.is(provisioned.status, 200, provisioned.text);
  await waitUntil(
    'the uplink connected',
    async () => (await box.request('GET', '/api/v1/admp', { auth: admin })).json?.connected,
    15_000,
  );
  browser = await launch({
    executablePath: await net.chromiumAway(),
    // WebCrypto and service workers need a secure origin: the operator's site would be HTTPS.
    args: [`--unsafely-treat-insecure-origin-as-secure=http://${net.operator}:8080`],
  });
  page = await (await browser.newContext()).newPage();
});

test.after(async () => {
  await browser?.close();
  await box?.stop();
  await door?.stop();
  await doorSub?.stop();
  await porch?.stop();
  await yard?.stop();
  await appHost?.kill('SIGKILL');
  await operator?.stop();
  await turn?.stop();
  await AwayNetwork.remove();
});

/**
 * Every tile plays its own camera, all through the tunnel: the door (its sub-stream) and the
 * porch over WebRTC, the yard (B-frames) over MSE; each picture's size says whose it is.
 */
async function gridPlaysEachCamera(p: Page): Promise<void> {
  for (const camera of ['door', 'porch', 'yard'])
    await videoAdvances(p, `.tile[data-camera=${camera}] video`, 1, 30_000);
  const shown = await p.$$eval('.tile[data-camera]', (tiles) =>
    Object.fromEntries(
      tiles.map((t) => {
        const v = t.querySelector('video')!;
        return [t.getAttribute('data-camera'), `${v.dataset['transport']} ${v.videoWidth}x${v.videoHeight}`];
      }),
    ),
  );
  assert.equal(shown, { door: 'webrtc 640x360', porch: 'webrtc 480x270', yard: 'mse 1280x720' });
}

test('away, the box cannot be reached; the app pairs from the invitation link and works through the tunnel', async () => {
  await page.goto(appUrl);
  const direct = await page.evaluate(
    (url) =>
      fetch(url, { signal: AbortSignal.timeout(3000) }).then(
        (r) => `answered ${r.status}`,
        () => 'unreachable',
      ),
    `http://${net.home}:${box.config.http.port}/api/v1/health`,
  );
  assert.is(direct, 'unreachable', 'the browser away must not reach the box at home');
  // Not paired yet: the app says how to pair.
  await page.getByText('pair it once').waitFor({ timeout: 10_000 });

  const invite = await invitation();
  assert.ok(invite.link.startsWith(`${appUrl}#pair=`), invite.link);
  await page.goto(invite.link);
  await page.locator('#pair button[type=submit]').click();
  // Paired, the app opens on live view, through the tunnel.
  assert.is(await reachShown(page), 'Away: direct');
  await page.locator('header .who').getByText('admin (admin)').waitFor({ timeout: 20_000 });
  await gridPlaysEachCamera(page);
  // One peer connection carries the tunnel and both WebRTC cameras.
  assert.equal(await remoteSessions(), [['door', 'porch']]);
  // A picture through the service worker and the tunnel is the camera's own picture.
  const picture = await page.evaluate(async () => {
    const res = await fetch('/api/v1/cameras/door/snapshot.jpg');
    const image = await createImageBitmap(await res.blob());
    return { status: res.status, type: res.headers.get('content-type'), width: image.width, height: image.height };
  });
  assert.equal(picture, { status: 200, type: 'image/jpeg', width: 1280, height: 720 });
  const browsers = await box.request('GET', '/api/v1/remote/browsers', { auth: admin });
  assert.is(browsers.json.length, 1);
  assert.is(browsers.json[0].username, 'admin');
  await shot(page, 'remote-away-live');
});

/** The box's remote sessions, each as the cameras it sends. */
async function remoteSessions(): Promise<string[][]> {
  const all = (await box.broker.call('webrtc.sessions', {})) as Array<{ remote: boolean; cameras: string[] }>;
  return all.filter((s) => s.remote).map((s) => [...s.cameras].sort());
}

test('on a slow link away, the full view steps down to the sub-stream, and back to the main one when the link is good', async () => {
  await page.locator('a[href="/live/door"]').first().click();
  const video = page.locator('video[data-stream]');
  await waitUntil('the main stream playing', async () => (await video.getAttribute('data-stream')) === 'main', 10_000);
  await videoAdvances(page, 'video[data-stream]', 1, 30_000);
  // The operator's side toward away carries 1 Mbit/s: the main stream (2.5) does not fit, the sub-stream does.
  const tc = (...args: string[]) => run('ip', ['netns', 'exec', INET, 'tc', 'qdisc', ...args]);
  await tc('add', 'dev', 'inet-away', 'root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '100ms');
  try {
    await waitUntil('the sub-stream', async () => (await video.getAttribute('data-stream')) === 'sub', 30_000, 250);
    await videoAdvances(page, 'video[data-stream]', 2, 30_000);
    const size = await video.evaluate(
      (v) => `${(v as HTMLVideoElement).videoWidth}x${(v as HTMLVideoElement).videoHeight}`,
    );
    assert.is(size, '640x360');
  } finally {
    await tc('del', 'dev', 'inet-away', 'root');
  }
  await waitUntil(
    'the main stream again',
    async () => (await video.getAttribute('data-stream')) === 'main',
    60_000,
    250,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}; the player's last check of the link: ${await video.getAttribute('data-link')}`);
  });
  await videoAdvances(page, 'video[data-stream]', 1, 30_000);
  await waitUntil(
    'the main stream’s picture',
    () => video.evaluate((v) => (v as HTMLVideoElement).videoWidth === 1280),
    10_000,
  );
  await page.goBack();
});

test('back on the grid, each camera is on its own slot again: the right picture in each tile, still one connection', async () => {
  await page.locator('.tile[data-camera=porch]').waitFor({ timeout: 10_000 });
  await gridPlaysEachCamera(page);
  await waitUntil('the full view’s slot handed back', async () => (await remoteSessions())[0]?.length === 2, 10_000);
  assert.equal(await remoteSessions(), [['door', 'porch']]);
});

/** A request through a tunnel's data channel, as the protocol has it: the answer's head and body. */
async function tunnelled(channel: DataChannel, id: number, path: string) {
  const chunks: Buffer[] = [];
  let head: { status: number; headers: Record<string, string> } | undefined;
  const done = new Promise<void>((resolve) =>
    channel.onMessage((m) => {
      if (typeof m !== 'string') {
        const bytes = Buffer.from(m as ArrayBuffer);
        if (bytes.readUInt32BE(0) === id) chunks.push(bytes.subarray(4));
        return;
      }
      const message = JSON.parse(m) as {
        id?: number;
        status?: number;
        headers?: Record<string, string>;
        end?: boolean;
      };
      if (message.id !== id) return;
      if (message.status) head = { status: message.status, headers: message.headers ?? {} };
      if (message.end) resolve();
    }),
  );
  channel.sendMessage(JSON.stringify({ id, method: 'GET', path }));
  await waitUntil(`the answer to ${path}`, () => done.then(() => true), 10_000);
  await done;
  return { ...head!, body: Buffer.concat(chunks).toString() };
}

test('a client of our protocol that is not the app: the camera and the API on one connection, as its user', async () => {
  const client = await RemoteClient.connect(pairingOf((await invitation()).link));
  try {
    await client.pair('second client');
    const pc = new PeerConnection('client-camera', { iceServers: [] });
    const video = new Video('0', 'RecvOnly');
    video.addH264Codec(102, 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f');
    const track = pc.addTrack(video);
    keepUntilClosed(track);
    let rtp = 0;
    track.onMessage(() => rtp++);
    const channel = pc.createDataChannel('api');
    keepUntilClosed(channel);
    await waitUntil('candidates gathered', () => pc.gatheringState() === 'complete', 5000, 20);
    const reply = await client.send(client.offer(pc.localDescription()!.sdp, { camera: 'door' }));
    assert.ok(reply.ok, JSON.stringify(reply));
    if (!reply.ok) return;
    assert.is(reply.video, 'H264/102');
    assert.match(reply.sdp, /a=fingerprint:sha-256 /);
    pc.setRemoteDescription(reply.sdp, 'answer');
    await waitUntil('the tunnel open', () => channel.isOpen(), 15_000, 20);
    await waitUntil('the camera’s video arriving on the same connection', () => rtp > 50, 15_000, 50);
    const cameras = await tunnelled(channel, 1, '/api/v1/cameras');
    assert.is(cameras.status, 200);
    assert.ok((JSON.parse(cameras.body) as Array<{ id: string }>).some((c) => c.id === 'door'));
    const me = await tunnelled(channel, 2, '/api/v1/auth/me');
    assert.is(JSON.parse(me.body).via, 'remote');
    const sessions = (await box.broker.call('webrtc.sessions', {})) as Array<{
      remote: boolean;
      camera: string | null;
    }>;
    assert.ok(
      sessions.some((s) => s.remote && s.camera === 'door'),
      JSON.stringify(sessions),
    );
    pc.close();
  } finally {
    await client.close();
  }
});

test('forged, replayed, stale, misdirected and malformed offers get clear errors; a flood of 100 leaves the box answering', async () => {
  const client = await RemoteClient.connect(pairingOf((await invitation()).link));
  try {
    await client.pair('attacker-tested client');
    const { pc, sdp } = await peer((p) => p.createDataChannel('api'));
    const good = client.offer(sdp);
    const first = await client.send(good);
    assert.ok(first.ok, JSON.stringify(first));
    pc.close();
    const refused = async (offer: { id: string } & Record<string, unknown>) => {
      const r = await client.send(offer);
      return r.ok ? 'accepted' : r.error.type;
    };
    // The same message again (the operator replaying it): refused.
    assert.is(await refused(good), 'REPLAYED_OFFER');
    // Its signature on another camera's offer: refused.
    assert.is(await refused({ ...good, id: offerId(), camera: 'door' }), 'BAD_SIGNATURE');
    assert.is(await refused(client.offer(sdp, { at: Date.now() - 5 * 60_000 })), 'STALE_OFFER');
    assert.is(await refused(client.offer(sdp, { box: 'someone-else' })), 'WRONG_BOX');
    assert.is(await refused(client.offer(sdp, { browser: '0123456789abcdef' })), 'NOT_PAIRED');
    // The invitation was used by the pairing.
    assert.is(
      await refused({
        v: 1,
        id: offerId(),
        at: Date.now(),
        box: 'home-1',
        invitation: client.pairing.invitation,
        sdp,
      } as never),
      'BAD_INVITATION',
    );
    const bad = await client.send({
      v: 1,
      id: offerId(),
      at: Date.now(),
      box: 'home-1',
      browser: client.browser,
    } as never);
    assert.ok(!bad.ok && bad.error.type === 'BAD_OFFER' && /sdp/.test(bad.error.message), JSON.stringify(bad));
    await client.publish('not json at all');

    // 100 forged offers in a second: each answered with its error, and the box answers its users meanwhile.
    const flood = Array.from({ length: 100 }, () => ({
      ...client.offer(sdp),
      signature: Buffer.alloc(64, 7).toString('base64'),
    }));
    const started = Date.now();
    await Promise.all(flood.map((o) => client.publish(o)));
    const health = await box.request('GET', '/api/v1/health');
    assert.is(health.status, 200);
    const answers = await Promise.all(flood.map((o) => client.reply(o.id, 30_000)));
    // Each refused by name: its signature, or the box busy with the others (told at once, not dropped).
    const types = answers.map((a) => (a.ok ? 'accepted' : a.error.type));
    assert.ok(
      types.every((t) => t === 'BAD_SIGNATURE' || t === 'BUSY'),
      types.join(' '),
    );
    assert.ok(types.includes('BAD_SIGNATURE'));
    console.log(
      `    100 forged offers answered in ${Date.now() - started} ms (${types.filter((t) => t === 'BUSY').length} of them BUSY)`,
    );
    // The client's own offers still work.
    const { pc: again, sdp: sdp2 } = await peer((p) => p.createDataChannel('api'));
    assert.ok((await client.send(client.offer(sdp2))).ok);
    again.close();
  } finally {
    await client.close();
  }
});

test('a family member’s tunnel is held to their role; unpairing ends a browser’s sessions at once', async () => {
  const created = await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'kid', password: 'kid-password-1', role: 'family' },
  });
  assert.is(created.status, 201, created.text);
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'kid', password: 'kid-password-1' },
  });
  const kid = box.sessionOf(login.headers)!;
  const client = await RemoteClient.connect(pairingOf((await invitation(kid)).link));
  try {
    const browserId = await client.pair('kid’s phone');
    const pc = new PeerConnection('client-kid', { iceServers: [] });
    const channel = pc.createDataChannel('api');
    keepUntilClosed(channel);
    await waitUntil('candidates gathered', () => pc.gatheringState() === 'complete', 5000, 20);
    const reply = await client.send(client.offer(pc.localDescription()!.sdp));
    assert.ok(reply.ok);
    if (!reply.ok) return;
    pc.setRemoteDescription(reply.sdp, 'answer');
    await waitUntil('the tunnel open', () => channel.isOpen(), 15_000, 20);
    assert.is((await tunnelled(channel, 1, '/api/v1/cameras')).status, 200);
    assert.is((await tunnelled(channel, 2, '/api/v1/users')).status, 403);
    assert.is((await tunnelled(channel, 3, '/api/v1/system/config')).status, 403);
    // The kid sees only their own paired browsers.
    const theirs = await tunnelled(channel, 4, '/api/v1/remote/browsers');
    assert.equal(
      (JSON.parse(theirs.body) as Array<{ id: string }>).map((b) => b.id),
      [browserId],
    );

    const unpaired = await box.request('DELETE', `/api/v1/remote/browsers/${browserId}`, { auth: kid });
    assert.is(unpaired.status, 200, unpaired.text);
    await waitUntil('its session ended', () => !channel.isOpen(), 5000, 20);
    const after = await client.send(client.offer(pc.localDescription()!.sdp));
    assert.ok(!after.ok && after.error.type === 'NOT_PAIRED', JSON.stringify(after));
    pc.close();
  } finally {
    await client.close();
  }
});

test('with nothing between home and away (symmetric NAT, UDP blocked), the operator’s TURN relay carries it all', async () => {
  const before = turn.allocations;
  await net.blockDirect(true);
  try {
    await page.reload();
    assert.is(await reachShown(page), 'Away: relayed');
    await videoAdvances(page, 'video', 1, 30_000);
    assert.ok(turn.allocations > before, 'allocations on the TURN server');
    const cameras = await page.evaluate(async () => (await fetch('/api/v1/cameras')).status);
    assert.is(cameras, 200);
    await shot(page, 'remote-away-relayed');
  } finally {
    await net.blockDirect(false);
  }
});

test('the operator’s TURN server restarted mid-session: the app opens a new session through it and plays again', async () => {
  await net.blockDirect(true);
  try {
    await page.reload();
    assert.is(await reachShown(page), 'Away: relayed');
    await videoAdvances(page, 'video', 1, 30_000);
    await turn.stop(); // its allocations are gone with it: nothing reaches the box
    await turn.start(); // a new process: its log, and so its count of allocations, starts at 0
    const t0 = Date.now();
    // The old session's relay is gone; the app opens a new one through the restarted relay.
    await waitUntil('allocations on the restarted relay', () => turn.allocations > 0, 20_000);
    assert.is(await reachShown(page), 'Away: relayed');
    await videoAdvances(page, 'video', 1, 20_000 - (Date.now() - t0));
    assert.is(await page.evaluate(async () => (await fetch('/api/v1/auth/me')).status), 200);
  } finally {
    await net.blockDirect(false);
  }
});

test('the operator’s broker restarted mid-session: the session goes on, and new sessions start once it is back', async () => {
  await page.reload();
  await reachShown(page);
  await operator.stop();
  const during = await page.evaluate(async () => (await fetch('/api/v1/cameras')).status);
  assert.is(during, 200, 'the tunnel does not need the broker once it is up');
  await operator.start();
  await waitUntil(
    'the uplink back',
    async () => (await box.request('GET', '/api/v1/admp', { auth: admin })).json?.connected,
    30_000,
  );
  await page.reload();
  assert.match(await reachShown(page), /^Away: /);
  assert.is(await page.evaluate(async () => (await fetch('/api/v1/auth/me')).status), 200);
});

test('unpairing this browser at home ends its session away, and the app says it must be paired again', async () => {
  const [mine] = (
    (await box.request('GET', '/api/v1/remote/browsers', { auth: admin })).json as Array<{ id: string; name: string }>
  ).filter((b) => b.name === 'Browser');
  assert.ok(mine, 'the app’s pairing is listed');
  assert.is((await box.request('DELETE', `/api/v1/remote/browsers/${mine!.id}`, { auth: admin })).status, 200);
  await page.getByText('pair it once').waitFor({ timeout: 30_000 });
  await page.getByText('not paired').first().waitFor({ timeout: 5000 });
});

test.run();
