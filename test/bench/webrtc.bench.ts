// npm run bench:webrtc — WebRTC live view against MSE live view (the reference), in one run, on
// loopback, with Debian's Chromium as the viewer and a real RTSP camera (H.264 without B-frames,
// 1280x720 15 fps, G.711 sound):
//   first frame: from the player's start (the offer sent; the socket opened) to the first frame
//     shown (requestVideoFrameCallback), median of RUNS;
//   CPU per viewer: the box's CPU (its process, and its sound encoders for WebRTC) with 1 and 10
//     viewers of one camera, less the same with none, over WINDOW_S seconds each; ROUNDS rounds
//     alternate the cases, and the medians are compared (one window is noisier than a viewer);
//   glass to glass: a push camera (ffmpeg, RTMP, 640x360 15 fps) writes the wall clock's
//     milliseconds into each frame as it makes it (20 black and white blocks); the page reads
//     them back from each frame it shows (requestVideoFrameCallback, a canvas) and takes them from
//     the frame's display time. One machine, one clock. It counts from the camera's capture, so
//     it holds the camera's encoding and its RTMP push as well as the box and the browser;
//   a slot handed a camera: on a connection already open (as the app away from home has one, its
//     tunnel), the camera put on a free slot (PUT, no offer), to its first frame, median of RUNS;
//   through a TURN relay: coturn on loopback, the box and Chromium allowed relay candidates
//     only, first frame as above (a second box, given the relay).
import { readdirSync, readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { testBox, withAdmin } from '../helpers/box.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';
import { addRtspCameras, cameraClip, RtspCamera } from '../helpers/video.ts';
import { launch } from '../helpers/browser.ts';
import { TurnServer } from '../helpers/turn.ts';
import { spawn } from 'node:child_process';
import { cpuNs } from './proc-stats.ts';

const RUNS = Number(process.env['RUNS'] ?? 7);
const WINDOW_S = Number(process.env['WINDOW_S'] ?? 15);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const LATENCY_S = Number(process.env['LATENCY_S'] ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;

const rtmpPort = await freePort();
const box = await testBox({
  http: { port: await freePort() },
  video: {
    segmentSeconds: 4,
    maxViewersPerCamera: 50,
    maxViewersPerUser: 100,
    rtmp: { host: '127.0.0.1', port: rtmpPort },
  },
});
const admin = await withAdmin(box);
const base = `http://127.0.0.1:${box.config.http.port}`;
const cam = new RtspCamera(await freePort(), { clip: await cameraClip(), audio: 'pcma' });
await cam.start();
await addRtspCameras(box, admin, { door: cam });
const browser = await launch();
const context = await browser.newContext();
await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);

/** Bits of the wall clock's milliseconds (mod 2^20, about 17 minutes) drawn in each frame. */
const CLOCK_BITS = 20;
const CLOCK_BLOCK = 32; // px wide, 40 high, along the top
/** A push camera whose frames carry the time they were made; the ffmpeg process. */
async function startClockCamera() {
  const res = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'clock', name: 'clock', source: { kind: 'rtmp' } },
  });
  if (res.status !== 201) throw new Error(`clock camera not added: ${res.text}`);
  const blocks = Array.from(
    { length: CLOCK_BITS },
    (_, k) =>
      `drawbox=x=${k * CLOCK_BLOCK}:y=0:w=${CLOCK_BLOCK}:h=40:color=white:t=fill:enable='mod(floor(t*1000/${2 ** k}),2)'`,
  );
  // The frame's time set to the wall clock (RTCTIME, µs) while the blocks are drawn, then back.
  const filter = [
    'settb=AVTB',
    'setpts=RTCTIME',
    'drawbox=x=0:y=0:w=640:h=40:color=black:t=fill',
    ...blocks,
    'setpts=N/15/TB',
  ];
  const ffmpeg = spawn(
    'ffmpeg',
    [
      '-v',
      'error',
      '-re',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=640x360:rate=15',
      '-vf',
      filter.join(','),
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-tune',
      'zerolatency',
      '-g',
      '30',
      '-an',
      '-f',
      'flv',
      `rtmp://127.0.0.1:${rtmpPort}/live/clock?key=${res.json.streamKey}`,
    ],
    { stdio: 'ignore' },
  );
  await waitUntil(
    'the clock camera online',
    async () => (await box.request('GET', '/api/v1/cameras/clock', { auth: admin })).json.status?.state === 'online',
    30_000,
    300,
  );
  return ffmpeg;
}

