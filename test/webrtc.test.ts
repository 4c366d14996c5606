// WebRTC live view over WHEP (RFC 9725) with real parts: a real RTSP camera (GStreamer, the
// street as an IP camera encodes it: H.264 Main, no B-frames), the box's node-datachannel, and
// two players that are not the box's code: Chromium's RTCPeerConnection driven by a plain WHEP
// exchange written here from the RFC, and GStreamer's webrtcbin. The web UI prefers WebRTC and
// falls back to MSE by itself for a camera WebRTC cannot carry (B-frames, H.265).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { addRtspCameras, cameraClip, ffmpegReading, RtspCamera } from './helpers/video.ts';
import { launch, shot, videoAdvances } from './helpers/browser.ts';

const run = promisify(execFile);
let box: TestBox;
let admin: string;
let base: string;
let door: RtspCamera; // H.264 without B-frames, with G.711 sound: what WebRTC carries as it is
let street: RtspCamera; // the bundled clip: H.264 with B-frames, which WebRTC players cannot reorder
let hevc: RtspCamera;
let browser: Browser;
let context: BrowserContext;
let page: Page;

const sessions = async () =>
  (await box.broker.call('webrtc.sessions', {})) as Array<{ session: string; camera: string; bytesSent: number }>;

test.before(async () => {
  box = await testBox({
    http: { port: await freePort() },
    video: { segmentSeconds: 4, stallSeconds: 5, restartMinMs: 300, restartMaxMs: 2000, maxViewersPerCamera: 3 },
  });
  admin = await withAdmin(box);
  base = `http://127.0.0.1:${box.config.http.port}`;
  door = new RtspCamera(await freePort(), { clip: await cameraClip(), audio: 'pcma' });
  street = new RtspCamera(await freePort());
  hevc = new RtspCamera(await freePort(), { h265: true });
  await Promise.all([door.start(), street.start(), hevc.start()]);
  // The H.265 clip is short (it ends and starts again): only the others need be online to begin.
  await addRtspCameras(box, admin, { door, street, hevc }, ['door', 'street']);
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);
  page = await context.newPage();
  await page.goto(`${base}/about:blank`).catch(() => undefined); // any page of the box's origin
});
test.after(async () => {
  await browser?.close();
  await box?.stop();
  await Promise.all([door?.stop(), street?.stop(), hevc?.stop()]);
});

/**
 * A WHEP player in the page, written from RFC 9725 alone: recvonly video and audio, the offer
 * POSTed as application/sdp, the answer set. Resolves when a frame is shown, with what it saw.
 */
async function whepInPage(p: Page, camera: string, headers: Record<string, string> = {}, audioOnly?: string) {
  return p.evaluate(
    async ({ camera, headers, audioOnly }) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      const sound = pc.addTransceiver('audio', { direction: 'recvonly' });
      // A viewer that takes one audio codec only (setCodecPreferences: the offer lists just it).
      if (audioOnly)
        sound.setCodecPreferences(
          RTCRtpReceiver.getCapabilities('audio')!.codecs.filter((c) => c.mimeType.toLowerCase() === audioOnly),
        );
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.id = `whep-${camera}`;
      document.body.append(video);
      const media = new MediaStream();
      video.srcObject = media;
      pc.ontrack = (e) => media.addTrack(e.track);
      (window as unknown as Record<string, RTCPeerConnection>)[`pc_${camera}`] = pc;
      (window as unknown as Record<string, MediaStream>)[`media_${camera}`] = media;
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const started = performance.now();
      const res = await fetch(`/api/v1/cameras/${camera}/whep`, {
        method: 'POST',
        headers: { 'content-type': 'application/sdp', ...headers },
        body: offer.sdp,
      });
      const text = await res.text();
      if (res.status !== 201) return { status: res.status, text, location: null, contentType: null, firstFrameMs: 0 };
      await pc.setRemoteDescription({ type: 'answer', sdp: text });
      const firstFrameMs = await new Promise<number>((resolve, reject) => {
        video.requestVideoFrameCallback(() => resolve(performance.now() - started));
        setTimeout(() => reject(new Error('no frame shown within 15 s')), 15_000);
      });
      return {
        status: res.status,
        text,
        location: res.headers.get('location'),
        contentType: res.headers.get('content-type'),
        firstFrameMs,
      };
    },
    { camera, headers, audioOnly },
  );
}

