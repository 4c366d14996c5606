// npm run bench:review — what the homeowner reviews, on the street clip at real time through
// the box's own detector (real ffmpeg, real model, tracker):
// - events per minute and review items per minute (the events service's grouping, fed the
//   detector's messages as they come), and how long the first event took from the camera's first
//   bytes;
// - CPU of making one review item's preview (ffmpeg, as the box runs it) per second of footage;
// - the share of events whose box lands on an object of its label in the event's own snapshot
//   (the model run again on each stored picture; target 95 % or more), against a reference
//   measured in the same run: the same boxes checked on each event's first picture, which is
//   what an event showed when only its start picture was kept.
// - how late frames reach the detector: each decoded frame against the moment its part of the
//   clip was sent (cut into fragments as the box cuts a camera stream), and how long
//   from an object's first decoded frame to its event coming out; their sum is frame-to-event
//   (target p50 under 500 ms).
// SECONDS=60 of the clip by default (the 20 s demo clip looped); CLIP=<file> for another one.
import { YoloxModel, iouOf } from '../../lib/vision/yolox.ts';
import { ConfigSchema } from '../../appliance/config.ts';
import { clipFeed, detectInJpeg, replayDetector, type SeenEvent } from '../helpers/detector-replay.ts';
import { FrameSource } from '../../services/detector/frames.ts';
import { ReviewItems } from '../../services/events/review-items.ts';
import { previewArgs } from '../../services/events/previews.ts';
import { ReviewRules } from '../../services/cameras/cameras.schemas.ts';
import type { ReviewItem, StoredEvent } from '../../services/events/events.schemas.ts';
import { Store } from '../../lib/store.ts';
import { tempDir } from '../helpers/box.ts';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { pct } from './proc-stats.ts';
import { longClip } from '../helpers/video.ts';

const SECONDS = Number(process.env['SECONDS'] ?? 60);
const clip = process.env['CLIP'] ?? (await longClip());
const config = ConfigSchema.parse({});
const model = await YoloxModel.load(config.detector.modelPath);

// --- Decoder lag: 10 s of the clip through the detector's FrameSource alone. --------------------
const FPS = 5;
const lags: number[] = [];
{
  const feed = clipFeed(clip, 10);
  let sentAt = 0;
  feed.once('data', () => (sentAt = Date.now()));
  const source = new FrameSource(feed, {
    ffmpegPath: config.video.ffmpegPath,
    fps: FPS,
    modelSize: model.size,
    snapshotWidth: config.detector.snapshotWidth,
  });
  source.on('frame', (f) => lags.push(Date.now() - (sentAt + (f.seq * 1000) / FPS)));
  await new Promise((r) => feed.once('close', r));
  await new Promise((r) => setTimeout(r, 500));
  source.close();
}

// --- The detector at real time, its messages grouped into review items as the box does. -------
const dir = await tempDir();
const store = await Store.open(path.join(dir, 'db'));
const opened: ReviewItem[] = [];
const quiet = { warn: () => undefined } as never;
const review = new ReviewItems(
  { items: store.collection<ReviewItem>('items'), byStart: store.collection<string>('byStart') },
  async () => ReviewRules.parse({}),
  (name, item) => name === 'review.opened' && opened.push(item),
  () => undefined,
  { idleMs: config.detector.reviewIdleSeconds * 1000, maxMs: config.detector.reviewMaxSeconds * 1000 },
  quiet,
);
const stored = new Map<string, StoredEvent>();
const { events, firstDataAt } = await replayDetector(
  model,
  clip,
  SECONDS,
  { labels: ['person', 'car', 'truck', 'bus', 'bicycle', 'motorcycle'] },
  ({ type: _t, snapshot, ...e }) => {
    const before = stored.get(e.id);
    const next: StoredEvent = {
      ...e,
      end: e.end ?? before?.end ?? null,
      reviewed: false,
      hasSnapshot: Boolean(snapshot) || Boolean(before?.hasSnapshot),
      snapshotVersion: (before?.snapshotVersion ?? 0) + (snapshot ? 1 : 0),
      updatedAt: new Date().toISOString(),
    };
    stored.set(e.id, next);
    void review.onEvent(next);
  },
);
await review.stop();
await store.close();

// --- Preview CPU: one item's preview made from 30 s of the clip, as the box makes it. ----------
const run = promisify(execFile);
const footage = path.join(dir, 'footage.mp4');
await run('ffmpeg', ['-v', 'error', '-y', '-i', clip, '-t', '30', '-c', 'copy', '-movflags', '+faststart', footage]);
const timed = await run('bash', [
  '-c',
  `TIMEFORMAT='%U %S'; time ffmpeg ${previewArgs(footage, path.join(dir, 'preview.mp4'), 30)
    .map((a) => `'${a}'`)
    .join(' ')}`,
]);
const [user, sys] = timed.stderr.trim().split('\n').pop()!.split(' ').map(Number);
const previewCpuS = user! + sys!;
await rm(dir, { recursive: true, force: true });

const lands = async (jpeg: Buffer | undefined, e: SeenEvent) =>
  jpeg !== undefined && (await detectInJpeg(model, jpeg, e.label)).some((b) => iouOf(b, e.box) >= 0.5);
let own = 0;
let firstPicture = 0;
for (const e of events) {
  if (await lands(e.snapshot, e)) own++;
  const first = e.messages.find((m) => m.snapshot)?.snapshot;
  if (await lands(first ? Buffer.from(first, 'base64') : undefined, e)) firstPicture++;
}
const toEvent = events.map((e) => e.announcedAt - e.start);
const share = (n: number) => (events.length ? (100 * n) / events.length : 0);
const firstEvent = Math.min(...events.map((e) => e.announcedAt)) - firstDataAt;
const pictures = events.reduce((n, e) => n + e.messages.filter((m) => m.snapshot).length, 0);

console.log(`clip: ${clip}, ${SECONDS} s at real time`);
const ms = (xs: number[], p: number) => `${pct(xs, p).toFixed(0)} ms`;
console.log(`decoder lag (part of the clip sent -> its frame decoded): p50 ${ms(lags, 0.5)}, p95 ${ms(lags, 0.95)}`);
console.log(`first decoded frame of an object -> its event out: p50 ${ms(toEvent, 0.5)}, p95 ${ms(toEvent, 0.95)}`);
console.log(
  `frame -> event (sum of the medians): ${(pct(lags, 0.5) + pct(toEvent, 0.5)).toFixed(0)} ms (target p50 < 500 ms)`,
);
console.log(`events: ${events.length} (${((events.length * 60) / SECONDS).toFixed(1)} per minute)`);
console.log(
  `review items: ${opened.length} (${((opened.length * 60) / SECONDS).toFixed(1)} per minute), ` +
    `${(events.length / Math.max(1, opened.length)).toFixed(1)} events per item`,
);
console.log(
  `preview of 30 s of footage: ${previewCpuS.toFixed(2)} s of CPU (${((previewCpuS / 30) * 100).toFixed(1)} % of one core per second of footage)`,
);
console.log(`pictures sent: ${pictures} (${(pictures / Math.max(1, events.length)).toFixed(1)} per event)`);
console.log(
  `first event out: ${(firstEvent / 1000).toFixed(2)} s after the camera's first bytes (people in view from the start)`,
);
console.log(`box on its object in its own snapshot: ${share(own).toFixed(1)} % (target >= 95 %)`);
console.log(
  `reference, the same boxes on each event's first picture: ${share(firstPicture).toFixed(1)} % ` +
    `(ratio ${(own / Math.max(1, firstPicture)).toFixed(2)}x)`,
);
process.exit(0);
