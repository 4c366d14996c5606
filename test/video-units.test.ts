// The pure parts of the video pipeline: reading ffmpeg, redacting, repairing torn files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { copyFile, readFile, rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { classifyFailure, parseSegmentLine, parseStreamInfo, ProgressReader } from '../services/streams/ffmpeg.ts';
import { redactText, redactUrl } from '../lib/redact.ts';
import { FragmentTracker, trimToLastFragment } from '../services/recorder/fragmented-mp4.ts';
import { startOfSegmentFile } from '../appliance/data-dir.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import { tempDir } from './helpers/box.ts';
import { playable } from './helpers/video.ts';

const run = promisify(execFile);

test('stream info from ffmpeg\'s stderr', () => {
  assert.equal(parseStreamInfo('  Stream #0:0: Video: h264 (Main), yuv420p(progressive), 1280x720, 15 fps, 15 tbr, 90k tbn'), {
    codec: 'h264', width: 1280, height: 720, fps: 15,
  });
  assert.equal(parseStreamInfo('  Stream #0:1[0x101]: Video: hevc (Main), yuv420p(tv), 2560x1440, 12.50 fps')?.fps, 12.5);
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
  assert.equal(parseSegmentLine('2026-11-22T04-37-33-abc.mp4,0.000000,5.866667'), { file: '2026-11-22T04-37-33-abc.mp4', startOffset: 0, endOffset: 5.866667 });
  assert.is(parseSegmentLine('garbage'), undefined);
  assert.is(startOfSegmentFile('/x/2026-11-22T04-37-33-abc.mp4'), Date.parse('2026-11-22T04:37:33Z'));
  assert.ok(Number.isNaN(startOfSegmentFile('04-37-33.mp4')));
});

test('failures are named in an installer\'s words', () => {
  const cases: Array<[string, string]> = [
    ['[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized', 'unauthorized'],
    ['rtsp://x: Connection refused', 'unreachable'],
    ['[tcp @ 0x1] Failed to resolve hostname cam.local: Name or service not known', 'unreachable'],
    ['Stream map \'0:v:0\' matches no streams.', 'no video track'],
    ['rtsp://x: Invalid data found when processing input', 'not a video stream'],
    ['[rtsp @ 0x1] method DESCRIBE failed: 404 Not Found', 'not found'],
  ];
  for (const [line, reason] of cases) assert.is(classifyFailure(['noise', line], 1).reason, reason, line);
  assert.match(classifyFailure(['something odd'], 187).detail, /code 187: something odd/);
});

test('credentials are masked in URLs and in any text', () => {
  assert.is(redactUrl('rtsp://admin:p@ss:w0rd@10.0.0.5:554/s1'), 'rtsp://admin:***@10.0.0.5:554/s1');
  assert.is(redactUrl('rtsp://10.0.0.5/s1'), 'rtsp://10.0.0.5/s1');
  assert.is(redactText("Input #0, rtsp, from 'rtsp://admin:hunter2@10.0.0.5/s1':"), "Input #0, rtsp, from 'rtsp://admin:***@10.0.0.5/s1':");
});

test('a fragmented MP4 torn mid-fragment is cut back to its last complete fragment and plays', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'seg.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', DEMO_CLIP, '-t', '8', '-c', 'copy', '-movflags', '+frag_keyframe+empty_moov+default_base_moof', file]);
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

test('the fragment tracker finds header and newest fragment in a stream cut into odd chunks', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'frag.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', DEMO_CLIP, '-t', '6', '-c', 'copy', '-movflags', '+frag_keyframe+empty_moov+default_base_moof', file]);
  const bytes = await readFile(file);
  const tracker = new FragmentTracker();
  for (let i = 0; i < bytes.length; i += 7001) tracker.push(bytes.subarray(i, i + 7001));
  assert.ok(tracker.init && tracker.init.toString('latin1', 4, 8) === 'ftyp');
  const [moof, mdat] = tracker.latest!.parts;
  assert.is(moof!.toString('latin1', 4, 8), 'moof');
  assert.is(mdat!.toString('latin1', 4, 8), 'mdat');
  // The tracker kept the file's last fragment, whole (a file also ends with an mfra index box).
  const lastMoof = bytes.lastIndexOf(Buffer.from('moof')) - 4;
  assert.is(bytes.indexOf(moof!), lastMoof);
  assert.equal(bytes.subarray(lastMoof, lastMoof + moof!.length + mdat!.length), Buffer.concat([moof!, mdat!]));
  await rm(dir, { recursive: true, force: true });
});

test.run();