/**
 * What the page hears of a camera: the loudest frequency of the received sound over 2 s (Web
 * Audio's analyser on the session's stream) and the codec it came in.
 */
async function soundHeard(p: Page, camera: string) {
  return p.evaluate(async (camera) => {
    const w = window as unknown as Record<string, unknown>;
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 4096;
    context.createMediaStreamSource(w[`media_${camera}`] as MediaStream).connect(analyser);
    await new Promise((r) => setTimeout(r, 2000));
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let loudest = 1;
    for (let i = 1; i < bins.length; i++) if (bins[i]! > bins[loudest]!) loudest = i;
    const stats = await (w[`pc_${camera}`] as RTCPeerConnection).getStats();
    const codecs = new Map<string, string>();
    let codec = '';
    stats.forEach((s) => s.type === 'codec' && codecs.set(s.id, s.mimeType));
    stats.forEach((s) => s.type === 'inbound-rtp' && s.kind === 'audio' && (codec = codecs.get(s.codecId) ?? ''));
    await context.close();
    return { hz: (loudest * context.sampleRate) / analyser.fftSize, db: bins[loudest]!, codec };
  }, camera);
}

/** Frames the page's session of a camera has decoded so far. */
const framesDecoded = (p: Page, camera: string) =>
  p.evaluate(async (camera) => {
    const stats = await (window as unknown as Record<string, RTCPeerConnection>)[`pc_${camera}`]!.getStats();
    let frames = 0;
    stats.forEach((s) => s.type === 'inbound-rtp' && s.kind === 'video' && (frames = s.framesDecoded));
    return frames;
  }, camera);

/** A Chromium offer to receive video, for requests made from here. */
const videoOffer = (p: Page) =>
  p.evaluate(async () => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    const offer = await pc.createOffer();
    pc.close();
    return offer.sdp!;
  });

/** Hangs up a WHEP session as the admin (DELETE its Location); the HTTP status. */
const hangUp = async (location: string) =>
  (await fetch(`${base}${location}`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })).status;

/** Closes the page's peer connection to a camera. */
const closePeer = (p: Page, camera: string) =>
  p.evaluate((camera) => (window as unknown as Record<string, RTCPeerConnection>)[`pc_${camera}`]!.close(), camera);

/** How far a shown frame is from the camera's snapshot: mean absolute difference of 64×36 greys, 0–255. */
async function differenceFromSnapshot(p: Page, selector: string, camera: string): Promise<number> {
  return p.evaluate(
    async ({ selector, camera }) => {
      const image = new Image();
      image.src = `/api/v1/cameras/${camera}/snapshot.jpg?t=${Date.now()}`;
      await image.decode();
      // Both as 64×36 greys (no named helpers here: the page gets this function's text alone).
      const greys: number[][] = [];
      for (const source of [document.querySelector(selector) as HTMLVideoElement, image]) {
        const canvas = document.createElement('canvas');
        canvas.width = 64;
        canvas.height = 36;
        const g = canvas.getContext('2d')!;
        g.drawImage(source, 0, 0, 64, 36);
        const { data } = g.getImageData(0, 0, 64, 36);
        const out: number[] = [];
        for (let i = 0; i < data.length; i += 4) out.push((data[i]! + data[i + 1]! + data[i + 2]!) / 3);
        greys.push(out);
      }
      const [shown, snapshot] = greys as [number[], number[]];
      return shown.reduce((sum, v, i) => sum + Math.abs(v - snapshot[i]!), 0) / shown.length;
    },
    { selector, camera },
  );
}

