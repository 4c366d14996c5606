// Cameras against a real RTSP server (GStreamer) and real ffmpeg: status, reasons, recovery.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createServer, type Server } from 'node:net';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { ffmpegPids, pictureSize, playable, RtspCamera } from './helpers/video.ts';

let box: TestBox;
let admin: string;
const cameras: RtspCamera[] = [];
let junk: Server | undefined;

const camera = async (options: ConstructorParameters<typeof RtspCamera>[1] = {}) => {
  const cam = new RtspCamera(await freePort(), options);
  cameras.push(cam);
  await cam.start();
  return cam;
};
const add = (id: string, url: string, extra: object = {}) =>
  box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id, name: `Camera ${id}`, source: { kind: 'rtsp', url }, ...extra },
  });
const status = async (id: string) => (await box.request('GET', `/api/v1/cameras/${id}`, { auth: admin })).json.status;
const until = (id: string, state: string, reason?: string, ms = 20_000) =>
  waitUntil(
    `camera ${id} ${state}${reason ? ` (${reason})` : ''}`,
    async () => {
      const s = await status(id);
      return s?.state === state && (reason === undefined || s.reason === reason) ? s : undefined;
    },
    ms,
    200,
  );

test.before(async () => {
  box = await testBox({ video: { segmentSeconds: 2, stallSeconds: 3, restartMinMs: 300, restartMaxMs: 2000 } });
  admin = await withAdmin(box);
});
test.after(async () => {
  await box.stop();
  await Promise.all(cameras.map((c) => c.stop()));
  junk?.close();
});

test('an RTSP camera with credentials goes online with codec, size and fps; the password never comes back', async () => {
  const cam = await camera({ user: 'viewer', password: 's3cret-pw' });
  const res = await add('front', cam.url());
  assert.is(res.status, 201, res.text);
  assert.is(res.json.source.url, `rtsp://viewer:***@127.0.0.1:${cam.port}/cam`);
  const s = await until('front', 'online');
  assert.is(s.codec, 'h264');
  assert.is(s.width, 1280);
  assert.is(s.height, 720);
  assert.is(s.fps, 15);
  assert.ok(Date.now() - Date.parse(s.lastFrameAt) < 5000);
  const list = await box.request('GET', '/api/v1/cameras', { auth: admin });
  assert.not.ok(list.text.includes('s3cret-pw'));
  assert.is(list.json.find((c: { id: string }) => c.id === 'front').status.state, 'online');
});

