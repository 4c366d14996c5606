// The web UI in a real browser (Debian's Chromium through playwright-core) against the real
// gateway, a real RTSP camera (GStreamer playing the street clip) and the real detector.
// One box for the file; the tests run in order, as an installer and then a homeowner would.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { personSeen, testBox, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { RtspCamera } from './helpers/video.ts';
import { OperatorBroker } from './helpers/operator.ts';
import { launch, shot, videoAdvances } from './helpers/browser.ts';
import mqtt from 'mqtt';

const ADMIN = { username: 'admin', password: 'admin-password-1' };
const FAMILY = { username: 'kim', password: 'family-password-1' };
let box: TestBox;
let cam: RtspCamera;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let base: string;
let mqttPort: number;

const api = async (path: string) => {
  const res = await page.request.get(`${base}${path}`);
  return res.json();
};

test.before(async () => {
  mqttPort = await freePort();
  box = await testBox({
    mqtt: { host: '127.0.0.1', port: mqttPort, tlsPort: await freePort() },
    video: { segmentSeconds: 4, stallSeconds: 5, restartMinMs: 300, restartMaxMs: 2000 },
    // Review items of at most 10 s: the looping street is never empty long enough to close one.
    detector: {
      enabled: true,
      preRollSeconds: 2,
      postRollSeconds: 2,
      stationaryEndSeconds: 10,
      reviewMaxSeconds: 10,
    },
    history: { everySeconds: 1, samples: 20 }, // the System page's charts, a sample a second
  });
  base = `http://127.0.0.1:${box.broker.getLocalService('api')!.settings['port']}`;
  cam = new RtspCamera(await freePort());
  await cam.start();
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
});
test.after(async () => {
  await browser?.close();
  await box?.stop();
  await cam?.stop();
});

test('first run: the admin account is made in the browser, then the first camera is asked for', async () => {
  await page.goto(base);
  await page.waitForSelector('#setup');
  // A short password is refused by the browser's own check first; the box refuses it too.
  await page.fill('#setup input[name=username]', ADMIN.username);
  await page.fill('#setup input[name=password]', ADMIN.password);
  await page.click('#setup button');
  await page.waitForSelector('h1:has-text("Add your first camera")');
  assert.ok(page.url().endsWith('/cameras/new?first=1'));
  const me = await api('/api/v1/auth/me');
  assert.is(me.user.role, 'admin');
});