test('a plain WHEP exchange from Chromium: 201 with the answer and Location, and the camera’s picture plays', async () => {
  const result = await whepInPage(page, 'door');
  assert.is(result.status, 201, result.text);
  assert.is(result.contentType, 'application/sdp');
  assert.match(result.location!, /^\/api\/v1\/whep\/[\w-]{16,}$/);
  // Not trickled: the answer carries the box's candidates, and the camera's H.264 as it is.
  assert.match(result.text, /a=candidate:/);
  assert.match(result.text, /a=rtpmap:\d+ H264\/90000/);
  assert.match(result.text, /a=sendonly/);
  console.log(`    WebRTC first frame in Chromium: ${Math.round(result.firstFrameMs)} ms after the offer was sent`);
  await videoAdvances(page, '#whep-door', 1.5);
  const size = await page.$eval('#whep-door', (v) => [
    (v as HTMLVideoElement).videoWidth,
    (v as HTMLVideoElement).videoHeight,
  ]);
  assert.equal(size, [1280, 720], 'the main stream, not scaled');
  // What is shown is the camera's picture (the street), not black or garbage.
  const difference = await differenceFromSnapshot(page, '#whep-door', 'door');
  assert.ok(difference < 25, `the frame matches the camera's snapshot (mean difference ${difference.toFixed(1)})`);
  const decoded = await framesDecoded(page, 'door');
  assert.ok(decoded > 15, `${decoded} frames decoded`);
  const open = await sessions();
  assert.is(open.length, 1);
  assert.ok(open[0]!.bytesSent > 100_000, `the session counts what it sent: ${open[0]!.bytesSent} bytes`);
  // DELETE hangs up: the session and its viewer's place are gone.
  const res = await page.evaluate(
    (location) => fetch(location, { method: 'DELETE' }).then((r) => r.status),
    result.location!,
  );
  assert.is(res, 200);
  await waitUntil('the session gone', async () => (await sessions()).length === 0, 5000);
});

test('sound over WebRTC: the doorbell’s G.711 goes as PCMA; a viewer that takes only Opus gets Opus; the tone is heard', async () => {
  for (const [only, codec] of [
    [undefined, 'audio/PCMA'],
    ['audio/opus', 'audio/opus'],
  ] as const) {
    const result = await whepInPage(page, 'door', {}, only);
    assert.is(result.status, 201, result.text);
    assert.match(result.text, codec === 'audio/PCMA' ? /a=rtpmap:8 PCMA\/8000/ : /a=rtpmap:\d+ opus\/48000\/2/);
    const heard = await soundHeard(page, 'door');
    assert.is(heard.codec, codec);
    assert.ok(
      Math.abs(heard.hz - 440) < 30 && heard.db > -60,
      `the 440 Hz tone: loudest ${heard.hz.toFixed(0)} Hz at ${heard.db.toFixed(0)} dB`,
    );
    console.log(`    ${codec}: loudest ${heard.hz.toFixed(0)} Hz at ${heard.db.toFixed(0)} dB`);
    await hangUp(result.location!);
    await closePeer(page, 'door');
  }
  await waitUntil('no session left', async () => (await sessions()).length === 0, 5000);
});

test('GStreamer’s webrtcbin, a WHEP client that is not ours, decodes the camera’s H.264', async () => {
  const { stdout } = await run(
    '/usr/bin/python3',
    [path.join(import.meta.dirname, 'helpers', 'whep_client.py'), `${base}/api/v1/cameras/door/whep`, admin, '4'],
    { timeout: 30_000 },
  );
  const m = /^frames (\d+) (\d+x\d+)/.exec(stdout);
  assert.ok(m, stdout);
  assert.ok(Number(m[1]) >= 20, `decoded ${m[1]} frames in 4 s`);
  assert.is(m[2], '1280x720');
  // It hung up with DELETE at the end.
  await waitUntil('its session gone', async () => (await sessions()).length === 0, 5000);
});

