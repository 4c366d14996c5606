// A camera's sound, with real cameras (GStreamer's RTSP server sending a 440 Hz tone as G.711
// A-law or AAC beside the street clip) and the real ffmpeg: recorded with the video (AAC copied,
// G.711 made AAC, the video always copied), heard in live view in Chromium, in clips; off when
// the installer turns it off; a sound no browser plays (an intercom's ADPCM over RTMP) made AAC.
// The tone is checked in what comes out, not only the track's name.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { addRtspCameras, commandLine, ffmpegReading, longClip, RtspCamera } from './helpers/video.ts';
import { launch } from './helpers/browser.ts';

const run = promisify(execFile);
let box: TestBox;
let admin: string;
let base: string;
let door: RtspCamera; // a doorbell: G.711 A-law
let yard: RtspCamera; // an IP camera: AAC
let browser: Browser | undefined;
let rtmpPort: number;
let intercom: ChildProcess | undefined; // a push camera whose sound is Flash ADPCM: no browser plays it

async function cameraStatus(id: string) {
  return (await box.request('GET', `/api/v1/cameras/${id}`, { auth: admin })).json.status;
}

/** The streams of a media file: codec and kind, in order. */
async function streamsOf(
  file: string,
): Promise<Array<{ codec_type: string; codec_name: string; sample_rate?: string }>> {
  const { stdout } = await run('ffprobe', [
    '-v',
    'error',
    '-show_entries',
    'stream=codec_type,codec_name,sample_rate',
    '-of',
    'json',
    file,
  ]);
  return JSON.parse(stdout).streams;
}

/** The main frequency of a file's audio (zero crossings of its decoded samples over 2 s). */
async function toneHz(file: string): Promise<number> {
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', '-i', file, '-map', '0:a:0', '-t', '2', '-ac', '1', '-ar', '8000', '-f', 's16le', '-'],
    { encoding: 'buffer', maxBuffer: 1 << 24 },
  );
  const samples = new Int16Array(stdout.buffer, stdout.byteOffset, stdout.length >> 1);
  let crossings = 0;
  for (let i = 1; i < samples.length; i++) if (samples[i - 1]! < 0 !== samples[i]! < 0) crossings++;
  return crossings / 2 / (samples.length / 8000);
}

/** The closed segments of a camera that started after `since` (ms), as files. */
async function segmentsSince(camera: string, since = 0): Promise<string[]> {
  const from = new Date(Date.now() - 3600_000).toISOString();
  const to = new Date(Date.now() + 3600_000).toISOString();
  const res = await box.request('GET', `/api/v1/cameras/${camera}/segments?from=${from}&to=${to}`, { auth: admin });
  assert.is(res.status, 200, res.text);
  return (res.json as Array<{ path: string; start: string }>)
    .filter((s) => Date.parse(s.start) > since)
    .map((s) => path.join(box.dataDir, 'media', s.path));
}

/** The newest closed segment of a camera started after `since`, as a file. */
async function recordedSegment(camera: string, since = 0): Promise<string> {
  const files = await waitUntil(
    `a closed segment of ${camera}`,
    async () => ((await segmentsSince(camera, since)).length ? segmentsSince(camera, since) : undefined),
    30_000,
    500,
  );
  return files[files.length - 1]!;
}

/** A <video>'s playing state, bytes decoded and buffered ranges, as text (runs in the page). */
function describeVideo(v: Element): string {
  const el = v as HTMLVideoElement & { webkitAudioDecodedByteCount?: number; webkitVideoDecodedByteCount?: number };
  const ranges: string[] = [];
  for (let i = 0; i < el.buffered.length; i++)
    ranges.push(`${el.buffered.start(i).toFixed(2)}-${el.buffered.end(i).toFixed(2)}`);
  return JSON.stringify({
    currentTime: el.currentTime,
    paused: el.paused,
    readyState: el.readyState,
    error: el.error?.message ?? null,
    audioBytes: el.webkitAudioDecodedByteCount,
    videoBytes: el.webkitVideoDecodedByteCount,
    buffered: ranges,
  });
}

test.before(async () => {
  box = await testBox({
    http: { port: await freePort() },
    video: {
      segmentSeconds: 3,
      stallSeconds: 5,
      restartMinMs: 300,
      restartMaxMs: 2000,
      rtmp: { host: '127.0.0.1', port: (rtmpPort = await freePort()) },
    },
  });
  admin = await withAdmin(box);
  base = `http://127.0.0.1:${box.config.http.port}`;
  door = new RtspCamera(await freePort(), { audio: 'pcma' });
  yard = new RtspCamera(await freePort(), { audio: 'aac' });
  await Promise.all([door.start(), yard.start()]);
  await addRtspCameras(box, admin, { door, yard });
});
test.after(async () => {
  intercom?.kill('SIGKILL');
  await browser?.close();
  await box?.stop();
  await Promise.all([door?.stop(), yard?.stop()]);
});

test('G.711 from a doorbell is recorded as AAC beside the copied video, and the tone is in it', async () => {
  const status = await cameraStatus('door');
  assert.is(status.audio, 'pcm_alaw', 'the status names the camera’s own audio');
  const file = await recordedSegment('door');
  const streams = await streamsOf(file);
  assert.equal(
    streams.map((s) => `${s.codec_type}:${s.codec_name}`),
    ['video:h264', 'audio:aac'],
  );
  const hz = await toneHz(file);
  assert.ok(Math.abs(hz - 440) < 20, `the doorbell's 440 Hz tone is heard: ${hz.toFixed(0)} Hz`);
  // Only the sound is encoded: the one ffmpeg of the camera copies its video.
  const args = commandLine(ffmpegReading(door)[0]!);
  assert.is(args[args.indexOf('-c:v') + 1], 'copy');
  assert.is(args[args.indexOf('-c:a') + 1], 'aac');
});

