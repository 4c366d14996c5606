// The pure parts of the video pipeline: reading ffmpeg, redacting, repairing torn files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { appendFile, copyFile, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  classifyFailure,
  FRAGMENTS,
  parseSegmentLine,
  parseStreamInfo,
  ProgressReader,
} from '../services/streams/ffmpeg.ts';
import { redactText, redactUrl } from '../lib/redact.ts';
import {
  BoxSplitter,
  codecString,
  fragmentTiming,
  startsWithKeyframe,
  trimToLastFragment,
} from '../lib/media/fragmented-mp4.ts';
import { LiveFeed } from '../services/streams/live-feed.ts';
import { RecordingTail } from '../services/streams/recording-tail.ts';
import { waitUntil } from './helpers/processes.ts';
import { startOfSegmentFile } from '../appliance/data-dir.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import { tempDir } from './helpers/box.ts';
import { createServer } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { httpSink, LIVE_LIMITS, relayLive, webSocketSink } from '../gateway/http/live-relay.ts';
import { freePort } from './helpers/processes.ts';
import { cameraClip, h265Clip, longClip, playable } from './helpers/video.ts';
import { CameraFeed } from '../services/webrtc/media-slot.ts';
import { PassThrough } from 'node:stream';

const run = promisify(execFile);

test("stream info from ffmpeg's stderr", () => {
  assert.equal(
    parseStreamInfo('  Stream #0:0: Video: h264 (Main), yuv420p(progressive), 1280x720, 15 fps, 15 tbr, 90k tbn'),
    {
      codec: 'h264',
      width: 1280,
      height: 720,
      fps: 15,
    },
  );
  assert.equal(
    parseStreamInfo('  Stream #0:1[0x101]: Video: hevc (Main), yuv420p(tv), 2560x1440, 12.50 fps')?.fps,
    12.5,
  );
  assert.is(parseStreamInfo('  Stream #0:1: Audio: aac, 48000 Hz'), undefined);
});

test('progress blocks, split anywhere, give frame counts', () => {
  const seen: number[] = [];
  const reader = new ProgressReader((p) => seen.push(p.frame));
  reader.push('frame=10\nfps=15\nbitrate=1200.5kbits/s\nprogr');
  reader.push('ess=continue\nframe=25\nprogress=continue\n');
  assert.equal(seen, [10, 25]);
});

test('segment list lines and segment file names', () => {
  assert.equal(parseSegmentLine('2026-11-22T04-37-33-abc.mp4,0.000000,5.866667'), {
    file: '2026-11-22T04-37-33-abc.mp4',
    startOffset: 0,
    endOffset: 5.866667,
  });
  assert.is(parseSegmentLine('garbage'), undefined);
  assert.is(startOfSegmentFile('/x/2026-11-22T04-37-33-abc.mp4'), Date.parse('2026-11-22T04:37:33Z'));
  assert.ok(Number.isNaN(startOfSegmentFile('04-37-33.mp4')));
});

test("failures are named in an installer's words", () => {
  const cases: Array<[string, string]> = [
    ['[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized', 'unauthorized'],
    ['rtsp://x: Connection refused', 'unreachable'],
    ['[tcp @ 0x1] Failed to resolve hostname cam.local: Name or service not known', 'unreachable'],
    ["Stream map '0:v:0' matches no streams.", 'no video track'],
    ['rtsp://x: Invalid data found when processing input', 'not a video stream'],
    ['[rtsp @ 0x1] method DESCRIBE failed: 404 Not Found', 'not found'],
  ];
  for (const [line, reason] of cases) assert.is(classifyFailure(['noise', line], 1).reason, reason, line);
  assert.match(classifyFailure(['something odd'], 187).detail, /code 187: something odd/);
  // A full disk is the box's, said plainly, whatever ffmpeg printed after it.
  const full = classifyFailure(
    ['[segment @ 0x1] Failed to open segment: No space left on device', '    Last message repeated 1 times'],
    1,
  );
  assert.is(full.reason, 'disk full');
  assert.not.match(classifyFailure(['odd', '    Last message repeated 1 times'], 1).detail, /repeated/);
});