test('the web UI plays over WebRTC and says so; a camera WebRTC cannot carry (B-frames) falls back to MSE by itself', async () => {
  const ui = await context.newPage();
  await ui.goto(base);
  await videoAdvances(ui, '[data-camera=door] video[data-transport=webrtc]', 1.5);
  await videoAdvances(ui, '[data-camera=street] video[data-transport=mse]', 1.5);
  assert.match(
    String(await ui.getAttribute('[data-camera=street] video', 'title')),
    /MSE \(WebRTC: .*B-frames/,
    'the tile says why it is not WebRTC',
  );
  assert.is(await ui.textContent('[data-camera=door] .transport'), 'WebRTC');
  await shot(ui, 'live-webrtc');
  await ui.close();
  await waitUntil('the page’s sessions end with it', async () => (await sessions()).length === 0, 15_000);
});

test('bad input and who may watch: each refusal names what was wrong', async () => {
  const post = (camera: string, body: string, headers: Record<string, string>) =>
    fetch(`${base}/api/v1/cameras/${camera}/whep`, { method: 'POST', body, headers });
  const sdp = { 'content-type': 'application/sdp', authorization: `Bearer ${admin}` };
  // No credential.
  assert.is((await post('door', 'v=0\r\n', { 'content-type': 'application/sdp' })).status, 401);
  // Not SDP, and SDP with nothing to receive video on.
  let res = await post('door', 'hello', sdp);
  assert.is(res.status, 400);
  assert.match((await res.json()).error.message, /not SDP/);
  res = await post('door', 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=recvonly\r\n', sdp);
  assert.is(res.status, 400);
  assert.match((await res.json()).error.message, /no video section/);
  // The wrong content type.
  res = await post('door', '{}', { ...sdp, 'content-type': 'application/json' });
  assert.is(res.status, 400);
  assert.match((await res.json()).error.message, /application\/sdp/);
  // A camera that is not there.
  assert.is((await post('nope', 'v=0\r\n', sdp)).status, 404);
  // H.265: not for WebRTC here, 415 with the reason (the web UI plays it over MSE).
  const offer = await videoOffer(page);
  res = await post('hevc', offer, sdp);
  assert.is(res.status, 415);
  assert.match((await res.json()).error.message, /hvc1|hev1|H\.264 only/);
  // Another user's session: not theirs to hang up or add to.
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'kim', password: 'family-password-1', role: 'family' },
  });
  const kim = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'kim', password: 'family-password-1' } }))
      .headers,
  )!;
  const opened = await whepInPage(page, 'door');
  assert.is(opened.status, 201);
  const other = await fetch(`${base}${opened.location}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${kim}` },
  });
  assert.is(other.status, 404);
  const trickle = await fetch(`${base}${opened.location}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/trickle-ice-sdpfrag' },
    body: 'a=mid:0\r\na=candidate:1 1 UDP 2122260223 127.0.0.1 9 typ host\r\n',
  });
  assert.is(trickle.status, 204);
  assert.is((await sessions()).length, 1, 'still open');
  assert.is(await hangUp(opened.location!), 200);
  await closePeer(page, 'door');
});

test('slots: a session takes one more camera by a new offer on the same connection, and a slot is handed cameras with no offer; bad slot requests are refused by name', async () => {
  const first = await whepInPage(page, 'door');
  assert.is(first.status, 201, first.text);
  try {
    const session = first.location!.split('/').pop()!;
    // The page's helpers as a script: functions inside page.evaluate must not have names (see above).
    await page.evaluate(`
        window.slotCall = async (method, path, body) => {
          const res = await fetch(path, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
          return { status: res.status, json: await res.json() };
        };
        window.framesOf = async (receiver) => {
          let frames = 0;
          (await receiver.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') frames = s.framesDecoded; });
          return frames;
        };`);
    const result = await page.evaluate(async (session) => {
      type Answer = { status: number; json: Record<string, unknown> & { error?: { type: string } } };
      const w = window as unknown as {
        pc_door: RTCPeerConnection;
        slotCall(method: string, path: string, body?: object): Promise<Answer>;
        framesOf(receiver: RTCRtpReceiver): Promise<number>;
      };
      const pc = w.pc_door;
      const slots = `/api/v1/webrtc/sessions/${session}/slots`;
      const send = w.slotCall;
      const video = pc.addTransceiver('video', { direction: 'recvonly' });
      const audio = pc.addTransceiver('audio', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const sdp = pc.localDescription!.sdp;
      const garbage = await send('POST', slots, { sdp: 'hello', video: video.mid });
      const unknownMid = await send('POST', slots, { sdp, video: '42' });
      const added = await send('POST', slots, { sdp, video: video.mid, audio: audio.mid });
      await pc.setRemoteDescription({ type: 'answer', sdp: added.json['sdp'] as string });
      const again = await send('POST', slots, { sdp, video: video.mid });
      const street = await send('PUT', `${slots}/${video.mid}`, { camera: 'street' });
      const hevc = await send('PUT', `${slots}/${video.mid}`, { camera: 'hevc' });
      const noSlot = await send('PUT', `${slots}/77`, { camera: 'door' });
      const door = await send('PUT', `${slots}/${video.mid}`, { camera: 'door', stream: 'main' });
      const shown = document.createElement('video');
      shown.muted = true;
      shown.id = 'slot-two';
      shown.srcObject = new MediaStream([video.receiver.track]);
      document.body.append(shown);
      await shown.play();
      await new Promise((r) => setTimeout(r, 2000));
      const playing = await w.framesOf(video.receiver);
      const emptied = await send('DELETE', `${slots}/${video.mid}`);
      await new Promise((r) => setTimeout(r, 500));
      const atEmpty = await w.framesOf(video.receiver);
      await new Promise((r) => setTimeout(r, 1500));
      const whileEmpty = (await w.framesOf(video.receiver)) - atEmpty;
      const handedAgain = await send('PUT', `${slots}/${video.mid}`, { camera: 'door' });
      await new Promise((r) => setTimeout(r, 2000));
      const resumed = (await w.framesOf(video.receiver)) - atEmpty;
      return {
        garbage: [garbage.status, garbage.json.error?.type],
        unknownMid: [unknownMid.status, unknownMid.json.error?.type],
        added: added.status,
        again: [again.status, again.json.error?.type],
        street: [street.status, street.json.error?.type],
        hevc: [hevc.status, hevc.json.error?.type],
        noSlot: [noSlot.status, noSlot.json.error?.type],
        door: [door.status, door.json['video'], door.json['audio']],
        playing,
        emptied: emptied.status,
        whileEmpty,
        handedAgain: handedAgain.status,
        resumed,
      };
    }, session);
    assert.equal(result.garbage, [400, 'BAD_OFFER']);
    assert.equal(result.unknownMid, [400, 'BAD_OFFER']);
    assert.is(result.added, 201);
    assert.equal(result.again, [400, 'BAD_OFFER'], 'a section is made a slot once');
    assert.equal(result.street, [415, 'NOT_FOR_WEBRTC'], 'B-frames cannot go on a slot either');
    assert.equal(result.hevc, [415, 'NOT_FOR_WEBRTC']);
    assert.equal(result.noSlot, [404, 'WEBRTC_SLOT_NOT_FOUND']);
    assert.equal(result.door.slice(0, 1), [200]);
    assert.match(String(result.door[1]), /^H264\/\d+$/);
    // A slot made before any camera sends Opus: any camera's sound is encoded to it.
    assert.match(String(result.door[2]), /^opus\/\d+$/);
    assert.ok(result.playing > 15, `the second slot decoded ${result.playing} frames`);
    assert.is(result.emptied, 200);
    assert.ok(result.whileEmpty <= 1, `an emptied slot sends nothing (${result.whileEmpty} frames)`);
    assert.is(result.handedAgain, 200);
    assert.ok(result.resumed > 15, `handed a camera again, it plays from a keyframe (${result.resumed} frames)`);
    // One session, one connection: the first camera went on all along.
    const open = await sessions();
    assert.is(open.length, 1);
    assert.equal((open[0] as unknown as { cameras: string[] }).cameras, ['door', 'door']);
    await videoAdvances(page, '#whep-door', 1);
    // Someone else's session is not found (as for hanging up): kim (family) may watch, not touch this one.
    const kim = box.sessionOf(
      (await box.request('POST', '/api/v1/auth/login', { body: { username: 'kim', password: 'family-password-1' } }))
        .headers,
    )!;
    const other = await fetch(`${base}/api/v1/webrtc/sessions/${session}/slots/0`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${kim}` },
    });
    assert.is(other.status, 404);
  } finally {
    // Hung up whatever happened: the camera's viewer cap is the next tests' too.
    await hangUp(first.location!);
    await closePeer(page, 'door');
    await page.evaluate(() => {
      document.getElementById('slot-two')?.remove();
      document.getElementById('whep-door')?.remove();
    });
  }
});

