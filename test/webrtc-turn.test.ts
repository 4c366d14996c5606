// WebRTC live view through a TURN relay: Debian's coturn as the operator's TURN server, the
// box given it in webrtc.iceServers, and Chromium allowed relay candidates only
// (iceTransportPolicy "relay"), so the picture can only arrive through coturn. The network
// with NAT between home and away, where nothing else works, is for the P2P tunnel's tests.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Browser } from 'playwright-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort } from './helpers/processes.ts';
import { addRtspCameras, cameraClip, RtspCamera } from './helpers/video.ts';
import { launch } from './helpers/browser.ts';
import { TurnServer } from './helpers/turn.ts';

let box: TestBox;
let admin: string;
let base: string;
let cam: RtspCamera;
let turn: TurnServer;
let browser: Browser;

test.before(async () => {
  turn = new TurnServer();
  await turn.start();
  box = await testBox({
    http: { port: await freePort() },
    video: { segmentSeconds: 4 },
    webrtc: { iceServers: [turn.boxUrl] },
  });
  admin = await withAdmin(box);
  base = `http://127.0.0.1:${box.config.http.port}`;
  cam = new RtspCamera(await freePort(), { clip: await cameraClip() });
  await cam.start();
  await addRtspCameras(box, admin, { door: cam });
  browser = await launch();
});
test.after(async () => {
  await browser?.close();
  await box?.stop();
  await cam?.stop();
  await turn?.stop();
});

test('a viewer that may only use relays gets the picture through the TURN server', async () => {
  const context = await browser.newContext();
  await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);
  const page = await context.newPage();
  await page.goto(`${base}/about:blank`).catch(() => undefined);
  const result = await page.evaluate(async (server) => {
    const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: 'relay' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    const media = new MediaStream();
    video.srcObject = media;
    pc.ontrack = (e) => media.addTrack(e.track);
    await pc.setLocalDescription(await pc.createOffer());
    // Relay candidates come from the TURN server: the offer waits for them (no trickling).
    await new Promise<void>((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    });
    const started = performance.now();
    const res = await fetch('/api/v1/cameras/door/whep', {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: pc.localDescription!.sdp,
    });
    const answer = await res.text();
    if (res.status !== 201) return { status: res.status, answer, firstFrameMs: 0, local: '', remote: '', frames: 0 };
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const firstFrameMs = await new Promise<number>((resolve, reject) => {
      video.requestVideoFrameCallback(() => resolve(performance.now() - started));
      setTimeout(() => reject(new Error('no frame within 15 s')), 15_000);
    });
    await new Promise((r) => setTimeout(r, 1500));
    const stats = await pc.getStats();
    const byId = new Map<string, RTCStats & Record<string, unknown>>();
    stats.forEach((s) => byId.set(s.id, s as RTCStats & Record<string, unknown>));
    let pair: Record<string, unknown> | undefined;
    let frames = 0;
    stats.forEach((s) => {
      if (s.type === 'transport') pair = byId.get(s.selectedCandidatePairId as string);
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded;
    });
    return {
      status: res.status,
      answer,
      firstFrameMs,
      local: String(byId.get(pair?.['localCandidateId'] as string)?.['candidateType']),
      remote: String(byId.get(pair?.['remoteCandidateId'] as string)?.['candidateType']),
      frames,
    };
  }, turn.browserServer);
  assert.is(result.status, 201, result.answer);
  // The box gathered a relay candidate of its own too, from the same server.
  assert.match(result.answer, /typ relay/);
  assert.is(result.local, 'relay', 'the viewer’s side of the pair is the TURN relay');
  assert.ok(result.frames > 10, `${result.frames} frames decoded`);
  assert.ok(turn.allocations >= 1, 'coturn made the allocations');
  console.log(
    `    through TURN: first frame ${Math.round(result.firstFrameMs)} ms after the offer; pair ${result.local} ↔ ${result.remote}`,
  );
  await context.close();
});

test.run();
