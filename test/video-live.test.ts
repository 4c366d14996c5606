// Live view over WebSocket against a real RTSP camera (GStreamer) and the real ffmpeg:
// what a browser's MediaSource gets, many viewers on one ffmpeg, who may watch.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { ffmpegPids, playable, RtspCamera, subStreamClip } from './helpers/video.ts';
import {
  BoxSplitter,
  fragmentTiming,
  startsWithKeyframe,
  timescaleOf,
  videoSize,
} from '../lib/media/fragmented-mp4.ts';

const run = promisify(execFile);
let box: TestBox;
let admin: string;
let cam: RtspCamera;
let port: number;

test.before(async () => {
  box = await testBox({
    video: { segmentSeconds: 4, stallSeconds: 5, restartMinMs: 300, restartMaxMs: 2000, maxViewersPerCamera: 6 },
  });
  admin = await withAdmin(box);
  port = box.broker.getLocalService('api')!.settings['port'];
  cam = new RtspCamera(await freePort());
  await cam.start();
  const res = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'porch', name: 'Porch', source: { kind: 'rtsp', url: cam.url() } },
  });
  assert.is(res.status, 201, res.text);
  await waitUntil(
    'porch online',
    async () => (await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.status.state === 'online',
    20_000,
    200,
  );
});
test.after(async () => {
  await box.stop();
  await cam.stop();
});

interface Viewer {
  ws: WebSocket;
  texts: Array<{ type: string; mime: string }>;
  binaries: Buffer[];
  closed: Promise<{ code: number; reason: string }>;
  openedAt: number;
  firstFragmentAt?: number;
}

