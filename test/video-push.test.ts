// Push cameras: real ffmpeg pushing RTMP into the box's node-media-server with a stream
// key; the box records it like any camera. Wrong keys, unknown cameras and outside
// players are refused; a new key cuts off the old one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { longClip, playable, RtspCamera } from './helpers/video.ts';
import { RtmpIngest } from '../services/streams/rtmp-ingest.ts';

let box: TestBox;
let admin: string;
let rtmpPort: number;
let key = '';
const t0 = new Date().toISOString();
const pushers: ChildProcess[] = [];

/** ffmpeg pushing the looped clip, as a camera agent would; resolves with its exit code when it ends. */
async function push(camera: string, streamKey: string, input?: string[]) {
  const child = spawn(
    'ffmpeg',
    [
      '-v',
      'error',
      ...(input ?? ['-re', '-stream_loop', '-1', '-i', await longClip()]),
      '-c',
      'copy',
      '-an',
      '-f',
      'flv',
      `rtmp://127.0.0.1:${rtmpPort}/live/${camera}?key=${streamKey}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  pushers.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<{ code: number | null; stderr: string }>(
    (r) => child.once('close', (code) => r({ code, stderr })), // 'close': all of stderr is read by then
  );
  return { child, exited };
}

const status = async (id: string) => (await box.request('GET', `/api/v1/cameras/${id}`, { auth: admin })).json.status;
const until = (id: string, state: string, reason?: string) =>
  waitUntil(
    `camera ${id} ${state} ${reason ?? ''}`,
    async () => {
      const s = await status(id);
      return s?.state === state && (reason === undefined || s.reason === reason) ? s : undefined;
    },
    20_000,
    200,
  );

test.before(async () => {
  rtmpPort = await freePort();
  box = await testBox({
    video: {
      segmentSeconds: 2,
      stallSeconds: 5,
      restartMinMs: 300,
      restartMaxMs: 2000,
      rtmp: { host: '127.0.0.1', port: rtmpPort },
    },
  });
  admin = await withAdmin(box);
});
test.after(async () => {
  for (const p of pushers) p.kill('SIGKILL');
  await box.stop();
});

test('a push camera gets its stream key once, and waits for the camera to push', async () => {
  const res = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'agent', name: 'Agent cam', source: { kind: 'rtmp' } },
  });
  assert.is(res.status, 201, res.text);
  key = res.json.streamKey;
  assert.match(key, /^[\w-]{24}$/);
  // Where to push, from the box's own settings (the web UI shows it so, not a port of its own).
  assert.equal(res.json.source, { kind: 'rtmp', pushPath: '/live/agent', pushPort: rtmpPort });
  const again = await box.request('GET', '/api/v1/cameras/agent', { auth: admin });
  assert.not.ok(again.text.includes(key), 'the key is never shown again');
  const s = await until('agent', 'offline', 'waiting for push');
  assert.match(s.detail, /\/live\/agent/);
});

test('wrong key and unknown camera are refused; the camera keeps waiting', async () => {
  const wrong = await push('agent', 'not-the-key-at-all-000000');
  const unknown = await push('ghost', key);
  assert.ok((await wrong.exited).code !== 0, 'the pusher with a wrong key is cut off');
  assert.ok((await unknown.exited).code !== 0, 'a camera the box does not know is cut off');
  assert.is((await status('agent')).reason, 'waiting for push');
});

test('the right key: the box records the push without transcoding, and nobody outside can play it', async () => {
  await push('agent', key);
  const s = await until('agent', 'online');
  assert.is(s.codec, 'h264');
  assert.is(s.width, 1280);
  const segments = await waitUntil(
    '2 closed segments',
    async () => {
      const list = (
        await box.request(
          'GET',
          `/api/v1/cameras/agent/segments?from=${t0}&to=${new Date(Date.now() + 60_000).toISOString()}`,
          { auth: admin },
        )
      ).json;
      return list.length >= 2 ? list : undefined;
    },
    30_000,
    500,
  );
  const { codec, seconds } = await playable(path.join(box.config.dataDir, 'media', segments[0].path));
  assert.is(codec, 'h264');
  assert.ok(seconds >= 1.5, `segment of ${seconds} s`);
  // An RTMP player on the LAN without the box's signature gets nothing.
  const player = spawn('ffmpeg', [
    '-v',
    'error',
    '-rw_timeout',
    '3000000',
    '-i',
    `rtmp://127.0.0.1:${rtmpPort}/live/agent`,
    '-t',
    '1',
    '-f',
    'null',
    '-',
  ]);
  const code = await new Promise((r) => player.once('exit', r));
  assert.ok(code !== 0, 'an unsigned player is refused');
});