test("snapshot: a JPEG of the camera's picture from the running stream", async () => {
  const res = await box.app.request('/api/v1/cameras/front/snapshot.jpg', {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'image/jpeg');
  // The newest keyframe: the clip has one every 2 s.
  const age = Date.now() - Date.parse(res.headers.get('x-frame-time')!);
  assert.ok(age > -1000 && age < 4000, `a recent frame: ${age} ms old`);
  const jpeg = Buffer.from(await res.arrayBuffer());
  assert.equal([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG magic');
  const size = await pictureSize(jpeg);
  assert.is(size, '1280,720');
  // Only the recorder's ffmpeg talks to the camera: the snapshot came from its stream.
  const toCamera = ffmpegPids(box.dataDir).filter(
    (p) => readCmd(p).includes(`127.0.0.1:`) && readCmd(p).includes('/front/'),
  );
  assert.is(toCamera.length, 1);
});

test('an H.265 camera is recorded as H.265, without transcoding', async () => {
  const cam = await camera({ h265: true });
  await add('hevc', cam.url());
  const s = await until('hevc', 'online');
  assert.is(s.codec, 'hevc');
  const from = new Date(Date.now() - 60_000).toISOString();
  const seg = await waitUntil(
    'a closed H.265 segment',
    async () => {
      const r = await box.request(
        'GET',
        `/api/v1/cameras/hevc/segments?from=${from}&to=${new Date(Date.now() + 60_000).toISOString()}`,
        { auth: admin },
      );
      return r.json[0];
    },
    20_000,
    250,
  );
  const info = await playable(path.join(box.dataDir, 'media', seg.path));
  assert.is(info.codec, 'hevc');
  assert.is(info.width, 1280);
  assert.is((await box.request('DELETE', '/api/v1/cameras/hevc', { auth: admin })).status, 200);
});

test('renaming with the masked URL keeps the stored password (still online after the restart)', async () => {
  const current = (await box.request('GET', '/api/v1/cameras/front', { auth: admin })).json;
  const res = await box.request('PATCH', '/api/v1/cameras/front', {
    auth: admin,
    body: { name: 'Front door', source: current.source },
  });
  assert.is(res.status, 200, res.text);
  assert.is(res.json.name, 'Front door');
  await until('front', 'online');
});

test('wrong credentials: offline, reason unauthorized (401)', async () => {
  const cam = await camera({ user: 'viewer', password: 'right' });
  await add('wrongpw', cam.url('viewer:wrong@'));
  const s = await until('wrongpw', 'offline', 'unauthorized');
  assert.match(s.detail, /401/);
});

test('nothing listening: offline, reason unreachable; its snapshot is a 503 that says why', async () => {
  await add('nobody', `rtsp://127.0.0.1:${await freePort()}/cam`);
  const s = await until('nobody', 'offline', 'unreachable');
  assert.match(s.detail, /refused/);
  const snap = await box.request('GET', '/api/v1/cameras/nobody/snapshot.jpg', { auth: admin });
  assert.is(snap.status, 503);
  assert.is(snap.json.error.type, 'NO_PICTURE');
  assert.match(snap.json.error.message, /offline: unreachable|starting/);
  assert.is((await box.request('GET', '/api/v1/cameras/none/snapshot.jpg', { auth: admin })).status, 404);
});

test('garbage bytes on the port: offline, not a video stream', async () => {
  junk = createServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nthis is not rtsp\r\n'));
  const port = await freePort();
  await new Promise<void>((r) => junk!.listen(port, '127.0.0.1', r));
  await add('junk', `rtsp://127.0.0.1:${port}/cam`);
  await until('junk', 'offline', 'not a video stream');
});

test('a stream with no video track: offline, no video track', async () => {
  const cam = await camera({ noVideo: true });
  await add('audio', cam.url());
  await until('audio', 'offline', 'no video track');
});

test('bad camera URLs and fields are refused with the field named', async () => {
  for (const url of ['http://127.0.0.1/cam', 'rtsp://', 'not a url', 'file:///etc/passwd']) {
    const res = await add('bad', url);
    assert.is(res.status, 422, `${url}: ${res.text}`);
    assert.is(res.json.error.data[0].field, 'source.url');
  }
  const file = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'f', name: 'f', source: { kind: 'file', path: '/etc/passwd' } },
  });
  assert.is(file.status, 422, 'the API must not point ffmpeg at files');
  assert.is((await add('Bad Id!', 'rtsp://127.0.0.1/cam')).status, 422);
  assert.is((await add('front', 'rtsp://127.0.0.1/cam')).status, 409);
});