/**
 * Starts a player of `camera` in `video`; resolves to its close(). Plain JavaScript for the page:
 * tsx names the functions of code it compiles (`__name(...)`), which the page does not have.
 * WebRTC: a WHEP offer (relay candidates only when asked: the offer waits for them). MSE: the live
 * socket into a MediaSource, kept to the live edge as the app's player keeps it (more than 1.5 s
 * behind: jump to it).
 */
const PLAY = `async (video, kind, camera, { iceServers = [], relayOnly = false } = {}) => {
  video.muted = true;
  video.autoplay = true;
  if (kind === 'webrtc') {
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    video.srcObject = media;
    pc.ontrack = (e) => media.addTrack(e.track);
    await pc.setLocalDescription(await pc.createOffer());
    if (relayOnly)
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') resolve();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
      });
    const res = await fetch('/api/v1/cameras/' + camera + '/whep', {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return () => pc.close();
  }
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise((r) => source.addEventListener('sourceopen', r, { once: true }));
  const ws = new WebSocket('ws://' + location.host + '/api/v1/cameras/' + camera + '/live');
  ws.binaryType = 'arraybuffer';
  let buffer;
  const queue = [];
  const pump = () => {
    if (!buffer || buffer.updating) return;
    if (buffer.buffered.length) {
      const end = buffer.buffered.end(buffer.buffered.length - 1);
      if (end - video.currentTime > 1.5) video.currentTime = end - 0.2;
    }
    if (queue.length) buffer.appendBuffer(queue.shift());
  };
  ws.onmessage = (m) => {
    if (typeof m.data === 'string') {
      buffer = source.addSourceBuffer(JSON.parse(m.data).mime);
      buffer.mode = 'sequence';
      buffer.addEventListener('updateend', pump);
    } else queue.push(m.data);
    pump();
  };
  return () => ws.close();
}`;

/** A new <video> in the page, and a promise of the time its first frame is shown. */
const NEW_VIDEO = `() => {
  const video = document.createElement('video');
  document.body.append(video);
  return { video, shown: new Promise((resolve) => video.requestVideoFrameCallback((now) => resolve(now))) };
}`;

/**
 * One viewer of the clock camera: for each frame shown after the first 2 s (the first GOP's
 * burst), its display time less the time written in it, ms.
 */
const GLASS_TO_GLASS = `async ({ kind, seconds, bits, block }) => {
  const { video } = (${NEW_VIDEO})();
  const close = await (${PLAY})(video, kind, 'clock');
  const canvas = document.createElement('canvas');
  canvas.width = bits * block;
  canvas.height = 40;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const wrap = 2 ** bits;
  const out = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no frame within 15 s')), 15000);
    let first;
    const onFrame = (now, meta) => {
      clearTimeout(timer);
      first ??= now;
      if (now - first > 2000) {
        g.drawImage(video, 0, 0, canvas.width, 40, 0, 0, canvas.width, 40);
        const row = g.getImageData(0, 20, canvas.width, 1).data;
        let made = 0;
        for (let k = 0; k < bits; k++) if (row[(k * block + block / 2) * 4] > 128) made += 2 ** k;
        const shown = Math.round(performance.timeOrigin + meta.expectedDisplayTime) % wrap;
        out.push((shown - made + wrap) % wrap);
      }
      if (now - first > (seconds + 2) * 1000) resolve();
      else video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
  close();
  return out;
}`;

/** `n` viewers of the door camera; each one's ms from its player's start to its first frame. */
const VIEWERS = `async ({ kind, n }) => {
  const one = async () => {
    const { video, shown } = (${NEW_VIDEO})();
    const started = performance.now();
    await (${PLAY})(video, kind, 'door');
    return (await shown) - started;
  };
  return Promise.all(Array.from({ length: n }, () => one()));
}`;

/**
 * A session (WHEP for the door) given a second, empty slot by a new offer; then, RUNS times, the
 * door handed to that slot and let go: each time, ms from the PUT to the first frame received after it.
 */
