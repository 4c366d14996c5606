// Recording with real ffmpeg from a real RTSP camera: segments on disk, the index,
// the timeline, and what survives a camera or the box dying mid-segment.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { testBox, tempDir, withAdmin, type TestBox } from './helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode, waitUntil } from './helpers/processes.ts';
import { ffmpegPids, playable, RtspCamera } from './helpers/video.ts';

let box: TestBox;
let admin: string;
let cam: RtspCamera;
const run = promisify(execFile);
const t0 = new Date(Date.now() - 60_000).toISOString();
const t1 = () => new Date(Date.now() + 60_000).toISOString();

const segments = async (id: string) =>
  (await box.request('GET', `/api/v1/cameras/${id}/segments?from=${t0}&to=${t1()}`, { auth: admin })).json as Array<{
    path: string;
    start: string;
    end: string;
    bytes: number;
  }>;
const timeline = async (id: string, from = t0, to = t1(), auth = admin) =>
  box.request('GET', `/api/v1/cameras/${id}/timeline?from=${from}&to=${to}`, { auth });
const media = (rel: string) => path.join(box.dataDir, 'media', rel);

test.before(async () => {
  box = await testBox({
    video: {
      segmentSeconds: 2,
      stallSeconds: 4,
      restartMinMs: 300,
      restartMaxMs: 2000,
      retentionIntervalSeconds: 1,
      eventClaimSeconds: 2,
    },
    detector: { preRollSeconds: 1, postRollSeconds: 1 },
  });
  admin = await withAdmin(box);
  cam = new RtspCamera(await freePort());
  await cam.start();
});
test.after(async () => {
  await box.stop();
  await cam.stop();
});

test('segments are recorded without transcoding, indexed, and play cleanly', async () => {
  const res = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'street', name: 'Street', source: { kind: 'rtsp', url: cam.url() } },
  });
  assert.is(res.status, 201, res.text);
  const list = await waitUntil(
    '3 closed segments',
    async () => {
      const s = await segments('street');
      return s.length >= 3 ? s : undefined;
    },
    30_000,
    250,
  );
  for (const s of list) {
    const info = await playable(media(s.path));
    assert.is(info.codec, 'h264');
    assert.is(info.width, 1280, 'same picture size as the camera: no transcoding');
    const indexed = (Date.parse(s.end) - Date.parse(s.start)) / 1000;
    assert.ok(Math.abs(info.seconds - indexed) < 0.5, `${s.path}: file ${info.seconds} s, index ${indexed} s`);
    assert.ok(s.path.startsWith(`street${path.sep}`) && s.path.endsWith('.mp4'));
  }
  const status = (await box.request('GET', '/api/v1/cameras/street', { auth: admin })).json.status;
  assert.ok(status.bitrateKbps > 200 && status.bitrateKbps < 10_000, `bitrate ${status.bitrateKbps}`);
});

test('the timeline shows one recorded range and no gap inside it', async () => {
  const list = await segments('street');
  const from = list[0]!.start;
  const to = list[list.length - 1]!.end;
  const res = await timeline('street', from, to);
  assert.is(res.status, 200);
  assert.is(res.json.ranges.length, 1, JSON.stringify(res.json));
  assert.equal(res.json.gaps, []);
  assert.is(res.json.ranges[0].start, new Date(from).toISOString());
});

test('a range with no recordings is one gap; bad ranges are refused', async () => {
  const res = await timeline('street', '2020-01-01T00:00:00Z', '2020-01-01T01:00:00Z');
  assert.equal(res.json.ranges, []);
  assert.equal(res.json.gaps, [{ start: '2020-01-01T00:00:00.000Z', end: '2020-01-01T01:00:00.000Z' }]);
  const backwards = await timeline('street', '2020-01-02T00:00:00Z', '2020-01-01T00:00:00Z');
  assert.is(backwards.status, 422);
  assert.is(backwards.json.error.data[0].field, 'to');
  assert.is((await timeline('street', 'yesterday', 'today')).status, 422);
  assert.is((await timeline('street', '2020-01-01T00:00:00Z', '2020-06-01T00:00:00Z')).status, 422);
});

