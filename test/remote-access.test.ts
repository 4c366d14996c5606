// Away from home, on a network made of namespaces (helpers/away-network.ts): the box at home
// behind a NAT filter, the operator's Mosquitto (with a WebSocket listener for browsers),
// coturn (STUN and TURN with per-session credentials) and a static host for the app, and
// Chromium away, which cannot reach the box's address at all. The app is paired from the box's
// invitation link, then everything goes through the tunnel: the API, pictures, live video and
// sound. A second client written from the protocol (node-datachannel, its own key) makes the
// offers an attacker or a broken client would.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chromium, type Browser, type Page } from 'playwright-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, Proc, waitUntil } from './helpers/processes.ts';
import { addRtspCameras, cameraClip, RtspCamera } from './helpers/video.ts';
import { shot, videoAdvances } from './helpers/browser.ts';
import { TurnServer } from './helpers/turn.ts';
import { OperatorBroker } from './helpers/operator.ts';
import { AwayNetwork, INET } from './helpers/away-network.ts';
import { offerId, pairingOf, peer, RemoteClient } from './helpers/remote-client.ts';

let net: AwayNetwork;
let turn: TurnServer;
let operator: OperatorBroker;
let appHost: Proc;
let box: TestBox;
let admin: string;
let door: RtspCamera;
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
  await door.start();
  await addRtspCameras(box, admin, { door });
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
  browser = await chromium.launch({
    executablePath: await net.chromiumAway(),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--autoplay-policy=no-user-gesture-required',
      // WebCrypto and service workers need a secure origin: the operator's site would be HTTPS.
      `--unsafely-treat-insecure-origin-as-secure=http://${net.operator}:8080`,
    ],
  });
  page = await (await browser.newContext()).newPage();
});

test.after(async () => {
  await browser?.close();
  await box?.stop();
  await door?.stop();
  await appHost?.kill('SIGKILL');
  await operator?.stop();
  await turn?.stop();
  await AwayNetwork.remove();
});

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
  await videoAdvances(page, 'video', 1, 30_000);
  const transport = await page.locator('[data-transport]').first().getAttribute('data-transport');
  assert.is(transport, 'webrtc');
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

test.run();