test('the Test button: what ffprobe finds at a URL before saving, or why it does not work', async () => {
  const probe = (body: object, auth = admin) => box.request('POST', '/api/v1/cameras/test', { auth, body });
  const rtsp = (url: string) => ({ source: { kind: 'rtsp', url } });
  const good = cameras.find((c) => c.url().includes('viewer:'))!;
  const works = await probe(rtsp(good.url('viewer:s3cret-pw@')));
  assert.is(works.status, 200, works.text);
  assert.equal(
    { ok: works.json.ok, codec: works.json.codec, width: works.json.width, height: works.json.height },
    { ok: true, codec: 'h264', width: 1280, height: 720 },
  );
  assert.ok(works.json.fps > 0);
  const wrong = await probe(rtsp(good.url('viewer:nope@')));
  assert.equal([wrong.json.ok, wrong.json.reason], [false, 'unauthorized']);
  assert.not.match(wrong.text, /nope/, 'the password typed is not echoed');
  // Editing a camera: its masked password stands for the stored one.
  const masked = await probe({ ...rtsp(good.url('viewer:***@')), id: 'front' });
  assert.is(masked.json.ok, true, masked.text);
  const closed = await probe(rtsp(`rtsp://127.0.0.1:${await freePort()}/cam`));
  assert.equal([closed.json.ok, closed.json.reason], [false, 'unreachable']);
  const optionsOf = (c: RtspCamera) => (c as unknown as { options: { h265?: boolean; noVideo?: boolean } }).options;
  const audio = await probe(rtsp(cameras.find((c) => optionsOf(c).noVideo)!.url()));
  assert.equal([audio.json.ok, audio.json.reason], [false, 'no video track'], audio.text);
  const h265 = await probe(rtsp(cameras.find((c) => optionsOf(c).h265)!.url()));
  assert.equal([h265.json.ok, h265.json.codec], [true, 'hevc'], h265.text);
  const bad = await probe(rtsp('http://192.168.1.20/x'));
  assert.is(bad.status, 422);
  assert.is(bad.json.error.data[0].field, 'source.url');
  // Only those who manage cameras may point the box at addresses.
  await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'fam', password: 'family-password-1', role: 'family' },
  });
  const login = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'fam', password: 'family-password-1' },
  });
  assert.is((await probe(rtsp(good.url()), box.sessionOf(login.headers))).status, 403);
});

test('a camera that stalls without closing is restarted (reason stalled), then comes back', async () => {
  const cam = await camera();
  await add('stally', cam.url());
  await until('stally', 'online');
  cam.pause();
  await until('stally', 'offline', 'stalled', 15_000);
  cam.resume();
  const s = await until('stally', 'online', undefined, 30_000);
  assert.ok(s.restarts >= 1);
});

test('the camera goes away and comes back: offline, then online by itself', async () => {
  const cam = await camera();
  await add('flaky', cam.url());
  await until('flaky', 'online');
  await cam.stop();
  const down = await until('flaky', 'offline');
  assert.ok(down.reason, 'a reason is given');
  await cam.start();
  await until('flaky', 'online', undefined, 30_000);
});

test('ffmpeg killed with SIGKILL: restarted, no zombie left', async () => {
  const marker = `/flaky/`;
  const [pid] = ffmpegPids(box.dataDir).filter((p) => p > 0 && readCmd(p).includes(marker));
  assert.ok(pid, 'ffmpeg of camera flaky runs');
  process.kill(pid!, 'SIGKILL');
  await until('flaky', 'offline', 'exited', 10_000).catch(() => undefined); // may already be back
  await until('flaky', 'online', undefined, 20_000);
  const now = ffmpegPids(box.dataDir).filter((p) => readCmd(Math.abs(p)).includes(marker) || p < 0);
  assert.ok(
    now.every((p) => p > 0),
    `zombies: ${now}`,
  );
  assert.is(now.length, 1);
  assert.is.not(now[0], pid);
});

test('removing a camera stops its ffmpeg; disabling one too', async () => {
  assert.is((await box.request('DELETE', '/api/v1/cameras/flaky', { auth: admin })).status, 200);
  assert.is(
    (await box.request('PATCH', '/api/v1/cameras/stally', { auth: admin, body: { enabled: false } })).status,
    200,
  );
  await waitUntil(
    'ffmpeg of removed/disabled cameras to exit',
    () =>
      ffmpegPids(box.dataDir).every(
        (p) => !readCmd(Math.abs(p)).includes('/flaky/') && !readCmd(Math.abs(p)).includes('/stally/'),
      ) || undefined,
    10_000,
  );
  assert.is((await box.request('GET', '/api/v1/cameras/flaky', { auth: admin })).status, 404);
  assert.is((await status('stally')).state, 'disabled');
});

test('stopping the box leaves no ffmpeg behind', async () => {
  assert.ok(ffmpegPids(box.dataDir).length >= 1, 'a camera is running before the stop');
  await box.stop();
  assert.equal(ffmpegPids(box.dataDir), []);
});

function readCmd(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

test.run();