test('each session is a live viewer: the camera’s cap holds for WebRTC too (429)', async () => {
  const opened = [];
  for (let i = 0; i < 3; i++) {
    const r = await whepInPage(page, 'door');
    assert.is(r.status, 201, r.text);
    opened.push(r.location!);
  }
  const refused = await whepInPage(page, 'door');
  assert.is(refused.status, 429);
  assert.match(refused.text, /3 live viewers/);
  for (const location of opened) await hangUp(location);
  await waitUntil('all gone', async () => (await sessions()).length === 0, 5000);
});

test('the camera’s ffmpeg restarts during a session: the picture comes back on its own, same session', async () => {
  const opened = await whepInPage(page, 'door');
  assert.is(opened.status, 201, opened.text);
  const [pid] = ffmpegReading(door);
  process.kill(pid!, 'SIGKILL');
  await waitUntil('a new ffmpeg for the door', () => ffmpegReading(door).some((p) => p !== pid), 20_000);
  const before = await framesDecoded(page, 'door');
  await waitUntil('frames again', async () => (await framesDecoded(page, 'door')) > before + 30, 20_000, 250);
  assert.is((await sessions()).length, 1, 'the same session went on');
  assert.is(await hangUp(opened.location!), 200);
  await closePeer(page, 'door');
});