test('who may see recordings: family yes, installer no', async () => {
  for (const [username, role] of [
    ['kid', 'family'],
    ['fitter', 'installer'],
  ]) {
    await box.request('POST', '/api/v1/users', { auth: admin, body: { username, password: 'role-password', role } });
  }
  const login = async (username: string) =>
    box.sessionOf(
      (await box.request('POST', '/api/v1/auth/login', { body: { username, password: 'role-password' } })).headers,
    )!;
  assert.is((await timeline('street', t0, t1(), await login('kid'))).status, 200);
  assert.is((await timeline('street', t0, t1(), await login('fitter'))).status, 403);
});

test('clip export: a range inside the recordings as one MP4, no transcoding; no recordings is a 404', async () => {
  const list = await segments('street');
  const from = new Date(Date.parse(list[0]!.start) + 1000).toISOString();
  const to = new Date(Date.parse(list[list.length - 1]!.end) - 1000).toISOString();
  const res = await box.app.request(`/api/v1/cameras/street/clip.mp4?from=${from}&to=${to}`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.is(res.status, 200, await res.clone().text());
  assert.is(res.headers.get('content-type'), 'video/mp4');
  assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="street-\d+-\d+\.mp4"/);
  const file = path.join(box.dataDir, 'download.mp4');
  await writeFile(file, Buffer.from(await res.arrayBuffer()));
  const info = await playable(file);
  assert.is(info.codec, 'h264');
  assert.is(info.width, 1280);
  const wanted = (Date.parse(to) - Date.parse(from)) / 1000;
  // It covers the range; stream copy starts at the keyframe at or before it (a GOP is 2 s here),
  // and segment start times come from file names (1 s resolution): a few seconds more at most.
  assert.ok(info.seconds >= wanted - 0.5, `clip ${info.seconds} s is shorter than the ${wanted} s asked`);
  assert.ok(info.seconds <= wanted + 5, `clip ${info.seconds} s for ${wanted} s asked`);
  const none = await box.request(
    'GET',
    '/api/v1/cameras/street/clip.mp4?from=2020-01-01T00:00:00Z&to=2020-01-01T00:10:00Z',
    { auth: admin },
  );
  assert.is(none.status, 404);
  assert.is(none.json.error.type, 'RECORDING_NOT_FOUND');
  assert.is(
    (await box.request('GET', `/api/v1/cameras/..%2F..%2Fetc/clip.mp4?from=${from}&to=${to}`, { auth: admin })).status,
    422,
  );
});

