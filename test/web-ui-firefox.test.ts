// The web UI in Firefox: Debian's firefox-esr, headless, driven by puppeteer-core over WebDriver
// BiDi (playwright-core's Firefox needs its own patched build), against the real gateway and a
// real RTSP camera. What differs between browsers is tested here: signing in, live view through
// MediaSource, recordings through hls.js, the phone-sized layout. web-ui.test.ts covers the rest
// in Chromium.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { SHOTS } from './helpers/browser.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { RtspCamera } from './helpers/video.ts';

const FIREFOX = process.env['FIREFOX_PATH'] ?? '/usr/bin/firefox-esr';
let box: TestBox;
let cam: RtspCamera;
let browser: Browser;
let page: Page;
let base: string;
let admin: string;

/** Whether a <video> plays in the page: its time moves on by `seconds`. */
async function videoAdvances(selector: string, seconds: number, timeoutMs = 30_000): Promise<number> {
  await page.waitForSelector(selector, { timeout: timeoutMs });
  await page.waitForFunction(
    (s) => ((document.querySelector(s) as HTMLVideoElement | null)?.readyState ?? 0) >= 2,
    { timeout: timeoutMs },
    selector,
  );
  const t0 = await page.$eval(selector, (v) => (v as HTMLVideoElement).currentTime);
  await page.waitForFunction(
    (s, t, d) => (document.querySelector(s) as HTMLVideoElement).currentTime > t + d,
    { timeout: timeoutMs },
    selector,
    t0,
    seconds,
  );
  return page.$eval(selector, (v) => (v as HTMLVideoElement).currentTime);
}

async function shot(name: string): Promise<void> {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `firefox-${name}.png`) as `${string}.png`, fullPage: true });
}

test.before(async () => {
  box = await testBox({ video: { segmentSeconds: 4, stallSeconds: 5, restartMinMs: 300, restartMaxMs: 2000 } });
  base = `http://127.0.0.1:${box.broker.getLocalService('api')!.settings['port']}`;
  admin = await withAdmin(box);
  cam = new RtspCamera(await freePort());
  await cam.start();
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'street', name: 'Street', source: { kind: 'rtsp', url: cam.url() }, detection: { enabled: false } },
  });
  assert.is(added.status, 201, added.text);
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: { 'media.autoplay.default': 0 },
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
});
test.after(async () => {
  await browser?.close();
  await box?.stop();
  await cam?.stop();
});

test('Firefox: a wrong password is said so; the right one signs in', async () => {
  await page.goto(base);
  await page.waitForSelector('#sign-in input[name=username]');
  await page.type('#sign-in input[name=username]', 'admin');
  await page.type('#sign-in input[name=password]', 'wrong-password-1');
  await page.click('#sign-in button');
  await page.waitForSelector('#sign-in .problem');
  assert.match(String(await page.$eval('#sign-in .problem', (e) => e.textContent)), /Wrong user name or password/);
  await page.$eval('#sign-in input[name=password]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('#sign-in input[name=password]', 'admin-password-1');
  await page.click('#sign-in button');
  await page.waitForSelector('[data-camera=street]', { timeout: 20_000 });
});

test('Firefox: the live tile plays through MediaSource, and the full view too', async () => {
  await waitUntil(
    'street online',
    async () => (await box.request('GET', '/api/v1/cameras/street', { auth: admin })).json.status?.state === 'online',
    20_000,
    200,
  );
  await page.goto(base);
  assert.ok((await videoAdvances('[data-camera=street] video', 1.5)) > 1.5);
  const firstFrameMs = Number(
    await page.$eval('[data-camera=street] video', (v) => v.getAttribute('data-first-frame-ms')),
  );
  assert.ok(firstFrameMs > 0, 'the player noted its first frame');
  console.log(`time to first live frame in Firefox: ${firstFrameMs} ms from the player's start`);
  await shot('live-grid');
  await page.click('[data-camera=street]');
  await page.waitForSelector('.full video');
  await videoAdvances('.full video', 1);
});

test('Firefox: recordings play from a click on the day bar (HLS through hls.js)', async () => {
  await waitUntil(
    'a recorded segment',
    async () => {
      const t = (
        await box.request(
          'GET',
          `/api/v1/cameras/street/timeline?from=${new Date(Date.now() - 3_600_000).toISOString()}&to=${new Date().toISOString()}`,
          { auth: admin },
        )
      ).json;
      return t.ranges?.length > 0 && Date.parse(t.ranges[0].end) - Date.parse(t.ranges[0].start) >= 8000 && t.ranges[0];
    },
    40_000,
    500,
  );
  const first = (
    await box.request(
      'GET',
      `/api/v1/cameras/street/timeline?from=${new Date(Date.now() - 3_600_000).toISOString()}&to=${new Date().toISOString()}`,
      { auth: admin },
    )
  ).json.ranges[0];
  await page.goto(`${base}/recordings?camera=street`);
  await page.waitForSelector('.day-bar .range');
  const bar = (await (await page.$('[data-testid=timeline]'))!.boundingBox())!;
  const dayStart = new Date();
  dayStart.setHours(0, 0, 0, 0);
  const at = (Date.parse(first.start) + 2000 - dayStart.getTime()) / 86_400_000;
  await page.mouse.click(bar.x + at * bar.width + 1, bar.y + bar.height / 2);
  await videoAdvances('video.playback', 1);
  await shot('recordings');
});

test('Firefox on a 390-pixel-wide screen: the pages fit without sideways scrolling', async () => {
  await page.setViewport({ width: 390, height: 844 });
  for (const where of ['/', '/events', '/recordings?camera=street', '/cameras', '/system']) {
    await page.goto(`${base}${where}`);
    await page.waitForSelector('main');
    await new Promise((r) => setTimeout(r, 300));
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 390, `${where}: ${wide} px wide`);
  }
  await shot('phone-system');
});

test.run();