test('credentials are masked in URLs and in any text', () => {
  assert.is(redactUrl('rtsp://admin:p@ss:w0rd@10.0.0.5:554/s1'), 'rtsp://admin:***@10.0.0.5:554/s1');
  assert.is(redactUrl('rtsp://10.0.0.5/s1'), 'rtsp://10.0.0.5/s1');
  assert.is(
    redactText("Input #0, rtsp, from 'rtsp://admin:hunter2@10.0.0.5/s1':"),
    "Input #0, rtsp, from 'rtsp://admin:***@10.0.0.5/s1':",
  );
});

test('a fragmented MP4 torn mid-fragment is cut back to its last complete fragment and plays', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'seg.mp4');
  await run('ffmpeg', [
    '-v',
    'error',
    '-i',
    DEMO_CLIP,
    '-t',
    '8',
    '-c',
    'copy',
    '-movflags',
    '+frag_keyframe+empty_moov+default_base_moof',
    file,
  ]);
  const whole = (await stat(file)).size;
  await truncate(file, Math.floor(whole * 0.7)); // the power went mid-write
  const kept = await trimToLastFragment(file);
  assert.ok(kept > 0 && kept < whole * 0.7);
  assert.is((await stat(file)).size, kept);
  const info = await playable(file);
  assert.ok(info.seconds >= 2 && info.seconds < 8, `plays ${info.seconds} s`);
  // A file with no complete header has nothing to keep.
  const empty = path.join(dir, 'empty.mp4');
  await copyFile(file, empty);
  await truncate(empty, 20);
  assert.is(await trimToLastFragment(empty), 0);
  await rm(dir, { recursive: true, force: true });
});

/** The clip as ffmpeg's live output cuts it: a fragment per frame. */
async function liveCut(dir: string, clip: string, seconds: number): Promise<Buffer> {
  const file = path.join(dir, 'live.mp4');
  await run('ffmpeg', [
    '-v',
    'error',
    '-y',
    '-i',
    clip,
    '-t',
    String(seconds),
    '-c',
    'copy',
    '-movflags',
    FRAGMENTS,
    file,
  ]);
  return readFile(file);
}

/** The clip cut as the recorder cuts it: segment files on keyframes, each with its clock from 0. */
async function recordedSegments(dir: string, clip: string, segmentSeconds: number): Promise<Buffer[]> {
  await run('ffmpeg', [
    '-v',
    'error',
    '-y',
    '-i',
    clip,
    '-t',
    String(segmentSeconds * 2),
    '-c',
    'copy',
    '-f',
    'segment',
    '-segment_time',
    String(segmentSeconds),
    '-segment_format',
    'mp4',
    '-segment_format_options',
    `movflags=${FRAGMENTS}`,
    '-reset_timestamps',
    '1',
    path.join(dir, 'seg%d.mp4'),
  ]);
  return Promise.all([0, 1].map((i) => readFile(path.join(dir, `seg${i}.mp4`))));
}

/** Top-level boxes of an MP4, with where each ends in the file. */
function boxesOf(bytes: Buffer): Array<{ type: string; box: Buffer; end: number }> {
  const out: Array<{ type: string; box: Buffer; end: number }> = [];
  let end = 0;
  new BoxSplitter((type, box) => out.push({ type, box, end: (end += box.length) })).push(bytes);
  return out;
}