function watch(
  camera: string | { id: string; query: string },
  headers: Record<string, string> = { authorization: `Bearer ${admin}` },
): Promise<Viewer> {
  return new Promise((resolve, reject) => {
    const path = typeof camera === 'string' ? `${camera}/live` : `${camera.id}/live?${camera.query}`;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/cameras/${path}`, { headers });
    const viewer: Viewer = {
      ws,
      texts: [],
      binaries: [],
      openedAt: Date.now(),
      closed: new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() }))),
    };
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return viewer.texts.push(JSON.parse(data.toString()));
      if (data.toString('latin1', 4, 8) === 'moof') viewer.firstFragmentAt ??= Date.now();
      viewer.binaries.push(data);
    });
    ws.once('open', () => resolve(viewer));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () =>
        reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body })),
      );
    });
    ws.once('error', (err) => reject(err));
  });
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => ({ status: 101, body: '' }),
    (e: { status: number; body: string }) => e,
  );

test('a viewer gets the codec, the init segment, then fragments that start on a keyframe and play on across segment files', async () => {
  const viewer = await watch('porch');
  // Over 6 s of video: past at least one of the 4 s segment files' ends.
  const liveSeconds = () => {
    const [init, ...fragments] = viewer.binaries;
    const timescale = init && timescaleOf(init);
    if (!timescale) return 0;
    return fragments.reduce((sum, f) => sum + (fragmentTiming(f, init)?.duration ?? 0), 0) / timescale;
  };
  await waitUntil('6 s of live video', () => liveSeconds() > 6, 20_000);
  viewer.ws.close();
  await viewer.closed;
  console.log(`    live view: first fragment ${viewer.firstFragmentAt! - viewer.openedAt} ms after the socket opened`);
  assert.equal(viewer.texts[0], { type: 'init', mime: 'video/mp4; codecs="avc1.4d401f"' });
  const [init, first] = viewer.binaries;
  assert.is(init!.toString('latin1', 4, 8), 'ftyp');
  assert.is(first!.toString('latin1', 4, 8), 'moof');
  assert.ok(startsWithKeyframe(first!, init), 'the first fragment starts with a keyframe: no wait for the next GOP');
  // Every binary message is whole boxes: init, then moof+mdat pairs.
  const types: string[] = [];
  new BoxSplitter((type) => types.push(type)).push(Buffer.concat(viewer.binaries));
  assert.equal(types.slice(0, 2), ['ftyp', 'moov']);
  assert.ok(types.slice(2).every((t, i) => t === (i % 2 ? 'mdat' : 'moof')));
  assert.is(viewer.texts.length, 1, 'one init: the next segment file continues the stream');
  const times = viewer.binaries.slice(1).map((moof) => fragmentTiming(moof, init)!);
  for (let i = 1; i < times.length; i++)
    assert.is(times[i]!.start, times[i - 1]!.start + times[i - 1]!.duration, `fragment ${i} follows on`);
  const file = path.join(box.dataDir, 'live.mp4');
  await writeFile(file, Buffer.concat(viewer.binaries));
  const { seconds, codec } = await playable(file);
  assert.is(codec, 'h264');
  assert.ok(seconds >= 5, `plays ${seconds} s`);
});

/** This process's open files in the camera's recordings. */
const recordingHandles = () => {
  const media = path.join(realpathSync(box.dataDir), 'media');
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((target) => target.startsWith(media) && target.endsWith('.mp4'));
};

test('the recording is read for live view only while someone watches', async () => {
  await waitUntil('nobody watching, nothing open', () => recordingHandles().length === 0, 5000);
  const viewer = await watch('porch');
  await waitUntil('video', () => viewer.binaries.length > 3, 15_000);
  assert.is(recordingHandles().length, 1, 'the open segment file');
  viewer.ws.close();
  await viewer.closed;
  await waitUntil('closed once the viewer left', () => recordingHandles().length === 0, 5000);
  // A snapshot meanwhile reads the newest keyframe from the file, and lets it go.
  const snap = await box.request('GET', '/api/v1/cameras/porch/snapshot.jpg', { auth: admin });
  assert.is(snap.status, 200);
  assert.is(recordingHandles().length, 0);
});

test('many viewers share the one ffmpeg that records the camera', async () => {
  const before = ffmpegPids(box.dataDir).filter((p) => p > 0);
  const viewers = await Promise.all([1, 2, 3, 4, 5].map(() => watch('porch')));
  await waitUntil('every viewer gets video', () => viewers.every((v) => v.binaries.length > 3), 15_000);
  assert.equal(
    ffmpegPids(box.dataDir)
      .filter((p) => p > 0)
      .sort(),
    before.sort(),
  );
  for (const v of viewers) v.ws.close();
  await Promise.all(viewers.map((v) => v.closed));
});

test('viewers per camera are capped: one too many is refused with 429 and the reason; a place freed is taken at once', async () => {
  const viewers = await Promise.all([1, 2, 3, 4, 5, 6].map(() => watch('porch')));
  const refused = await refusal(watch('porch'));
  assert.is(refused.status, 429, refused.body);
  assert.is(JSON.parse(refused.body).error.type, 'TOO_MANY_VIEWERS');
  assert.match(JSON.parse(refused.body).error.message, /6 live viewers/);
  viewers[0]!.ws.close();
  await viewers[0]!.closed;
  const next = await waitUntil('a place for one more', () => watch('porch').catch(() => undefined), 5000, 100);
  for (const v of [...viewers.slice(1), next]) v.ws.close();
  await Promise.all([...viewers, next].map((v) => v.closed));
});

test('a sub-stream: its own ffmpeg, not recorded, watched with ?stream=sub; the main stream stays as it was', async () => {
  const sub = new RtspCamera(await freePort(), { clip: await subStreamClip() });
  await sub.start();
  try {
    const res = await box.request('PATCH', '/api/v1/cameras/porch', {
      auth: admin,
      body: { subStream: { kind: 'rtsp', url: sub.url() } },
    });
    assert.is(res.status, 200, res.text);
    const status = await waitUntil(
      'the sub-stream online',
      async () => {
        const s = (await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.status;
        return s?.state === 'online' && s.subStream?.state === 'online' ? s : undefined;
      },
      20_000,
      200,
    );
    assert.equal([status.subStream.width, status.subStream.height], [640, 360]);
    assert.equal([status.width, status.height], [1280, 720]);
    // Its own ffmpeg (it records nothing: no data-folder path in its command line).
    assert.is(ffmpegPids(`127.0.0.1:${sub.port}/`).filter((p) => p > 0).length, 1);
    assert.is(ffmpegPids(box.dataDir).filter((p) => p > 0).length, 1);
    const small = await watch({ id: 'porch', query: 'stream=sub' });
    const big = await watch('porch');
    await waitUntil('both feeds', () => small.binaries.length > 2 && big.binaries.length > 2, 15_000);
    const sizeOf = (v: Viewer) => videoSize(v.binaries[0]!);
    assert.equal(sizeOf(small), { width: 640, height: 360 });
    assert.equal(sizeOf(big), { width: 1280, height: 720 });
    small.ws.close();
    big.ws.close();
  } finally {
    assert.is(
      (await box.request('PATCH', '/api/v1/cameras/porch', { auth: admin, body: { subStream: null } })).status,
      200,
    );
    await sub.stop();
  }
  await waitUntil(
    'porch back online without its sub-stream',
    async () => {
      const s = (await box.request('GET', '/api/v1/cameras/porch', { auth: admin })).json.status;
      return s.state === 'online' && s.subStream === null;
    },
    20_000,
    200,
  );
});

test("who may watch: no credential 401, a foreign page with the cookie 403, the box's own page 101, unknown camera 404", async () => {
  assert.is((await refusal(watch('porch', {}))).status, 401);
  const wrong = await refusal(watch('porch', { authorization: 'Bearer not-a-token' }));
  assert.is(wrong.status, 401);
  const cookie = `fogedge_session=${admin}`;
  const foreign = await refusal(watch('porch', { cookie, origin: 'http://evil.example' }));
  assert.is(foreign.status, 403);
  assert.match(foreign.body, /Origin/);
  assert.is(
    (await refusal(watch('porch', { cookie }))).status,
    403,
    'a cookie without Origin is not a page of the box',
  );
  const own = await watch('porch', { cookie, origin: `http://127.0.0.1:${port}` });
  own.ws.close();
  const missing = await refusal(watch('nope'));
  assert.is(missing.status, 404);
  assert.match(missing.body, /nope/);
});

test('live.mp4: a player that is not ours (ffmpeg) plays the live view over plain HTTP, told the codec; who may watch', async () => {
  const url = `http://127.0.0.1:${port}/api/v1/cameras/porch/live.mp4`;
  assert.is((await fetch(url)).status, 401);
  const bearer = { authorization: `Bearer ${admin}` };
  const missing = await fetch(url.replace('porch', 'nope'), { headers: bearer });
  assert.is(missing.status, 404);
  const res = await fetch(url, { headers: bearer });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^video\/mp4; codecs="avc1\.[0-9a-f]{6}"$/);
  await res.body!.cancel();
  // ffmpeg, as any HTTP player: 3 s of the camera decoded, at its size.
  const { stderr } = await run('ffmpeg', [
    '-hide_banner',
    '-headers',
    `Authorization: Bearer ${admin}\r\n`,
    '-i',
    url,
    '-t',
    '3',
    '-f',
    'null',
    '-',
  ]);
  assert.match(stderr, /Video: h264.*1280x720/);
  const frames = Number([...stderr.matchAll(/frame=\s*(\d+)/g)].at(-1)?.[1]);
  console.log(`    live.mp4: ${frames} frames decoded in 3 s`);
  assert.ok(frames >= 30, `${frames} frames decoded in 3 s`);
  // A reader that goes frees its place: more come and go than the camera's cap (6) holds at once.
  for (let i = 0; i < 8; i++) {
    let status = 0;
    await waitUntil(
      `reader ${i + 1} let in`,
      async () => {
        const next = await fetch(url, { headers: bearer });
        status = next.status;
        await next.body?.cancel();
        return status === 200;
      },
      5000,
      100,
    );
  }
});