const HANDED_SLOT = `async ({ runs }) => {
  const json = { 'content-type': 'application/json' };
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch('/api/v1/cameras/door/whep', {
    method: 'POST',
    headers: { 'content-type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const slots = '/api/v1/webrtc/sessions/' + res.headers.get('location').split('/').pop() + '/slots';
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  const v = pc.addTransceiver('video', { direction: 'recvonly' });
  const a = pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const body = JSON.stringify({ sdp: pc.localDescription.sdp, video: v.mid, audio: a.mid });
  const added = await (await fetch(slots, { method: 'POST', headers: json, body })).json();
  await pc.setRemoteDescription({ type: 'answer', sdp: added.sdp });
  const out = [];
  for (let i = 0; i < runs; i++) {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    video.srcObject = new MediaStream([v.receiver.track]);
    const started = performance.now();
    const shown = new Promise((resolve) => {
      const onFrame = (now, meta) =>
        (meta.receiveTime ?? now) >= started ? resolve(now) : video.requestVideoFrameCallback(onFrame);
      video.requestVideoFrameCallback(onFrame);
    });
    await fetch(slots + '/' + v.mid, { method: 'PUT', headers: json, body: JSON.stringify({ camera: 'door' }) });
    out.push((await shown) - started);
    await fetch(slots + '/' + v.mid, { method: 'DELETE' });
    video.remove();
    await new Promise((r) => setTimeout(r, 500));
  }
  pc.close();
  return out;
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

{
  const page = await context.newPage();
  await page.goto(`${base}/about:blank`).catch(() => undefined);
  const times = (await page.evaluate(`(${HANDED_SLOT})(${JSON.stringify({ runs: RUNS })})`)) as number[];
  await page.close();
  const handed = median(times);
  console.log(
    `  a slot handed the camera, on a connection already open (the app away): ${Math.round(handed)} ms (runs: ${times.map(Math.round).join(', ')}); ${(handed / first['webrtc']!).toFixed(2)}x a new WHEP session`,
  );
  await waitUntil(
    'the session gone',
    async () => ((await box.broker.call('webrtc.sessions', {})) as []).length === 0,
    15_000,
  );
}

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

console.log(`glass to glass, from the camera's capture to the frame shown, over ${LATENCY_S} s (640x360 15 fps):`);
const clockCamera = await startClockCamera();
const glass: Record<string, number> = {};
for (const kind of ['webrtc', 'mse'] as const) {
  const page = await context.newPage();
  await page.goto(`${base}/about:blank`).catch(() => undefined);
  const ms = (await page.evaluate(
    `(${GLASS_TO_GLASS})(${JSON.stringify({ kind, seconds: LATENCY_S, bits: CLOCK_BITS, block: CLOCK_BLOCK })})`,
  )) as number[];
  await page.close();
  glass[kind] = median(ms);
  console.log(
    `  ${kind.padEnd(7)} median ${glass[kind]} ms, 95th percentile ${percentile(ms, 0.95)} ms, least ${Math.min(...ms)} ms (${ms.length} frames)`,
  );
}
console.log(
  `  WebRTC / MSE: ${(glass['webrtc']! / glass['mse']!).toFixed(2)}x (target: WebRTC within 150 ms of the ingest)`,
);
clockCamera.kill('SIGKILL');
await browser.close();
await box.stop();

// Through a relay: a second box given coturn, and a viewer that may only use relays.
const turn = new TurnServer();
await turn.start();
const relayed = await testBox({
  http: { port: await freePort() },
  video: { segmentSeconds: 4 },
  webrtc: { iceServers: [turn.boxUrl] },
});
const relayedAdmin = await withAdmin(relayed);
const relayedBase = `http://127.0.0.1:${relayed.config.http.port}`;
await addRtspCameras(relayed, relayedAdmin, { door: cam });
const relayBrowser = await launch();
const relayContext = await relayBrowser.newContext();
await relayContext.addCookies([{ name: 'fogedge_session', value: relayedAdmin, url: relayedBase }]);
const RELAYED_VIEWER = `async (server) => {
  const { video, shown } = (${NEW_VIDEO})();
  const started = performance.now();
  const close = await (${PLAY})(video, 'webrtc', 'door', { iceServers: [server], relayOnly: true });
  const ms = (await shown) - started;
  close();
  return ms;
}`;
const relayTimes: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const page = await relayContext.newPage();
  await page.goto(`${relayedBase}/about:blank`).catch(() => undefined);
  relayTimes.push((await page.evaluate(`(${RELAYED_VIEWER})(${JSON.stringify(turn.browserServer)})`)) as number);
  await page.close();
}
console.log(
  `first frame through the TURN relay, from the player's start (its candidates gathered first), median of ${RUNS}:`,
);
console.log(
  `  webrtc  ${Math.round(median(relayTimes))} ms (runs: ${relayTimes.map(Math.round).join(', ')}); ${turn.allocations} allocations on the relay; against WebRTC on the LAN ${(median(relayTimes) / first['webrtc']!).toFixed(2)}x`,
);
await relayBrowser.close();
await relayed.stop();
await turn.stop();
await cam.stop();
process.exit(0);