test('the live feed cuts a stream split anywhere into init and fragments, and knows its keyframes', async () => {
  const dir = await tempDir();
  const bytes = await liveCut(dir, DEMO_CLIP, 6);
  const feed = new LiveFeed();
  const seen: boolean[] = [];
  feed.onFragment((f) => seen.push(f.keyframe));
  for (let i = 0; i < bytes.length; i += 7001) feed.push(bytes.subarray(i, i + 7001));
  assert.is(feed.init!.toString('latin1', 4, 8), 'ftyp');
  // ffprobe says where the keyframes are: every 30th frame of the 15 fps clip.
  const { stdout } = await run('ffprobe', [
    '-v',
    'error',
    '-select_streams',
    'v',
    '-show_entries',
    'packet=flags',
    '-of',
    'csv=p=0',
    path.join(dir, 'live.mp4'),
  ]);
  const keyframes = stdout.split('\n').filter((l) => l.startsWith('K')).length;
  assert.is(seen.filter(Boolean).length, keyframes);
  assert.ok(seen[0], 'the stream starts on a keyframe');
  assert.ok(seen.length > keyframes * 4, `several fragments per GOP (${seen.length} for ${keyframes} GOPs)`);
  assert.is(codecString(feed.init!), 'avc1.4d401f'); // Main profile, level 3.1: the clip's SPS
  // A viewer who joins now gets init + the current GOP, which decodes from its first frame.
  const viewer = feed.watch();
  const joined = path.join(dir, 'joined.mp4');
  const chunks: Buffer[] = [];
  viewer.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => setImmediate(r));
  await writeFile(joined, Buffer.concat(chunks));
  const decoded = await run('ffmpeg', ['-v', 'error', '-i', joined, '-f', 'null', '-']);
  assert.is(decoded.stderr.trim(), '', 'decodes without errors');
  viewer.destroy();
  assert.is(feed.viewerCount, 0);
  await rm(dir, { recursive: true, force: true });
});

test('a viewer that does not read is bounded and resumes on a keyframe', async () => {
  const dir = await tempDir();
  const bytes = await liveCut(dir, await longClip(), 120);
  const feed = new LiveFeed();
  const stuck = feed.watch(); // does not read for now
  const half = Math.floor(bytes.length * 0.6);
  feed.push(bytes.subarray(0, half));
  assert.ok(half > 8 * 1024 * 1024, 'the test pushes more than the bound');
  assert.ok(stuck.readableLength < 6 * 1024 * 1024, `held ${stuck.readableLength} bytes`);
  while (stuck.read() !== null); // it catches up
  const after: Buffer[] = [];
  stuck.on('data', (c: Buffer) => after.push(c));
  feed.push(bytes.subarray(half));
  await new Promise((r) => setImmediate(r));
  let firstMoof: Buffer | undefined;
  new BoxSplitter((type, box) => (firstMoof ??= type === 'moof' ? box : undefined)).push(Buffer.concat(after));
  assert.ok(firstMoof && startsWithKeyframe(firstMoof, feed.init), 'what it gets next starts on a keyframe');
  stuck.destroy();
  feed.end();
  await rm(dir, { recursive: true, force: true });
});

test('a streamed live answer (live.mp4): a reader that stops is cut off at a small backlog; one that reads gets the codec and starts on a keyframe, and ends when the stream goes quiet', async () => {
  const dir = await tempDir();
  const bytes = await liveCut(dir, await longClip(), 120);
  const feed = new LiveFeed();
  let stopped = 0;
  const limits = { ...LIVE_LIMITS, stuckMs: 1500, idleMs: 2500 };
  const stuck = httpSink();
  relayLive(stuck.sink, feed.watch(), () => stopped++, limits);
  const reading = httpSink();
  relayLive(reading.sink, feed.watch(), () => stopped++, limits);
  const got: Buffer[] = [];
  const ended = (async () => {
    const reader = reading.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      got.push(Buffer.from(value));
    }
  })();
  let most = 0;
  for (let at = 0; at < bytes.length && stopped === 0; at += 64 * 1024) {
    feed.push(bytes.subarray(at, at + 64 * 1024));
    most = Math.max(most, stuck.sink.backlog());
    await new Promise((r) => setTimeout(r, 60));
  }
  assert.is(stopped, 1, 'the reader that stopped was let go while the stream went on');
  assert.ok(most <= LIVE_LIMITS.skipBytes + 1024 * 1024, `at most ${most} bytes were queued for it`);
  const cutOff = await stuck.body
    .getReader()
    .read()
    .then(
      () => 'read on',
      (err: Error) => err.message,
    );
  assert.match(cutOff, /does not read/);
  assert.match((await reading.mime)!, /^video\/mp4; codecs="avc1\.[0-9a-f]{6}/);
  const t0 = Date.now();
  await ended;
  assert.ok(Date.now() - t0 < 7000, 'the reading answer ended when the stream went quiet');
  const answer = Buffer.concat(got);
  assert.is(answer.subarray(4, 8).toString(), 'ftyp');
  let init: Buffer | undefined;
  let firstMoof: Buffer | undefined;
  new BoxSplitter((type, box) => {
    if (type === 'moov') init = box;
    firstMoof ??= type === 'moof' ? box : undefined;
  }).push(answer);
  assert.ok(init && firstMoof && startsWithKeyframe(firstMoof, feed.init), 'it starts on a keyframe');
  await waitUntil('both readers left the feed', () => stopped === 2, 3000, 20);
  assert.is(feed.viewerCount, 0);
  feed.end();
  await rm(dir, { recursive: true, force: true });
});