test('adding a camera: Test says what is wrong with a bad URL, a bad field is named, a good one saves', async () => {
  // The form starts from the box's own defaults for a new camera (GET /api/v1/camera-defaults).
  const defaults = await api('/api/v1/camera-defaults');
  assert.is(defaults.recording.retainDays, 7);
  assert.is(
    await page.inputValue('#camera-form [data-field="recording.retainDays"] input'),
    String(defaults.recording.retainDays),
  );
  // Nothing listens there: the Test button says "unreachable".
  await page.fill('#camera-form input[name=id]', 'street');
  await page.fill('#camera-form input[name=name]', 'Street');
  await page.fill('#camera-form input[name=url]', `rtsp://127.0.0.1:${await freePort()}/cam`);
  await page.click('button:has-text("Test")');
  await page.waitForSelector('[data-testid=probe].bad', { timeout: 20_000 });
  assert.match(String(await page.textContent('[data-testid=probe]')), /Does not work: unreachable/);

  // Not an RTSP URL: saved anyway, the box refuses and the form names the field.
  await page.fill('#camera-form input[name=url]', 'http://192.168.1.20/stream');
  await page.click('#camera-form button:has-text("Add camera")');
  const fieldError = await page.waitForSelector('[data-field="source.url"] .field-error');
  assert.match(String(await fieldError.textContent()), /rtsp:\/\//);
  await shot(page, 'camera-form-errors');

  await page.fill('#camera-form input[name=url]', cam.url());
  await page.click('button:has-text("Test")');
  await page.waitForSelector('[data-testid=probe].ok', { timeout: 20_000 });
  assert.match(String(await page.textContent('[data-testid=probe]')), /Works: h264 1280×720/);
  await page.click('#camera-form button:has-text("Add camera")');
  await page.waitForSelector('tr[data-camera=street]');
  assert.is(page.url(), `${base}/cameras`);
  const camera = await api('/api/v1/cameras/street');
  assert.is(camera.source.url, cam.url());
  assert.equal(camera.detection, defaults.detection);
});

test('live: the tile of the camera plays within seconds, and its full view too', async () => {
  await waitUntil(
    'street online',
    async () => (await api('/api/v1/cameras/street')).status?.state === 'online',
    20_000,
    200,
  );
  const started = Date.now();
  await page.goto(base);
  const time = await videoAdvances(page, '[data-camera=street] video', 1.5);
  assert.ok(time > 1.5);
  const firstFrameMs = Number(await page.getAttribute('[data-camera=street] video', 'data-first-frame-ms'));
  assert.ok(firstFrameMs > 0, 'the player noted its first frame');
  console.log(
    `time to first live frame in Chromium: ${firstFrameMs} ms from the player's start (${Date.now() - started} ms with the page load and 1.5 s of play)`,
  );
  await shot(page, 'live-grid');
  await page.click('[data-camera=street]');
  await page.waitForURL(`${base}/live/street`);
  await videoAdvances(page, '.full video', 1);
  assert.match(String(await page.textContent('.status-line')), /online · h264 1280×720/);
});

test('a zone drawn on the snapshot with the mouse is saved with the camera', async () => {
  await page.goto(`${base}/cameras/street`);
  const canvas = await page.waitForSelector('[data-testid=zone-canvas]');
  await page.waitForFunction(
    () => ((document.querySelector('.zone-canvas img') as HTMLImageElement | null)?.naturalWidth ?? 0) > 0,
  );
  await canvas.scrollIntoViewIfNeeded();
  const box = (await canvas.boundingBox())!;
  await page.fill('input[aria-label="Zone name"]', 'sidewalk');
  for (const [x, y] of [
    [0.1, 0.5],
    [0.6, 0.5],
    [0.6, 0.95],
    [0.1, 0.95],
  ] as const) {
    await page.mouse.click(box.x + x * box.width, box.y + y * box.height);
  }
  await page.click('button:has-text("Finish shape (4)")');
  await page.waitForSelector('.zone-canvas polygon.zone');
  await shot(page, 'zone-drawn');
  await page.click('#camera-form button:has-text("Save")');
  await page.waitForSelector('#camera-form .ok');
  const camera = await api('/api/v1/cameras/street');
  assert.is(camera.detection.zones.length, 1);
  const zone = camera.detection.zones[0];
  assert.is(zone.name, 'sidewalk');
  assert.is(zone.points.length, 4);
  // Where the mouse went, relative to the frame.
  assert.ok(
    Math.abs(zone.points[1][0] - 0.6) < 0.02 && Math.abs(zone.points[2][1] - 0.95) < 0.02,
    JSON.stringify(zone.points),
  );
  // On a phone, with a finger: a motion mask over the top of the picture.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  await phone.addCookies(await context.cookies());
  const touch = await phone.newPage();
  await touch.goto(`${base}/cameras/street`);
  // Saving the zone restarted the stream: the editor comes back once the camera streams again.
  await touch.waitForFunction(
    () => ((document.querySelector('.zone-canvas img') as HTMLImageElement | null)?.naturalWidth ?? 0) > 0,
    undefined,
    { timeout: 30_000 },
  );
  await touch.selectOption('select[aria-label="What to draw"]', 'motion');
  const area = await touch.waitForSelector('[data-testid=zone-canvas]');
  await area.scrollIntoViewIfNeeded();
  const r = (await area.boundingBox())!;
  for (const [x, y] of [
    [0.05, 0.05],
    [0.95, 0.05],
    [0.5, 0.3],
  ] as const)
    await touch.touchscreen.tap(r.x + x * r.width, r.y + y * r.height);
  await touch.click('button:has-text("Finish shape (3)")');
  await touch.click('#camera-form button:has-text("Save")');
  await touch.waitForSelector('#camera-form .ok');
  await shot(touch, 'phone-camera-mask');
  const masked = await api('/api/v1/cameras/street');
  assert.is(masked.detection.motionMasks.length, 1);
  assert.is(masked.detection.zones.length, 1, 'the zone drawn before is kept');
  assert.ok(
    Math.abs(masked.detection.motionMasks[0][1][0] - 0.95) < 0.03,
    JSON.stringify(masked.detection.motionMasks),
  );
  await phone.close();
});

test('events: a person event appears without a reload, with its picture and box; its clip plays in place', async () => {
  await page.goto(`${base}/events`);
  await page.waitForSelector('h1:has-text("Events")');
  // Pushed over the updates socket: the page is not reloaded.
  await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
  const item = await page.waitForSelector('li.event:has-text("person")', { timeout: 60_000 });
  assert.is(
    await page.evaluate(() => (window as unknown as { marker?: number }).marker),
    42,
    'the same page, not reloaded',
  );
  // The thumbnail (320 px, of this picture's version) replaces a neutral placeholder, never a black box.
  const thumb = await page.waitForSelector('li.event .thumb.loaded img');
  const shown = await thumb.evaluate((img: HTMLImageElement) => ({
    width: img.naturalWidth,
    src: img.getAttribute('src'),
    placeholder: getComputedStyle(img.parentElement!).backgroundImage,
  }));
  assert.is(shown.width, 320, 'the small picture, not the full snapshot');
  assert.match(shown.src!, /\/thumbnail\.jpg\?v=\d+$/);
  assert.match(shown.placeholder, /gradient/);
  assert.ok(await page.$('li.event .thumb.loaded svg rect'), 'the box is drawn over the picture');
  // An event that has ended has its clip.
  const ended = await waitUntil(
    'an ended person event',
    async () => {
      const list = await api('/api/v1/events?label=person');
      return list.find((e: { end: string | null }) => e.end);
    },
    90_000,
    1000,
  );
  await page.reload();
  await page.click(`li[data-event="${ended.id}"] .event-head`);
  await videoAdvances(page, `li[data-event="${ended.id}"] video.clip`, 0.5);
  await shot(page, 'events');
  await page.click(`li[data-event="${ended.id}"] button:has-text("Mark reviewed")`);
  await page.waitForSelector(`li[data-event="${ended.id}"].reviewed`);
  assert.is((await api(`/api/v1/events/${ended.id}`)).reviewed, true);
  assert.ok(item);
  page.once('dialog', (d) => void d.accept());
  await page.click(`li[data-event="${ended.id}"] button:has-text("Delete")`);
  await page.waitForSelector(`li[data-event="${ended.id}"]`, { state: 'detached' });
  assert.is((await page.request.get(`${base}/api/v1/events/${ended.id}`)).status(), 404);
});

test('review: people on the street are alerts; a preview plays on hover; "Mark all reviewed" clears the list', async () => {
  await page.goto(`${base}/review`);
  await page.waitForSelector('h1:has-text("Review")');
  const withPreview = await waitUntil(
    'an alert with its preview',
    async () => (await api('/api/v1/review?severity=alert')).find((i: { hasPreview: boolean }) => i.hasPreview),
    90_000,
    1000,
  );
  // Pushed over the updates socket: it shows up (and gets its preview) without a reload.
  const row = `li[data-item="${withPreview.id}"]`;
  // Its picture, or a placeholder (never a black box) when its event was deleted meanwhile.
  await page.waitForSelector(`${row} .thumb:is(.loaded, .failed)`, { timeout: 30_000 });
  await page.hover(`${row} .event-head`);
  await videoAdvances(page, `${row} video.preview`, 0.5);
  await shot(page, 'review');
  // A new alert comes while the preview plays (on another camera: it goes on top). The list keeps
  // its order, so the row stays under the pointer and plays on; the new one shows when it leaves.
  const rowAt = async () => (await page.locator(row).boundingBox())!.y;
  const before = await rowAt();
  const gate = await page.request.post(`${base}/api/v1/cameras`, {
    data: { id: 'gate', name: 'Gate', source: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/none' } },
  });
  assert.is(gate.status(), 201, await gate.text());
  await personSeen(box, 'gate', 'gate-visitor');
  const gateItem = await waitUntil(
    'the gate’s alert',
    async () => (await api('/api/v1/review?severity=alert')).find((i: { camera: string }) => i.camera === 'gate'),
    10_000,
    200,
  );
  await new Promise((r) => setTimeout(r, 2000)); // the update reaches the page meanwhile
  assert.is(await page.locator(`li[data-item="${gateItem.id}"]`).count(), 0, 'not shown while a preview plays');
  assert.is(await rowAt(), before, 'the pointed-at row has not moved');
  await videoAdvances(page, `${row} video.preview`, 0.5);
  await page.mouse.move(0, 0);
  await page.waitForSelector(`li[data-item="${gateItem.id}"]`, { timeout: 10_000 });
  // As the page would: a cookie's request without a body says where it comes from (CSRF check).
  const removed = await page.request.delete(`${base}/api/v1/cameras/gate`, { headers: { origin: base } });
  assert.is(removed.status(), 200, await removed.text());
  // Its footage on the recordings page: the item is a band on the day bar, pointing at it shows
  // its picture, and playback starts where it began.
  await page.click(`${row} a:has-text("Recordings")`);
  await page.waitForURL(/\/recordings\?camera=street&at=/);
  const band = await page.waitForSelector(`.day-bar .band.alert[data-item="${withPreview.id}"]`);
  await page.waitForSelector('.day-bar .cursor');
  const bandBox = (await band.boundingBox())!;
  await page.mouse.move(bandBox.x + bandBox.width / 2, bandBox.y + bandBox.height / 2);
  const scrub = await page.waitForSelector('.day-bar .scrub img');
  await page.waitForFunction((img) => (img as HTMLImageElement).naturalWidth === 320, scrub);
  await shot(page, 'recordings-items');
  await page.goto(`${base}/review`);
  await page.waitForSelector(row);
  await tabListsOnly('alert');
  await page.click('button:has-text("Mark all reviewed")');
  await page.waitForSelector(row, { state: 'detached' });
  assert.is((await api(`/api/v1/review/${withPreview.id}`)).reviewed, true);
  // Detections are apart: the tab lists only them.
  await page.click('nav.tabs button:has-text("Detections")');
  await page.waitForURL(/severity=detection/);
  await tabListsOnly('detection');
});

/**
 * The review page's tab lists only items of its severity. The street keeps moving: items open
 * (and may turn into alerts) while we look, and the page follows them over the updates socket,
 * so the page is compared with the box until they agree; a tab that shows others never does.
 */
async function tabListsOnly(severity: 'alert' | 'detection') {
  await waitUntil(
    `the ${severity} tab lists only ${severity}s`,
    async () => {
      const shown = await page.$$eval('li.review-item', (els) => els.map((e) => e.getAttribute('data-item')!));
      const listed = new Set(
        (await api(`/api/v1/review?severity=${severity}&reviewed=false`)).map((i: { id: string }) => i.id),
      );
      const loaded = shown.length > 0 || (await page.isVisible(`text=No ${severity}s to review`));
      return loaded && shown.every((id) => listed.has(id));
    },
    20_000,
    500,
  );
}

test('recordings: the day shows what was recorded; a click plays from there; a range exports with progress', async () => {
  await page.goto(`${base}/recordings?camera=street`);
  await page.waitForSelector('.day-bar .range');
  // Where the street moved, along the bar.
  await page.waitForSelector('.day-bar .motion');
  const first = (
    await api(
      `/api/v1/cameras/street/timeline?from=${new Date(Date.now() - 3_600_000).toISOString()}&to=${new Date().toISOString()}`,
    )
  ).ranges[0];
  // Click the bar just after the recording began.
  await (await page.$('[data-testid=timeline]'))!.scrollIntoViewIfNeeded();
  const bar = (await (await page.$('[data-testid=timeline]'))!.boundingBox())!;
  const dayStart = new Date();
  dayStart.setHours(0, 0, 0, 0);
  const at = (Date.parse(first.start) + 3000 - dayStart.getTime()) / 86_400_000;
  await page.mouse.click(bar.x + at * bar.width + 1, bar.y + bar.height / 2);
  await videoAdvances(page, 'video.playback', 1, 30_000);
  await shot(page, 'recordings');
  // The export range was set from the click: a minute from there.
  await page.click('button:has-text("Export clip")');
  const link = await page.waitForSelector('a:has-text("Save street-")', { timeout: 60_000 });
  assert.match(String(await link.textContent()), /\(\d+(\.\d)? (KB|MB)\)/);
});

test('users: the admin adds a family member, who cannot open the admin pages', async () => {
  await page.goto(`${base}/users`);
  await page.fill('#add-user input[name=username]', FAMILY.username);
  await page.fill('#add-user input[name=password]', 'short');
  await page.click('#add-user button');
  assert.match(
    String(await (await page.waitForSelector('#add-user [data-field=password] .field-error')).textContent()),
    /10/,
  );
  await page.fill('#add-user input[name=password]', FAMILY.password);
  await page.click('#add-user button');
  await page.waitForSelector(`tr[data-user=${FAMILY.username}]`);

  const other = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const phone = await other.newPage();
  await phone.goto(base);
  await phone.fill('#sign-in input[name=username]', FAMILY.username);
  await phone.fill('#sign-in input[name=password]', 'wrong-password-1');
  await phone.click('#sign-in button');
  assert.match(
    String(await (await phone.waitForSelector('#sign-in .problem')).textContent()),
    /Wrong user name or password/,
  );
  await phone.fill('#sign-in input[name=password]', FAMILY.password);
  await phone.click('#sign-in button');
  await phone.waitForSelector('nav');
  const nav = await phone.$$eval('nav a', (as) => as.map((a) => a.textContent));
  assert.equal(nav, ['Live', 'Review', 'Events', 'Recordings', 'Automations', 'System', 'Me']);
  for (const path of ['/cameras', '/users', '/devices']) {
    await phone.goto(`${base}${path}`);
    await phone.waitForSelector('h1:has-text("Not for your account")');
  }
  // And the API says the same, whatever the page shows.
  assert.is((await phone.request.get(`${base}/api/v1/users`)).status(), 403);
  // Phone-sized: the pages fit the screen's width.
  for (const path of ['/', '/events', '/recordings', '/system', '/settings']) {
    await phone.goto(`${base}${path}`);
    await phone.waitForSelector('h1');
    await phone.waitForTimeout(300);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${path} is ${width} px wide on a 390 px screen`);
    await shot(phone, `phone${path.replace(/\//g, '-') || '-live'}`);
  }
  await videoAdvances(phone, '[data-camera=street] video', 0.5).catch(async () => {
    await phone.goto(base);
    await videoAdvances(phone, '[data-camera=street] video', 0.5);
  });
  await other.close();
});

test('devices: pairing opened in the page, a device that knocks shows up as pending, and is allowed', async () => {
  await page.goto(`${base}/devices`);
  await page.click('button:has-text("Open pairing for 5 minutes")');
  await page.waitForSelector('text=Pairing open');
  // A real MQTT client knocks with credentials the box does not know yet: refused, held as pending.
  const knock = await mqtt
    .connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      username: 'garage-door',
      password: 'garage-door-secret-1',
      reconnectPeriod: 0,
      connectTimeout: 5000,
    })
    .catch((err: Error) => err);
  assert.ok(knock instanceof Error, 'a pending device may not connect yet');
  const row = await page.waitForSelector('tr[data-device=garage-door] .state.pending');
  assert.ok(row, 'shown without a reload');
  await page.click('tr[data-device=garage-door] button:has-text("Allow")');
  await page.waitForSelector('tr[data-device=garage-door] .state.allowed');
  const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    username: 'garage-door',
    password: 'garage-door-secret-1',
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  assert.ok(device.connected);
  await device.endAsync();
  await shot(page, 'devices');
});

test('me: the notifications I want are saved (this camera, people, at night)', async () => {
  await page.goto(`${base}/settings`);
  await page.waitForSelector('#notifications');
  await page.check('#notifications label:has-text("Tell me about new events") input');
  await page.check('#notifications [aria-label=Cameras] label:has-text("Street") input');
  await page.check('#notifications [aria-label=Objects] label:has-text("person") input');
  await page.fill('#notifications [data-field="rules.0.from"] input', '22:00');
  await page.fill('#notifications [data-field="rules.0.to"] input', '06:30');
  await page.click('#notifications button');
  await page.waitForSelector('#notifications .ok');
  const saved = await api('/api/v1/auth/me/notifications');
  assert.equal(saved, {
    enabled: true,
    rules: [{ cameras: ['street'], labels: ['person'], zones: [], from: '22:00', to: '06:30' }],
  });
});

test('an expired session asks to sign in over the page; what was typed is kept and sent', async () => {
  await page.goto(`${base}/settings`);
  await page.waitForSelector('#password');
  await page.fill('#password input[name=currentPassword]', ADMIN.password);
  await page.fill('#password input[name=newPassword]', 'admin-password-2');
  // The session ends behind the page's back (as when it expires).
  const cookie = (await context.cookies()).find((c) => c.name === 'fogedge_session')!;
  const res = await box.request('POST', '/api/v1/auth/logout', {
    headers: { cookie: `fogedge_session=${cookie.value}`, origin: 'http://localhost' },
  });
  assert.is(res.status, 200, res.text);
  await page.click('#password button');
  await page.waitForSelector('#session-dialog');
  assert.is(
    await page.inputValue('#password input[name=newPassword]'),
    'admin-password-2',
    'the form under the dialog keeps its values',
  );
  await page.fill('#session-dialog input[name=password]', ADMIN.password);
  await page.click('#session-dialog button');
  // The password change went through after signing in again.
  await page.waitForSelector('#password .ok');
  assert.ok(!(await page.$('#session-dialog')));
  ADMIN.password = 'admin-password-2';
  const login = await box.request('POST', '/api/v1/auth/login', { body: ADMIN });
  assert.is(login.status, 200);
});

test('the box out of reach for a moment: the page says so and recovers by itself', async () => {
  await page.goto(`${base}/system`);
  await page.waitForSelector('#storage meter');
  assert.match(String(await page.textContent('#storage')), /free of/);
  assert.match(String(await page.textContent('#cameras tr[data-camera=street]')), /online.*kbit\/s.*(KB|MB) since/);
  // The browser's network goes away (playwright's offline mode: the box keeps running).
  await context.setOffline(true);
  await page.click('nav a:has-text("Events")');
  await page.waitForSelector('.banner:has-text("does not answer")');
  await shot(page, 'box-unreachable');
  await context.setOffline(false);
  await page.waitForSelector('.banner', { state: 'detached', timeout: 15_000 });
});

test('system: the installer links the box to its operator; a bad URL is named at its field; the link shows connected', async () => {
  const adm = await OperatorBroker.start({ 'ui-box': 'ui-secret-1' });
  try {
    await page.goto(`${base}/system`);
    await page.waitForSelector('#uplink:has-text("runs local only")');
    await page.click('#uplink button:has-text("Link to an operator")');
    await page.fill('#provisioning input[name=url]', 'http://not-mqtt');
    await page.click('#provisioning button:text-is("Link")');
    await page.waitForSelector('#provisioning [data-field=url] .field-error:has-text("an MQTT URL")');
    await page.fill('#provisioning input[name=url]', adm.url);
    await page.fill('#provisioning input[name=boxId]', 'ui-box');
    await page.fill('#provisioning input[name=username]', 'ui-box');
    await page.fill('#provisioning input[name=password]', 'ui-secret-1');
    await page.click('#provisioning button:text-is("Link")');
    await page.waitForSelector('#uplink [data-state=connected]', { timeout: 15_000 });
    assert.match(
      String(await page.textContent('#uplink')),
      new RegExp(`Connected to mqtt://127.0.0.1:${adm.port} as ui-box`),
    );
    await shot(page, 'system-operator-linked');
    await page.click('#uplink button:has-text("Unlink")');
    await page.waitForSelector('#uplink:has-text("runs local only")');
  } finally {
    await adm.stop();
  }
});

test('system: the last day is charted from the box’s own samples: CPU, memory, disk, sync queue, each camera’s detector', async () => {
  await page.goto(`${base}/system`);
  type History = {
    samples: Array<{
      cpuPercent: number;
      cores: number;
      memoryBytes: number;
      diskUsedPercent: number;
      cameras: Record<string, { cpuPercent: number; fps: number | null }>;
    }>;
  };
  // Asked as the page asks, with its session.
  const history = () => page.evaluate(() => fetch('/api/v1/system/history').then((r) => r.json())) as Promise<History>;
  const h = await waitUntil(
    'samples with the camera detecting',
    async () => {
      const now = await history();
      return now.samples.length >= 5 && Object.values(now.samples.at(-1)!.cameras).some((c) => c.fps! > 0) && now;
    },
    30_000,
  );
  const last = h.samples.at(-1)!;
  // This test's process is the box: it records and detects, so it works, and holds more than its code.
  assert.ok(last.cpuPercent > 0 && last.cpuPercent <= last.cores * 100, `CPU ${last.cpuPercent} %`);
  assert.ok(last.memoryBytes > 50 * 2 ** 20, `memory ${last.memoryBytes}`);
  assert.ok(last.diskUsedPercent > 0 && last.diskUsedPercent < 100, `disk ${last.diskUsedPercent} %`);
  assert.ok(h.samples.length <= 20, 'no more samples kept than asked for');
  const camera = Object.keys(last.cameras).find((id) => last.cameras[id]!.fps! > 0)!;
  // Its ffmpegs (recording, detection frames) and its inferences: some, and less than the whole box.
  const own = last.cameras[camera]!.cpuPercent;
  assert.ok(
    own > 0 && own <= last.cpuPercent,
    `camera CPU ${own} % of the box's ${last.cpuPercent} % (${JSON.stringify(last)})`,
  );
  await page.reload();
  // What the installer sees: a line per figure, drawn through the samples, the newest value beside it.
  for (const label of ['CPU', 'Memory', 'Disk used', 'Sync queue', `${camera}: CPU`, `${camera}: detector frames/s`]) {
    const chart = page.locator(`#last-day figure[data-label^="${label}"]`);
    await waitUntil(
      `the ${label} chart drawn through 5 samples`,
      async () => ((await chart.locator('polyline').getAttribute('points')) ?? '').trim().split(/\s+/).length >= 5,
      10_000,
    );
  }
  assert.match(
    String(await page.locator('#last-day figure[data-label^="CPU"] figcaption').innerText()),
    /CPU \(\d+ cores\): \d+ %/,
  );
  assert.match(
    String(await page.locator(`#last-day figure[data-label^="${camera}: detector"] figcaption`).innerText()),
    /frames\/s: [\d.]+ · \d+ ms a frame/,
  );
  assert.match(
    String(await page.locator(`#last-day figure[data-label^="${camera}: CPU"] figcaption`).innerText()),
    /CPU: [\d.]+ % of a core/,
  );
  // What detection runs on, and on hover why no accelerator (this machine has no GPU).
  const accelerators = page.locator('#accelerators');
  assert.match(
    String(await accelerators.innerText()),
    /Detection runs on the CPU, decoding in software \(not used: .*vaapi/,
  );
  assert.match(String(await accelerators.getAttribute('title')), /vaapi: no GPU render node/);
  await shot(page, 'system-last-day');
});

test('a camera that stalls shows offline with the reason on the live page, then plays again, without a reload', async () => {
  await page.goto(base);
  await videoAdvances(page, '[data-camera=street] video', 0.5);
  cam.pause();
  try {
    const offline = await page.waitForSelector('[data-camera=street] .offline', { timeout: 30_000 });
    assert.match(String(await offline.textContent()), /Offline.*stalled|Reconnecting/);
    await shot(page, 'live-offline');
  } finally {
    cam.resume();
  }
  await videoAdvances(page, '[data-camera=street] video', 0.5, 40_000);
});

test('a camera is removed from its page', async () => {
  await page.goto(`${base}/cameras/street`);
  page.once('dialog', (d) => void d.accept());
  await page.click('button:has-text("Remove camera")');
  await page.waitForURL(`${base}/cameras`);
  await page.waitForSelector('tr[data-camera=street]', { state: 'detached' });
  assert.is((await page.request.get(`${base}/api/v1/cameras/street`)).status(), 404);
});

test('first run on a box that has the demo camera: after setup the admin lands on Live and it plays', async () => {
  const demoBox = await testBox({ video: { demoCamera: true, segmentSeconds: 4 } });
  const fresh = await context.browser()!.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const demoBase = `http://127.0.0.1:${demoBox.broker.getLocalService('api')!.settings['port']}`;
    const first = await fresh.newPage();
    await first.goto(demoBase);
    await first.fill('#setup input[name=username]', ADMIN.username);
    await first.fill('#setup input[name=password]', ADMIN.password);
    await first.click('#setup button');
    await first.waitForURL(`${demoBase}/`);
    await videoAdvances(first, '[data-camera=demo] video', 0.5, 30_000);
  } finally {
    await fresh.close();
    await demoBox.stop();
  }
});

test.run();
