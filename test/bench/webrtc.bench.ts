// npm run bench:webrtc — WebRTC live view against MSE live view (the reference), in one run, on
// loopback, with Debian's Chromium as the viewer and a real RTSP camera (H.264 without B-frames,
// 1280x720 15 fps, G.711 sound):
//   first frame: from the player's start (the offer sent; the socket opened) to the first frame
//     shown (requestVideoFrameCallback), median of RUNS;
//   CPU per viewer: the box's CPU (its process, and its sound encoders for WebRTC) with 1 and 10
//     viewers of one camera, less the same with none, over WINDOW_S seconds each; ROUNDS rounds
//     alternate the cases, and the medians are compared (one window is noisier than a viewer).
import { readdirSync, readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { testBox, withAdmin } from '../helpers/box.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';
import { addRtspCameras, cameraClip, RtspCamera } from '../helpers/video.ts';
import { launch } from '../helpers/browser.ts';
import { cpuNs } from './proc-stats.ts';

const RUNS = Number(process.env['RUNS'] ?? 7);
const WINDOW_S = Number(process.env['WINDOW_S'] ?? 15);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const box = await testBox({
  http: { port: await freePort() },
  video: { segmentSeconds: 4, maxViewersPerCamera: 50, maxViewersPerUser: 100 },
});
const admin = await withAdmin(box);
const base = `http://127.0.0.1:${box.config.http.port}`;
const cam = new RtspCamera(await freePort(), { clip: await cameraClip(), audio: 'pcma' });
await cam.start();
await addRtspCameras(box, admin, { door: cam });
const browser = await launch();
const context = await browser.newContext();
await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);

/**
 * The viewers, as plain JavaScript for the page: tsx names the functions of code it compiles
 * (`__name(...)`), which the page does not have.
 */
const VIEWERS = `async ({ kind, n }) => {
  const one = async () => {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    const shown = new Promise((resolve) => video.requestVideoFrameCallback((now) => resolve(now)));
    const started = performance.now();
    if (kind === 'webrtc') {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const media = new MediaStream();
      video.srcObject = media;
      pc.ontrack = (e) => media.addTrack(e.track);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const res = await fetch('/api/v1/cameras/door/whep', {
        method: 'POST',
        headers: { 'content-type': 'application/sdp' },
        body: offer.sdp,
      });
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    } else {
      const source = new MediaSource();
      video.src = URL.createObjectURL(source);
      await new Promise((r) => source.addEventListener('sourceopen', r, { once: true }));
      const ws = new WebSocket('ws://' + location.host + '/api/v1/cameras/door/live');
      ws.binaryType = 'arraybuffer';
      let buffer;
      const queue = [];
      const pump = () => {
        if (buffer && !buffer.updating && queue.length) buffer.appendBuffer(queue.shift());
      };
      ws.onmessage = (m) => {
        if (typeof m.data === 'string') {
          buffer = source.addSourceBuffer(JSON.parse(m.data).mime);
          buffer.mode = 'sequence';
          buffer.addEventListener('updateend', pump);
        } else queue.push(m.data);
        pump();
      };
    }
    return (await shown) - started;
  };
  return Promise.all(Array.from({ length: n }, () => one()));
}`;

/** Starts `n` viewers of one kind in a page; resolves with each one's ms to its first frame. */
async function viewers(page: Page, kind: 'webrtc' | 'mse', n: number): Promise<number[]> {
  return page.evaluate(`(${VIEWERS})(${JSON.stringify({ kind, n })})`) as Promise<number[]>;
}

/** The box's sound encoders for WebRTC: ffmpeg processes encoding Opus or G.711. */
const encoderPids = () =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return /pcm_alaw|pcm_mulaw|libopus/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'));
      } catch {
        return false;
      }
    })
    .map(Number);
const boxCpuNs = () => cpuNs(process.pid) + encoderPids().reduce((sum, pid) => sum + cpuNs(pid), 0);

/** The box's CPU, % of one core, over WINDOW_S with `n` viewers of `kind` playing (0: none). */
async function cpuWith(kind: 'webrtc' | 'mse', n: number): Promise<number> {
  const page = await context.newPage();
  await page.goto(`${base}/about:blank`).catch(() => undefined);
  if (n) await viewers(page, kind, n);
  await new Promise((r) => setTimeout(r, 3000)); // past the first GOP's burst and the page's start
  const t0 = performance.now();
  const c0 = boxCpuNs();
  await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
  const percent = ((boxCpuNs() - c0) / 1e6 / (performance.now() - t0)) * 100;
  await page.close();
  await waitUntil(
    'the viewers gone',
    async () => ((await box.broker.call('webrtc.sessions', {})) as []).length === 0,
    15_000,
  );
  await new Promise((r) => setTimeout(r, 1000));
  return percent;
}

console.log(`first frame, from the player's start, median of ${RUNS} (Chromium, loopback):`);
const first: Record<string, number> = {};
for (const kind of ['webrtc', 'mse'] as const) {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const page = await context.newPage();
    await page.goto(`${base}/about:blank`).catch(() => undefined);
    times.push(...(await viewers(page, kind, 1)));
    await page.close();
  }
  first[kind] = median(times);
  console.log(`  ${kind.padEnd(7)} ${Math.round(first[kind]!)} ms (runs: ${times.map(Math.round).join(', ')})`);
}
console.log(`  WebRTC / MSE: ${(first['webrtc']! / first['mse']!).toFixed(2)}x (target: WebRTC under 300 ms)`);

console.log(
  `box CPU per viewer, % of a core, ${WINDOW_S} s windows, median of ${ROUNDS} rounds (recording alone subtracted):`,
);
const samples: Record<string, number[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const [kind, n] of [
    ['mse', 0],
    ['webrtc', 1],
    ['mse', 1],
    ['webrtc', 10],
    ['mse', 10],
  ] as const) {
    const key = n === 0 ? 'none' : `${kind} ${n}`;
    (samples[key] ??= []).push(await cpuWith(kind, n));
  }
}
const idle = median(samples['none']!);
console.log(`  no viewer: ${idle.toFixed(1)} % (rounds: ${samples['none']!.map((x) => x.toFixed(1)).join(', ')})`);
for (const n of [1, 10]) {
  const per = (kind: string) => (median(samples[`${kind} ${n}`]!) - idle) / n;
  const rounds = (kind: string) => samples[`${kind} ${n}`]!.map((x) => x.toFixed(1)).join(', ');
  console.log(
    `  ${String(n).padStart(2)} viewer(s): WebRTC ${per('webrtc').toFixed(2)} %, MSE ${per('mse').toFixed(2)} % per viewer, ratio ${(per('webrtc') / per('mse')).toFixed(2)}x (target: at most 1.5x; box totals WebRTC ${rounds('webrtc')}, MSE ${rounds('mse')})`,
  );
}

await browser.close();
await box.stop();
await cam.stop();
process.exit(0);