test('HLS playback: a VOD playlist of the range that a real HLS client (ffmpeg, over HTTP) plays whole', async () => {
  const list = await segments('street');
  const from = list[0]!.start;
  const to = list[list.length - 1]!.end;
  const q = `from=${from}&to=${to}`;
  const res = await box.request('GET', `/api/v1/cameras/street/playback.m3u8?${q}`, { auth: admin });
  assert.is(res.status, 200, res.text);
  assert.is(res.headers.get('content-type'), 'application/vnd.apple.mpegurl');
  assert.match(res.text, /#EXT-X-PLAYLIST-TYPE:VOD/);
  assert.match(res.text, /#EXT-X-MAP:URI="\/api\/v1\/recordings\/street\/[^"]+",BYTERANGE="\d+@0"/);
  assert.is(res.text.match(/#EXTINF:/g)!.length, list.length);
  assert.match(res.text, /#EXT-X-ENDLIST\n$/);

  const port = (box.broker.getLocalService('api') as unknown as { settings: { port: number } }).settings.port;
  const out = path.join(box.dataDir, 'hls.mp4');
  await run('ffmpeg', [
    '-v',
    'error',
    '-headers',
    `Authorization: Bearer ${admin}\r\n`,
    '-i',
    `http://127.0.0.1:${port}/api/v1/cameras/street/playback.m3u8?${q}`,
    '-c',
    'copy',
    '-y',
    out,
  ]);
  const info = await playable(out);
  assert.is(info.codec, 'h264');
  // Every segment's content, whole: the sum of what the playlist lists.
  const total = list.reduce((sum, s) => sum + (Date.parse(s.end) - Date.parse(s.start)) / 1000, 0);
  assert.ok(Math.abs(info.seconds - total) < 0.5, `played ${info.seconds} s of ${total} s`);
  assert.is(
    (
      await box.request(
        'GET',
        '/api/v1/cameras/street/playback.m3u8?from=2020-01-01T00:00:00Z&to=2020-01-01T01:00:00Z',
        { auth: admin },
      )
    ).status,
    404,
  );
});

test('segment files: signed in with the right role, byte ranges, and no way out of the media folder', async () => {
  const [seg] = await segments('street');
  const url = `/api/v1/recordings/${seg!.path.split(path.sep).join('/')}`;
  assert.is((await box.request('GET', url)).status, 401);
  const fitter = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'fitter', password: 'role-password' } }))
      .headers,
  )!;
  assert.is((await box.request('GET', url, { auth: fitter })).status, 403);
  const ranged = await box.app.request(url, { headers: { authorization: `Bearer ${admin}`, range: 'bytes=0-99' } });
  assert.is(ranged.status, 206);
  assert.is((await ranged.arrayBuffer()).byteLength, 100);
  assert.match(ranged.headers.get('content-range') ?? '', /^bytes 0-99\/\d+$/);
  const get = (range: string) => box.app.request(url, { headers: { authorization: `Bearer ${admin}`, range } });
  const whole = Buffer.from(
    await (await box.app.request(url, { headers: { authorization: `Bearer ${admin}` } })).arrayBuffer(),
  );
  assert.is(whole.length, seg!.bytes);
  const tail = await get('bytes=-100'); // the last 100 bytes
  assert.is(tail.status, 206);
  assert.equal(Buffer.from(await tail.arrayBuffer()), whole.subarray(whole.length - 100));
  assert.is(tail.headers.get('content-range'), `bytes ${whole.length - 100}-${whole.length - 1}/${whole.length}`);
  const beyond = await get(`bytes=${whole.length}-`);
  assert.is(beyond.status, 416);
  assert.is(beyond.headers.get('content-range'), `bytes */${whole.length}`);
  for (const evil of [
    '/api/v1/recordings/street/..%2F..%2Fdb/2026-01-01T00-00-00-x.mp4',
    '/api/v1/recordings/street/2026-01-01/..%2F..%2F..%2Fetc%2Fpasswd',
    '/api/v1/recordings/%2E%2E/2026-01-01/2026-01-01T00-00-00-x.mp4',
    '/api/v1/recordings/street/2026-01-01/2026-01-01T00-00-00-nothere.mp4',
  ]) {
    const res = await box.request('GET', evil, { auth: admin });
    assert.ok([404, 422].includes(res.status), `${evil} -> ${res.status}`);
    assert.not.match(res.text, /root:|LevelDB|MANIFEST/);
  }
});

