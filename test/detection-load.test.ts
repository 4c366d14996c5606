// Frames faster than inference: the real model, slowed down by a wrapper (this machine is
// too fast to fall behind on one camera), fed the real clip as fast as ffmpeg decodes it.
// The newest frame wins, drops are counted, "behind" is said, nothing queues up.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { ConfigSchema } from '../appliance/config.ts';
import { FRAGMENTS } from '../services/streams/ffmpeg.ts';
import { CameraDetector } from '../services/detector/camera-detector.ts';
import type { ObjectEvent } from '../services/events/events.schemas.ts';
import { YoloxModel } from '../lib/vision/yolox.ts';
import { CameraInput, type Camera } from '../services/cameras/cameras.schemas.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import { tempDir } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';
import { InferenceQueue } from '../services/detector/inference-queue.ts';

const run = promisify(execFile);
const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {} } as never;

test('a slow detector keeps the newest frame, counts what it drops, says it is behind', async () => {
  const dir = await tempDir();
  const live = path.join(dir, 'live.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', DEMO_CLIP, '-t', '12', '-c', 'copy', '-movflags', FRAGMENTS, live]);
  const model = await YoloxModel.load(ConfigSchema.parse({}).detector.modelPath);
  let running = 0;
  let mostAtOnce = 0;
  const slow = Object.create(model) as YoloxModel;
  slow.detect = async (...args) => {
    mostAtOnce = Math.max(mostAtOnce, ++running);
    await new Promise((r) => setTimeout(r, 300));
    try {
      return await model.detect(...args);
    } finally {
      running--;
    }
  };
  const camera = {
    ...CameraInput.parse({
      id: 'fast',
      name: 'Fast',
      source: { kind: 'rtsp', url: 'rtsp://127.0.0.1/x' },
      detection: { labels: ['person'] },
    }),
    createdAt: '',
  } as Camera;
  const events: ObjectEvent[] = [];
  let feedClosed = false;
  const feed = new PassThrough();
  const detector = new CameraDetector(
    camera,
    slow,
    new InferenceQueue(1),
    { ffmpegPath: 'ffmpeg', snapshotWidth: 640, minScore: 0.5, stationaryCheckMs: 5000, stationaryEndMs: 30_000 },
    async () => {
      // As fast as the disk gives it: far faster than 5 fps. It stays open, as a camera's does.
      createReadStream(live).pipe(feed, { end: false });
      feed.once('close', () => (feedClosed = true));
      return feed;
    },
    silent,
  );
  detector.on('event', (e) => events.push(e));
  detector.start();
  await waitUntil('the clip decoded', () => detector.stats.frames >= 55, 30_000);
  const stats = detector.stats;
  assert.ok(stats.dropped > 20, `${stats.dropped} frames dropped of ${stats.frames}`);
  assert.ok(stats.behind, 'it says it is behind');
  assert.is(mostAtOnce, 1, 'one inference at a time: frames wait in one slot, not a queue');
  assert.ok(stats.inferences + stats.dropped <= stats.frames);
  feed.end(); // the camera's stream stops: the detector lets go of it
  await waitUntil('the feed ended', () => feedClosed, 10_000);
  const open = new Set<string>();
  for (const e of events) {
    if (e.type === 'end') open.delete(e.id);
    else open.add(e.id);
  }
  assert.is(open.size, 0, 'no event stays open after the stream ended');
  detector.stop();
  await rm(dir, { recursive: true, force: true });
});

test.run();
