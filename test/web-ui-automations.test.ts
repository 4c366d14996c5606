// Modes and automations in Debian's Chromium against the real gateway and broker: the mode in
// one tap on the Live page (another MQTT client reads it; a switch made elsewhere shows at
// once), and an automation made with the builder (a wrong device named beside its field), then
// fired by a door contact (mosquitto_pub) so that a siren (mqtt.js) gets ON and the page shows
// the run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Browser, Page } from 'playwright-core';
import mqtt, { type MqttClient } from 'mqtt';
import { testBox, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { launch, shot } from './helpers/browser.ts';
import { mosquittoPub } from './helpers/mqtt.ts';

let box: TestBox;
let browser: Browser;
let page: Page;
let base: string;
let port: number;
let sub: ChildProcess;
let siren: MqttClient;
const subLines: string[] = [];
const heard: string[] = [];
const secrets: Record<string, string> = {};

const door = (message: string) =>
  mosquittoPub(port, { user: 'door', password: secrets['door']!, topic: 'fogedge/devices/door/contact', message });

test.before(async () => {
  port = await freePort();
  box = await testBox({ mqtt: { host: '127.0.0.1', port, tlsPort: null } });
  base = `http://127.0.0.1:${box.broker.getLocalService('api')!.settings['port']}`;
  browser = await launch();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const setup = await page.request.post(`${base}/api/v1/setup`, {
    data: { username: 'admin', password: 'admin-password-1' },
  });
  assert.is(setup.status(), 201);
  for (const [id, type] of [
    ['door', 'contact'],
    ['siren', 'generic'],
  ] as const) {
    const res = await page.request.post(`${base}/api/v1/devices`, { data: { id, name: id, type } });
    secrets[id] = (await res.json()).secret;
  }
  siren = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'siren',
    password: secrets['siren'],
    reconnectPeriod: 0,
  });
  siren.on('message', (_t, p) => heard.push(p.toString()));
  await siren.subscribeAsync('fogedge/devices/siren/cmd/#', { qos: 1 });
  const token = await (await page.request.post(`${base}/api/v1/tokens`, { data: { name: 'sub' } })).json();
  sub = spawn('mosquitto_sub', [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-u',
    'admin',
    '-P',
    token.token,
    '-t',
    'fogedge/mode/state',
    '-v',
  ]);
  sub.stdout!.on('data', (d: Buffer) => subLines.push(...d.toString().trim().split('\n')));
});

test.after(async () => {
  sub?.kill();
  siren?.end(true);
  await browser?.close();
  await box?.stop();
});

test('the mode in one tap on the Live page; another client reads it; a switch from elsewhere shows at once', async () => {
  await page.goto(base);
  await page.waitForSelector('.mode-bar [data-mode=home][aria-pressed=true]');
  await page.click('.mode-bar [data-mode=away]');
  await page.waitForSelector('.mode-bar [data-mode=away][aria-pressed=true]');
  await waitUntil('mosquitto_sub reads away', () => subLines.includes('fogedge/mode/state away'));
  const active = (await (await page.request.get(`${base}/api/v1/modes`)).json()).active;
  assert.is(active.id, 'away');
  assert.is(active.by, 'admin');
  // Switched over MQTT by someone else: the page follows without a reload.
  await box.broker.call('modes.set', { mode: 'night', via: 'schedule' });
  await page.waitForSelector('.mode-bar [data-mode=night][aria-pressed=true]', { timeout: 10_000 });
  assert.match(String(await page.textContent('.mode-since')), /schedule/);
  await shot(page, 'live-mode-bar');
});

test('a switch made while the updates socket was down shows once it is back (it reconnects by itself)', async () => {
  // The page's sockets, so that the test can drop them as a lost Wi-Fi would.
  await page.addInitScript(() => {
    const Native = WebSocket;
    const open: WebSocket[] = [];
    (window as unknown as { dropSockets: () => void }).dropSockets = () => open.forEach((s) => s.close());
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        open.push(this);
      }
    } as typeof WebSocket;
  });
  await page.goto(base);
  await page.waitForSelector('.mode-bar [data-mode=night][aria-pressed=true]');
  await page.waitForSelector('.who .dot.on');
  await page.evaluate(() => (window as unknown as { dropSockets: () => void }).dropSockets());
  await page.waitForSelector('.who .dot:not(.on)');
  await box.broker.call('modes.set', { mode: 'vacation', via: 'schedule' });
  await page.waitForSelector('.mode-bar [data-mode=vacation][aria-pressed=true]', { timeout: 15_000 });
  await box.broker.call('modes.set', { mode: 'night', via: 'schedule' });
});

test('the builder: a device that is not there is named beside its field; the saved automation fires and its run shows', async () => {
  await page.click('nav a:has-text("Automations")');
  await page.click('button:has-text("New automation")');
  await page.fill('.builder input[name=id]', 'door-night');
  await page.fill('.builder input[name=name]', 'Door at night');
  // When: the door sends "open" on its contact topic (the first kind of trigger).
  await page.fill('[data-list=triggers] input[name="triggers.0.device"]', 'gnome');
  await page.fill('[data-list=triggers] input[name="triggers.0.topic"]', 'contact');
  await page.fill('[data-list=triggers] input[name="triggers.0.match.equals"]', 'open');
  // Only if: the mode is night.
  await page.click('[data-list=conditions] button:has-text("Add a condition")');
  await page.fill('[data-list=conditions] input[name="conditions.0.in"]', 'night');
  // Then: the siren, ON.
  await page.selectOption('[data-list=actions] select[aria-label="actions 1"]', 'device.publish');
  await page.fill('[data-list=actions] input[name="actions.0.device"]', 'siren');
  await page.fill('[data-list=actions] input[name="actions.0.channel"]', 'siren');
  await page.fill('[data-list=actions] input[name="actions.0.payload"]', 'ON');
  await page.click('.builder button:has-text("Save")');
  const fieldError = await page.waitForSelector('[data-field="triggers.0.device"] .field-error');
  assert.match(String(await fieldError.textContent()), /no device "gnome"/);
  await shot(page, 'automation-builder-error');
  await page.fill('[data-list=triggers] input[name="triggers.0.device"]', 'door');
  await page.click('.builder button:has-text("Save")');
  await page.waitForSelector('[data-automation=door-night]');
  const saved = await (await page.request.get(`${base}/api/v1/automations/door-night`)).json();
  assert.equal(saved.triggers, [
    { kind: 'device.message', device: 'door', topic: 'contact', match: { equals: 'open' } },
  ]);
  assert.equal(saved.conditions, [{ kind: 'mode', in: ['night'] }]);
  assert.equal(saved.actions, [{ kind: 'device.publish', device: 'siren', channel: 'siren', payload: 'ON' }]);

  await door('{"contact": false}');
  await waitUntil('the siren ON', () => heard.includes('ON'));
  await page.click('[data-automation=door-night] button:has-text("Runs")');
  const done = await page.waitForSelector('[data-runs=door-night] li[data-result=done]', { timeout: 10_000 });
  assert.match(String(await done.textContent()), /device\.publish: ON to siren\/cmd\/siren/);
  assert.match(String(await done.textContent()), /mode is night/);
  await shot(page, 'automation-runs');
});

test('the on/off switch: an automation turned off does nothing', async () => {
  await page.uncheck('[data-automation=door-night] input[type=checkbox]');
  await waitUntil(
    'off',
    async () => (await (await page.request.get(`${base}/api/v1/automations/door-night`)).json()).enabled === false,
  );
  const before = heard.length;
  await door('OPEN');
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(heard.length, before);
});

test.run();