test('events mode: only the segments around an event (with its roll) stay on disk and in the index; they play', async () => {
  const res = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: {
      id: 'gate',
      name: 'Gate',
      source: { kind: 'rtsp', url: cam.url() },
      detection: { enabled: false },
      recording: { mode: 'events' },
    },
  });
  assert.is(res.status, 201, res.text);
  const first = await waitUntil(
    'the first segments',
    async () => {
      const s = await segments('gate');
      return s.length >= 3 && s;
    },
    30_000,
    250,
  );
  // Someone passes 5 s into the recording, for a second (as the detector would store it).
  const start = Date.parse(first[0]!.start) + 5000;
  const event = {
    id: 'gate-walker',
    camera: 'gate',
    label: 'person',
    topScore: 0.9,
    box: [0.4, 0.3, 0.5, 0.9],
    zones: [],
    stationary: false,
    start: new Date(start).toISOString(),
  };
  await box.broker.call('events.record', { ...event, type: 'start', end: null });
  await box.broker.call('events.record', { ...event, type: 'end', end: new Date(start + 1000).toISOString() });
  const keep: [number, number] = [start - 1000, start + 2000]; // pre-roll 1 s, post-roll 1 s
  const around = (s: { start: string; end: string }) => Date.parse(s.start) < keep[1] && Date.parse(s.end) > keep[0];
  // Recording goes on; what is past the claim time and not around the event goes.
  const settled = await waitUntil(
    'footage away from the event gone',
    async () => {
      const list = await segments('gate');
      const old = list.filter((s) => Date.parse(s.end) < start + 8000);
      return Date.now() > start + 14_000 && old.every(around) && list;
    },
    40_000,
    500,
  );
  const kept = settled.filter(around);
  assert.ok(kept.length >= 1, "the event's footage stays");
  for (const s of kept) await playable(media(s.path));
  const gone = first.filter((s) => !around(s));
  assert.ok(gone.length >= 1, 'there was footage before the event to drop');
  for (const s of gone) assert.not.ok(await stat(media(s.path)).catch(() => null), `${s.path} deleted from disk`);
  // The event's clip is cut from what stayed.
  const clip = await box.request('GET', `/api/v1/events/gate-walker/clip.mp4`, { auth: admin });
  assert.is(clip.status, 200, clip.text.slice(0, 200));
  assert.is((await box.request('DELETE', '/api/v1/cameras/gate', { auth: admin })).status, 200);
});

test('RTSP server killed mid-segment: what was recorded stays playable, the cut segment too', async () => {
  const before = await segments('street');
  await cam.stop();
  await waitUntil(
    'camera offline',
    async () => (await box.request('GET', '/api/v1/cameras/street', { auth: admin })).json.status.state === 'offline',
    15_000,
    200,
  );
  await new Promise((r) => setTimeout(r, 1000));
  const after = await segments('street');
  assert.ok(after.length >= before.length);
  for (const s of after) await playable(media(s.path));
  await cam.start();
  await waitUntil(
    'camera back online',
    async () => (await box.request('GET', '/api/v1/cameras/street', { auth: admin })).json.status.state === 'online',
    30_000,
    250,
  );
});

test('the box killed with SIGKILL mid-segment: ffmpeg dies with it; on restart the cut segment is healed into the index', async () => {
  const dataDir = await tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__SEGMENTSECONDS: '60',
    FOGEDGE__VIDEO__MINFREEBYTES: '0',
  };
  let node = await startedNode(env); // demo camera on: the bundled clip
  const token = await firstAdminSession(base, 'admin', 'heal-password-1');
  const auth = { headers: { authorization: `Bearer ${token}` } };
  await waitUntil('ffmpeg recording the demo camera', () => ffmpegPids(dataDir).length === 1 || undefined, 15_000);
  await new Promise((r) => setTimeout(r, 6000)); // a few fragments into a 60 s segment
  await node.kill('SIGKILL');
  await waitUntil('ffmpeg to die with the box', () => ffmpegPids(dataDir).length === 0 || undefined, 5000);

  // Restarted at once, the cut file still looks busy; the periodic heal picks it up.
  node = await startedNode({ ...env, FOGEDGE__VIDEO__DEMOCAMERA: 'false', FOGEDGE__VIDEO__HEALINTERVALSECONDS: '2' });
  const from = new Date(Date.now() - 120_000).toISOString();
  const to = new Date(Date.now() + 60_000).toISOString();
  const healed = await waitUntil(
    'the cut segment in the index',
    async () => {
      const r = await getJson(`${base}/api/v1/cameras/demo/segments?from=${from}&to=${to}`, auth);
      return r.status === 200 && r.json.length === 1 ? r : undefined;
    },
    30_000,
    500,
  );
  const info = await playable(path.join(dataDir, 'media', healed.json[0].path));
  assert.ok(info.seconds >= 3, `healed segment plays ${info.seconds} s`);
  assert.ok(node.lines.some((l) => /index healed: 1 segments added from disk/.test(l)));
  await node.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
});

test.run();