test('a second pusher with the right key is refused while the camera pushes', async () => {
  const second = await push('agent', key);
  assert.ok((await second.exited).code !== 0);
  assert.is((await status('agent')).state, 'online');
});

test('the pusher goes away: the camera waits again at once; a new key cuts off the old one', async () => {
  pushers.find((p) => p.exitCode === null)!.kill('SIGKILL');
  await until('agent', 'offline', 'waiting for push');
  const live = await push('agent', key);
  await until('agent', 'online');
  const rotated = await box.request('POST', '/api/v1/cameras/agent/stream-key', { auth: admin });
  assert.is(rotated.status, 200);
  assert.ok(rotated.json.streamKey !== key);
  assert.ok((await live.exited).code !== null, 'the pusher with the old key was cut off');
  await until('agent', 'offline', 'waiting for push');
  const old = await push('agent', key);
  assert.ok((await old.exited).code !== 0, 'the old key no longer works');
  await push('agent', rotated.json.streamKey);
  await until('agent', 'online');
  const rtsp = await box.request('POST', '/api/v1/cameras/rtsp-cam/stream-key', { auth: admin });
  assert.is(rtsp.status, 404);
});

test('the video service restarted: a push camera added after it is taken (the stopped ingest judges nobody)', async () => {
  await box.broker.call('system.restartServices', { services: ['streams'] });
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'agent-2', name: 'Later', source: { kind: 'rtmp' } },
  });
  assert.is(added.status, 201, added.text);
  await push('agent-2', added.json.streamKey);
  await until('agent-2', 'online');
});

test('pushes with broken timestamps, again and again, as an agent retries: the box keeps serving, and the next sane push plays', async () => {
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: { id: 'agent-3', name: 'Odd clock', source: { kind: 'rtmp' } },
  });
  // An RTSP camera relayed as it is: its first packets come before its RTCP timing, with none.
  const camera = new RtspCamera(await freePort());
  await camera.start();
  try {
    // Pushed again and again, as a camera agent retries. node-media-server "resumed" each one
    // past the last one's timestamp until that overflowed and threw out of its socket handler,
    // which ended the box.
    for (let i = 0; i < 5; i++)
      await (
        await push('agent-3', added.json.streamKey, [
          '-rtsp_transport',
          'tcp',
          '-timeout',
          '5000000',
          '-i',
          camera.url(),
        ])
      ).exited;
    assert.is((await status('agent-2')).state, 'online', 'the other push camera goes on');
    await push('agent-3', added.json.streamKey);
    await until('agent-3', 'online');
  } finally {
    await camera.stop();
  }
});

test('anything node-media-server throws while it reads a push ends that push, not the box', async () => {
  // No stream is known that still makes it throw (the one above did): the throw is injected
  // into its packet handling, below the parser that the ingest guards.
  const Rtmp = createRequire(import.meta.url)('node-media-server/src/protocol/rtmp.js') as {
    prototype: { packetHandler(): void };
  };
  const handle = Rtmp.prototype.packetHandler;
  Rtmp.prototype.packetHandler = function () {
    throw new RangeError('injected');
  };
  try {
    const added = await box.request('POST', '/api/v1/cameras', {
      auth: admin,
      body: { id: 'agent-4', name: 'Thrower', source: { kind: 'rtmp' } },
    });
    const { code } = await (await push('agent-4', added.json.streamKey)).exited;
    assert.ok(code !== 0, 'that push was ended');
  } finally {
    Rtmp.prototype.packetHandler = handle;
  }
  assert.is((await status('agent-2')).state, 'online', 'the other push camera goes on');
  assert.is((await box.request('GET', '/api/v1/health')).status, 200);
});

test('a taken RTMP port is a clear error, not an exit of the box', async () => {
  const taken = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => taken.once('listening', r));
  const port = (taken.address() as net.AddressInfo).port;
  const ingest = new RtmpIngest(
    { host: '127.0.0.1', port, storeDir: path.join(box.dataDir, 'x') },
    box.broker.getLogger('test'),
  );
  const err = await ingest.start().then(
    () => undefined,
    (e: Error) => e,
  );
  assert.match(err!.message, new RegExp(`RTMP port 127.0.0.1:${port} is not free`));
  taken.close();
});

test.run();