test('a viewer stays connected through a camera restart: one stream, its clock never goes back; removing the camera ends it', async () => {
  const viewer = await watch('porch');
  await waitUntil('video', () => viewer.binaries.length > 3, 15_000);
  const [pid] = ffmpegPids(box.dataDir).filter((p) => p > 0);
  process.kill(pid!, 'SIGKILL');
  const restarted = await waitUntil(
    'a new ffmpeg',
    () => ffmpegPids(box.dataDir).find((p) => p > 0 && p !== pid),
    20_000,
  );
  const before = viewer.binaries.length;
  await waitUntil('video from the new ffmpeg', () => viewer.binaries.length > before + 40, 20_000); // about 3 s: a fragment per frame
  assert.ok(ffmpegPids(box.dataDir).includes(restarted));
  // The same camera, the same init: the viewer's player goes on without starting over.
  assert.is(viewer.texts.length, 1);
  const init = viewer.binaries[0]!;
  assert.is(viewer.binaries.filter((b) => b.toString('latin1', 4, 8) === 'ftyp').length, 1);
  const starts = viewer.binaries.slice(1).map((moof) => fragmentTiming(moof, init)!.start);
  assert.ok(
    starts.every((t, i) => i === 0 || t > starts[i - 1]!),
    `fragment times only go forward: ${starts.join(', ')}`,
  );
  const file = path.join(box.dataDir, 'live-restart.mp4');
  await writeFile(file, Buffer.concat(viewer.binaries));
  assert.ok((await playable(file)).seconds >= 2);
  assert.is((await box.request('DELETE', '/api/v1/cameras/porch', { auth: admin })).status, 200);
  const closed = await viewer.closed;
  assert.equal(closed, { code: 1000, reason: 'camera stopped' });
});

test.run();