test('a live socket whose viewer stops reading is cut off at a small backlog; one whose stream goes quiet is closed (1011) so its player reconnects', async () => {
  const dir = await tempDir();
  const bytes = await liveCut(dir, await longClip(), 120);
  const feed = new LiveFeed();
  const port = await freePort();
  const server = createServer();
  const sockets = new WebSocketServer({ server });
  const served: WebSocket[] = [];
  let stopped = 0;
  sockets.on('connection', (ws) => {
    served.push(ws);
    relayLive(webSocketSink(ws), feed.watch(), () => stopped++, { ...LIVE_LIMITS, stuckMs: 1500, idleMs: 2500 });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const open = (onOpen: (ws: WebSocket) => void) =>
    new Promise<{ ws: WebSocket; closed: Promise<number> }>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
      ws.once('open', () => (onOpen(ws), resolve({ ws, closed })));
    });
  // A viewer that stops reading: its TCP window fills, then the box's queue for it.
  const stuck = await open((ws) => (ws as unknown as { _socket: { pause(): void } })._socket.pause());
  const reader = await open(() => undefined);
  let most = 0;
  // The camera's pace, about 1 MB/s: fragments keep coming while the viewer does not read.
  for (let at = 0; at < bytes.length && served[0]!.readyState === WebSocket.OPEN; at += 64 * 1024) {
    feed.push(bytes.subarray(at, at + 64 * 1024));
    most = Math.max(most, served[0]!.bufferedAmount);
    await new Promise((r) => setTimeout(r, 60));
  }
  assert.is(served[0]!.readyState, WebSocket.CLOSED, 'the stuck viewer was cut off while the stream went on');
  assert.ok(most <= LIVE_LIMITS.skipBytes + 1024 * 1024, `at most ${most} bytes were queued for it`);
  assert.is(served[1]!.readyState, WebSocket.OPEN, 'the viewer that reads goes on');
  // The stream goes quiet (its node lost, the bus restarted): the reading viewer is told.
  const t0 = Date.now();
  assert.is(await reader.closed, 1011);
  const quietMs = Date.now() - t0;
  assert.ok(quietMs < 7000, `closed after ${quietMs} ms of silence`);
  await waitUntil('both viewers left the feed', () => stopped === 2, 3000, 20);
  assert.is(feed.viewerCount, 0);
  stuck.ws.terminate();
  sockets.close();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

test('live view from a recording being written: a late viewer starts at its newest keyframe, follows it, and goes on into the next segment on one clock', async () => {
  const dir = await tempDir();
  // Two segment files as the recorder writes them: each has its init and a clock from 0.
  const [first, second] = (await recordedSegments(dir, DEMO_CLIP, 6)) as [Buffer, Buffer];
  const a = path.join(dir, 'a.mp4');
  const b = path.join(dir, 'b.mp4');
  const written = Math.floor(first.length * 0.6) + 3; // mid-box, as ffmpeg leaves it between writes
  await writeFile(a, first.subarray(0, written));
  // What the viewer must get first: the newest keyframe fragment already complete in the file.
  const boxes = boxesOf(first);
  const init = Buffer.concat(boxes.slice(0, 2).map((x) => x.box));
  const complete = boxes.filter((x, i) => x.type === 'moof' && boxes[i + 1]!.end <= written);
  const newest = complete.filter((x) => startsWithKeyframe(x.box, init)).pop()!;
  const expected =
    boxes.filter((x) => x.type === 'moof' && x.end >= newest.end).length +
    boxesOf(second).filter((x) => x.type === 'moof').length;

  let tail: RecordingTail | undefined;
  const feed = new LiveFeed((wanted) => (wanted ? tail!.start(a) : tail!.stop()));
  tail = new RecordingTail(feed, (err) => assert.unreachable(err.message));
  const viewer = feed.watch();
  const got: Buffer[] = [];
  viewer.on('data', (c: Buffer) => got.push(c));
  const fragmentsGot = () => boxesOf(Buffer.concat(got)).filter((x) => x.type === 'moof');
  await waitUntil('the newest GOP', () => fragmentsGot().length > 0, 5000, 20);
  assert.ok(
    fragmentsGot()[0]!.box.equals(newest.box),
    'it starts at the newest keyframe, not at the start of the file',
  );
  // ffmpeg writes on; then closes the file and opens the next.
  await appendFile(a, first.subarray(written, written + 50_000));
  await appendFile(a, first.subarray(written + 50_000));
  await writeFile(b, second);
  tail.follow(b);
  await waitUntil('every fragment after it', () => fragmentsGot().length === expected, 5000, 20);

  const out = boxesOf(Buffer.concat(got));
  assert.equal(
    out.slice(0, 2).map((x) => x.type),
    ['ftyp', 'moov'],
  );
  assert.is(out.filter((x) => x.type === 'ftyp').length, 1, "the next segment's identical init is not sent again");
  const times = out.filter((x) => x.type === 'moof').map((x) => fragmentTiming(x.box, init)!);
  for (let i = 1; i < times.length; i++)
    assert.is(times[i]!.start, times[i - 1]!.start + times[i - 1]!.duration, `fragment ${i} follows on`);
  const joined = path.join(dir, 'joined.mp4');
  await writeFile(joined, Buffer.concat(got));
  const decoded = await run('ffmpeg', ['-v', 'error', '-i', joined, '-f', 'null', '-']);
  assert.is(decoded.stderr.trim(), '', 'decodes without errors');
  assert.ok((await playable(joined)).seconds > 5, 'the rest of the first file and all of the second');

  // The viewer leaves: the file is no longer read, and what the feed held is dropped.
  viewer.destroy();
  assert.is(feed.init, undefined);
  await appendFile(b, second.subarray(0, 1000));
  await new Promise((r) => setTimeout(r, 300));
  assert.is(feed.init, undefined);
  await rm(dir, { recursive: true, force: true });
});

test('an H.265 stream gets an hvc1 codec string a browser understands', async () => {
  const dir = await tempDir();
  const feed = new LiveFeed();
  feed.push(await liveCut(dir, await h265Clip(), 2));
  assert.match(codecString(feed.init!)!, /^hvc1\.1\.6\.L\d+(\.[0-9a-f]+)*$/);
  await rm(dir, { recursive: true, force: true });
});

test('WebRTC: a camera with B-frames is refused even when its first frames come after its init segment; one without is taken', async () => {
  const dir = await tempDir();
  const slotReady = async (clip: string): Promise<string> => {
    const bytes = await liveCut(dir, clip, 2);
    const firstFragment = bytes.indexOf('moof') - 4;
    const feed = new PassThrough();
    const camera = new CameraFeed(
      {
        camera: 'street',
        feed,
        cameraAudio: null,
        audioFeed: () => assert.unreachable('no sound asked for') as never,
        release: () => {},
      },
      () => {},
    );
    // As the feed may come: the init segment in one chunk, the current GOP in a later one.
    feed.write(bytes.subarray(0, firstFragment));
    const ready = camera.ready(5000).then(
      () => 'taken',
      (err: Error) => `${err.constructor.name}: ${err.message}`,
    );
    await new Promise((r) => setTimeout(r, 100));
    feed.write(bytes.subarray(firstFragment));
    const outcome = await ready;
    camera.close();
    return outcome;
  };
  assert.match(await slotReady(DEMO_CLIP), /^MediaNotForWebRtcError: the camera sends B-frames/);
  assert.is(await slotReady(await cameraClip()), 'taken');
  await rm(dir, { recursive: true, force: true });
});

test.run();