test('garbage and floods: a malformed candidate is a 400; 100 offers at once get their places or a 429, and the box answers on', async () => {
  const opened = await whepInPage(page, 'door');
  assert.is(opened.status, 201, opened.text);
  for (const fragment of ['a=candidate:garbage\r\n', 'a=mid:9\r\na=candidate:1 1 UDP 1 999.1.1.1 1 typ host\r\n']) {
    const res = await fetch(`${base}${opened.location}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/trickle-ice-sdpfrag' },
      body: fragment,
    });
    assert.ok([204, 400].includes(res.status), `${fragment.trim()}: ${res.status}`);
    if (res.status === 400) assert.match((await res.json()).error.message, /candidate/i);
  }
  assert.is((await sessions()).length, 1, 'the session survived the garbage');
  await hangUp(opened.location!);
  await closePeer(page, 'door');
  // A flood from one user: the camera's cap (3) and the user's offers a minute (60) hold.
  const offer = await videoOffer(page);
  const kim = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'kim', password: 'family-password-1' } }))
      .headers,
  )!;
  const answers = await Promise.all(
    Array.from({ length: 100 }, () =>
      fetch(`${base}/api/v1/cameras/door/whep`, {
        method: 'POST',
        headers: { 'content-type': 'application/sdp', authorization: `Bearer ${kim}` },
        body: offer,
      }).then(async (r) => ({ status: r.status, type: r.status === 201 ? '' : (await r.json()).error.type })),
    ),
  );
  const types = answers.map((a) => a.type || String(a.status));
  assert.ok(answers.filter((a) => a.status === 201).length <= 3, types.join(' '));
  assert.ok(types.includes('TOO_MANY_OFFERS'), 'past 60 offers a minute, refused as such');
  assert.ok(
    answers.every((a) => a.status === 201 || a.status === 429),
    `only places or 429s: ${[...new Set(types)].join(', ')}`,
  );
  const health = await fetch(`${base}/api/v1/health`);
  assert.is(health.status, 200, 'the box answers on');
  // The sessions nobody connects to are let go (no RTCP from them).
  await waitUntil('the flood’s sessions gone', async () => (await sessions()).length === 0, 30_000, 500);
});

test('revoking the token a session was opened with ends it at once', async () => {
  const created = await box.request('POST', '/api/v1/tokens', { auth: admin, body: { name: 'viewer' } });
  assert.is(created.status, 201, created.text);
  const viewer = await context.newPage();
  await viewer.goto(`${base}/about:blank`).catch(() => undefined);
  const opened = await whepInPage(viewer, 'door', { authorization: `Bearer ${created.json.token}` });
  assert.is(opened.status, 201, opened.text);
  assert.is((await sessions()).length, 1);
  assert.is((await box.request('DELETE', `/api/v1/tokens/${created.json.info.id}`, { auth: admin })).status, 200);
  await waitUntil('the session ended', async () => (await sessions()).length === 0, 3000);
  await viewer.close();
});

test('a viewer that vanishes without hanging up is let go', async () => {
  const viewer = await context.newPage();
  await viewer.goto(`${base}/about:blank`).catch(() => undefined);
  const opened = await whepInPage(viewer, 'door');
  assert.is(opened.status, 201);
  await viewer.close(); // no DELETE: the tab is gone
  await waitUntil('the box let the session go', async () => (await sessions()).length === 0, 40_000, 500);
});

test.run();