test('AAC from an IP camera is copied, not encoded again', async () => {
  assert.is((await cameraStatus('yard')).audio, 'aac');
  const file = await recordedSegment('yard');
  const streams = await streamsOf(file);
  assert.equal(
    streams.map((s) => `${s.codec_type}:${s.codec_name}`),
    ['video:h264', 'audio:aac'],
  );
  assert.is(streams[1]!.sample_rate, '16000', 'the camera’s own AAC (16 kHz), as it sent it');
  const args = commandLine(ffmpegReading(yard)[0]!);
  assert.is(args[args.indexOf('-c:a') + 1], 'copy');
  assert.ok(Math.abs((await toneHz(file)) - 440) < 20);
});

test('a sound no browser plays (an intercom’s ADPCM over RTMP) is recorded and shown as AAC, the tone in it', async () => {
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'intercom', name: 'Intercom', source: { kind: 'rtmp' } },
  });
  assert.is(added.status, 201, added.text);
  intercom = spawn(
    'ffmpeg',
    [
      ...['-v', 'error', '-re', '-stream_loop', '-1', '-i', await longClip()],
      ...['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=22050'],
      ...['-map', '0:v:0', '-map', '1:a:0', '-c:v', 'copy', '-c:a', 'adpcm_swf', '-ar', '22050', '-f', 'flv'],
      `rtmp://127.0.0.1:${rtmpPort}/live/intercom?key=${added.json.streamKey}`,
    ],
    { stdio: 'ignore' },
  );
  const status = await waitUntil(
    'the intercom online',
    async () => ((await cameraStatus('intercom'))?.state === 'online' ? cameraStatus('intercom') : undefined),
    20_000,
    300,
  );
  assert.is(status.audio, 'adpcm_swf', 'the status names the camera’s own sound');
  const file = await recordedSegment('intercom');
  assert.equal(
    (await streamsOf(file)).map((s) => `${s.codec_type}:${s.codec_name}`),
    ['video:h264', 'audio:aac'],
  );
  assert.ok(Math.abs((await toneHz(file)) - 440) < 20, 'the intercom’s tone is in the recording');
  // Live view names a codec browsers play: H.264 and AAC.
  const live = await fetch(`${base}/api/v1/cameras/intercom/live.mp4`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.match(live.headers.get('content-type')!, /codecs="avc1\.[0-9a-f]{6},mp4a\.40\.2"/);
  await live.body?.cancel();
  intercom.kill('SIGKILL');
});

test('live view: the codec names the sound too, and Chromium plays the picture and decodes the sound', async () => {
  browser = await launch();
  const context = await browser.newContext();
  await context.addCookies([{ name: 'fogedge_session', value: admin, url: base }]);
  const page = await context.newPage();
  await page.goto(`${base}/live/door`);
  const video = await page.waitForSelector('.full video');
  await page.waitForFunction((v) => (v as HTMLVideoElement).currentTime > 1.5, video, { timeout: 20_000 });
  const heard = await page
    .waitForFunction(
      (v) => {
        const el = v as HTMLVideoElement & { webkitAudioDecodedByteCount?: number };
        return (el.webkitAudioDecodedByteCount ?? 0) > 0 ? el.webkitAudioDecodedByteCount : false;
      },
      video,
      { timeout: 10_000 },
    )
    .catch(async (err: Error) => {
      // Seen once in CI and not since: say what the element had, to find why.
      throw new Error(`${err.message}; the video: ${await video.evaluate(describeVideo)}`);
    });
  assert.ok(Number(await heard.jsonValue()) > 0, 'Chromium decoded the camera’s sound');
  // The page offers the sound (live view starts muted: browsers allow autoplay only without it).
  await page.click('button:has-text("Sound on")');
  assert.is(await video.evaluate((v) => (v as HTMLVideoElement).muted), false);
  await context.close();
});

test('a clip of the doorbell has its sound', async () => {
  const to = new Date(Date.now() - 1000);
  const from = new Date(to.getTime() - 4000);
  const res = await fetch(`${base}/api/v1/cameras/door/clip.mp4?from=${from.toISOString()}&to=${to.toISOString()}`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(res.status, 200);
  const file = path.join(box.dataDir, 'door-clip.mp4');
  await writeFile(file, Buffer.from(await res.arrayBuffer()));
  assert.equal(
    (await streamsOf(file)).map((s) => s.codec_type),
    ['video', 'audio'],
  );
  assert.ok(Math.abs((await toneHz(file)) - 440) < 20);
});

test('audio off: the camera is recorded without sound (its video goes on)', async () => {
  const res = await box.request('PATCH', '/api/v1/cameras/door', { auth: admin, body: { audio: false } });
  assert.is(res.status, 200, res.text);
  assert.is(res.json.audio, false);
  const file = await recordedSegment('door', Date.now());
  assert.equal(
    (await streamsOf(file)).map((s) => s.codec_type),
    ['video'],
  );
  assert.is((await cameraStatus('door')).audio, null);
});

test.run();
