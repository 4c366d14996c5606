// npm run bench:ui — the web UI's weight and how fast live video starts in a real browser.
//   Bundle: the built files, raw and gzipped (what a phone downloads on the first visit).
//   Live: Debian's Chromium opens a camera's page; time from navigation to the first frame shown
//   (the <video>'s loadeddata), over RUNS fresh page loads of a real RTSP camera.
// Reference, same run: a bare WebSocket client (ws) on the same live socket, time to its first
// media fragment: what any player must wait for before it can show a frame.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { WebSocket } from 'ws';
import { testBox, withAdmin } from '../helpers/box.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';
import { RtspCamera } from '../helpers/video.ts';
import { launch } from '../helpers/browser.ts';

const RUNS = Number(process.env['RUNS'] ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

const root = path.join(import.meta.dirname, '..', '..');
execFileSync(process.execPath, ['--import', 'tsx', 'web-ui/build.ts', '--force'], { cwd: root, stdio: 'inherit' });
const dist = path.join(root, 'web-ui', 'dist');
const assets = readdirSync(path.join(dist, 'assets')).map((f) => path.join('assets', f));
const html = readFileSync(path.join(dist, 'index.html'), 'utf8');
console.log('bundle (web-ui/dist):');
let firstVisit = 0;
for (const file of ['index.html', ...assets]) {
  const raw = statSync(path.join(dist, file)).size;
  const gz = gzipSync(readFileSync(path.join(dist, file))).length;
  const loadedFirst = file === 'index.html' || html.includes(file);
  if (loadedFirst) firstVisit += gz;
  console.log(
    `  ${file.padEnd(36)} ${kb(raw).padStart(10)} raw ${kb(gz).padStart(10)} gzip${loadedFirst ? '' : '  (loaded only on Recordings)'}`,
  );
}
console.log(`  first visit downloads ${kb(firstVisit)} gzipped`);

const box = await testBox({ video: { segmentSeconds: 4 } });
const cam = new RtspCamera(await freePort());
await cam.start();
const admin = await withAdmin(box);
const port = box.broker.getLocalService('api')!.settings['port'];
const base = `http://127.0.0.1:${port}`;
await box.request('POST', '/api/v1/cameras', {
  auth: admin,
  body: { id: 'street', name: 'Street', source: { kind: 'rtsp', url: cam.url() } },
});
await waitUntil(
  'street online',
  async () => (await box.request('GET', '/api/v1/cameras/street', { auth: admin })).json.status?.state === 'online',
  20_000,
  200,
);

/** Reference: a bare client's time from opening the socket to its first moof+mdat. */
function rawFirstFragment(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/cameras/street/live`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    let binaries = 0;
    ws.on('message', (data, isBinary) => {
      // The first binary message is the init segment; the second the first fragment.
      if (isBinary && ++binaries === 2) {
        resolve(performance.now() - t0);
        ws.close();
      }
    });
    ws.on('error', reject);
  });
}

const browser = await launch();
const context = await browser.newContext();
await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);
const raw: number[] = [];
const pageToFrame: number[] = [];
const playerToFrame: number[] = [];
for (let i = 0; i < RUNS; i++) {
  raw.push(await rawFirstFragment());
  const page = await context.newPage();
  await page.goto(`${base}/live/street`);
  const video = await page.waitForSelector('.full video[data-first-frame-ms]', { timeout: 20_000 });
  playerToFrame.push(Number(await video.getAttribute('data-first-frame-ms')));
  // Counted from the navigation's start: the whole page load is in it.
  pageToFrame.push(Number(await video.getAttribute('data-first-frame-at')));
  await page.close();
}
await browser.close();
await box.stop();
await cam.stop();

const r = median(raw);
const p = median(playerToFrame);
console.log(`\nlive view, ${RUNS} page loads, medians:`);
console.log(`  reference: bare ws client, socket open to first fragment  ${r.toFixed(0)} ms`);
console.log(
  `  Chromium: player start to first frame shown                ${p.toFixed(0)} ms   ratio ${(p / r).toFixed(2)}x`,
);
console.log(`  Chromium: navigation to first frame (page load included)   ${median(pageToFrame).toFixed(0)} ms`);
