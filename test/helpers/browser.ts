// Debian's Chromium, headless, driven by playwright-core: the real browser of the web UI tests.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
/** Screenshots land here, to be looked at (npm test leaves them after the run). */
export const SHOTS = path.join(import.meta.dirname, '..', '..', 'scratch', 'screenshots');

/** Chromium as the tests run it; `executablePath` another way to start it (in a network namespace), `args` more flags. */
export function launch(options: { executablePath?: string; args?: string[] } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: options.executablePath ?? CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      ...(options.args ?? []),
    ],
  });
}

export async function shot(page: Page, name: string): Promise<void> {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Whether a <video> plays: its time moves on by at least `seconds`. */
export async function videoAdvances(page: Page, selector: string, seconds = 1, timeoutMs = 20_000): Promise<number> {
  const handle = await page.waitForSelector(selector, { timeout: timeoutMs });
  await page.waitForFunction((v) => (v as HTMLVideoElement).readyState >= 2, handle, { timeout: timeoutMs });
  const t0 = await handle.evaluate((v) => (v as HTMLVideoElement).currentTime);
  await page.waitForFunction(
    ([v, t, s]) => (v as HTMLVideoElement).currentTime > (t as number) + (s as number),
    [handle, t0, seconds] as const,
    { timeout: timeoutMs },
  );
  return handle.evaluate((v) => (v as HTMLVideoElement).currentTime);
}
