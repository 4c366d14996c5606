// The detector's parts on real data: the real YOLOX model on frames of the real street
// clip, motion on real frames, the tracker and the zones.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ModelError, YoloxModel, iouOf } from '../lib/vision/yolox.ts';
import { MotionDetector } from '../lib/vision/motion.ts';
import { Tracker } from '../services/detector/tracker.ts';
import { InferenceQueue } from '../services/detector/inference-queue.ts';
import { MAX_MS, MotionSpans, QUIET_MS } from '../services/detector/motion-spans.ts';
import type { MotionSpan } from '../services/detector/detector.schemas.ts';
import { footOf, insidePolygon } from '../lib/vision/geometry.ts';
import { ConfigSchema } from '../appliance/config.ts';
import { tempDir } from './helpers/box.ts';
import { chooseDecoder } from '../services/detector/hardware-decoding.ts';
import { FrameSource } from '../services/detector/frames.ts';
import { cameraProcesses } from '../lib/media/supervised-process.ts';
import { writeTinyYolox } from './helpers/tiny-yolox.ts';
import { FRAGMENTS } from '../services/streams/ffmpeg.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import { clipFrames } from './helpers/video.ts';
import { waitUntil } from './helpers/processes.ts';

const MODEL = ConfigSchema.parse({}).detector.modelPath;
let model: YoloxModel;

const frames = (from: number, seconds: number) => clipFrames({ from, seconds });

test.before(async () => {
  model = await YoloxModel.load(MODEL);
});

test('the bundled model loads with its labels and finds the people in a street frame', async () => {
  assert.is(model.size, 416);
  assert.is(model.labels.length, 80);
  assert.is(model.labels[0], 'person');
  const [frame] = await frames(10, 0.2);
  const found = await model.detect(frame!, { default: 0.5 });
  const people = found.filter((d) => d.label === 'person');
  assert.ok(people.length >= 3, `${people.length} people found`);
  for (const p of people) {
    const [x1, y1, x2, y2] = p.box;
    assert.ok(x1 >= 0 && y1 >= 0 && x2 <= 416 && y2 <= 234 && x2 > x1 && y2 > y1, 'boxes lie in the frame');
    assert.ok(p.score >= 0.5 && p.score <= 1);
  }
  // NMS: no two boxes of one label overlap more than the threshold.
  for (const a of people) for (const b of people) if (a !== b) assert.ok(iouOf(a.box, b.box) <= 0.45);
});

test('a model that is missing, corrupt or of another shape is refused with what was expected', async () => {
  const dir = await tempDir();
  const missing = await YoloxModel.load(path.join(dir, 'none.onnx')).catch((e: Error) => e);
  assert.instance(missing, ModelError);
  assert.match((missing as Error).message, /not found/);
  const corrupt = path.join(dir, 'corrupt.onnx');
  await writeFile(corrupt, 'this is not an ONNX file');
  await writeFile(path.join(dir, 'corrupt.labels'), 'person\n');
  assert.match(((await YoloxModel.load(corrupt).catch((e: Error) => e)) as Error).message, /Cannot load model/);
  // The real model with 10 labels: its output has 85 values per cell, 15 would fit.
  const other = path.join(dir, 'other.onnx');
  await copyFile(MODEL, other);
  await writeFile(path.join(dir, 'other.labels'), Array.from({ length: 10 }, (_, i) => `thing${i}`).join('\n'));
  const shape = (await YoloxModel.load(other).catch((e: Error) => e)) as Error;
  assert.instance(shape, ModelError);
  assert.match(shape.message, /output output \[1, 3549, 85\]; expected \[1, 3549, 15\]/);
  assert.match(shape.message, /YOLOX/);
  await rm(dir, { recursive: true, force: true });
});

test('inference workers: the same detections as in this thread, two at once side by side, the event loop free meanwhile', async () => {
  const pooled = await YoloxModel.load(MODEL, undefined, { workers: 2 });
  try {
    const [a, b] = await frames(10, 0.4);
    const here = await model.detect(a!, { default: 0.3 });
    const spent = { ms: 0 };
    assert.equal(await pooled.detect(a!, { default: 0.3 }, undefined, spent), here);
    assert.ok(spent.ms > 0, 'the time it took is told');
    // onnxruntime runs an inference in the thread that asks: on workers, this thread's loop turns
    // all along. In this thread it stops for each inference's whole length.
    const turns = async (m: YoloxModel) => {
      let n = 0;
      let on = true;
      const spin = () => on && (n++, setImmediate(spin));
      spin();
      await Promise.all([m.detect(a!, { default: 0.3 }), m.detect(b!, { default: 0.3 })]);
      on = false;
      return n;
    };
    const [onWorkers, inThread] = [await turns(pooled), await turns(model)];
    assert.ok(
      onWorkers > 4 * inThread + 8,
      `loop turns while two inferences ran: ${onWorkers} on workers, ${inThread} in this thread`,
    );
    const both = await Promise.all([pooled.detect(a!, { default: 0.3 }), pooled.detect(b!, { default: 0.3 })]);
    assert.equal(both[0], here, 'buffers handed to the workers and back keep their picture apart');
    assert.equal(both[1], await model.detect(b!, { default: 0.3 }));
  } finally {
    await pooled.close();
  }
  const err = await pooled.detect((await frames(10, 0.2))[0]!, { default: 0.5 }).catch((e: Error) => e);
  assert.match(String(err), /inference workers closed/);
});

test('a model with an open batch dimension runs the frames waiting for a worker together, each getting what it gets alone; one fixed at 1 runs them one by one', async () => {
  const dir = await tempDir();
  try {
    const open = await YoloxModel.load(await writeTinyYolox(dir, ['person', 'car'], 'open'), undefined, {
      workers: 1,
      maxBatch: 4,
    });
    assert.is(open.batch, 4);
    // Four plain frames of different colours: the tiny model's answer depends on the colour.
    const frames = [30, 90, 160, 230].map((v, i) => ({
      data: new Uint8Array(32 * 32 * 3).map((_, j) => (j % 3 === i % 3 ? v : 255 - v)),
      width: 32,
      height: 32,
    }));
    const scores = { default: 0.05 };
    const alone = [];
    for (const f of frames) alone.push(await open.detect(f, scores));
    assert.ok(
      alone.every((d) => d.length > 0),
      'the tiny model finds something in each',
    );
    assert.not.equal(alone[0], alone[1], 'frames of other colours get other answers');
    const before = open.workerCounts!;
    const together = await Promise.all(frames.map((f) => open.detect(f, scores)));
    const after = open.workerCounts!;
    assert.equal(together, alone, 'each frame of a batch gets its own answer');
    // One worker: the first frame runs at once, the three that waited meanwhile go as one batch.
    assert.equal({ runs: after.runs - before.runs, frames: after.frames - before.frames }, { runs: 2, frames: 4 });
    await open.close();

    const fixed = await YoloxModel.load(await writeTinyYolox(dir, ['person', 'car'], 1), undefined, { workers: 1 });
    assert.is(fixed.batch, 1);
    assert.equal(await Promise.all(frames.map((f) => fixed.detect(f, scores))), alone);
    assert.equal(fixed.workerCounts, { runs: 4, frames: 4 });
    await fixed.close();
    assert.is(model.batch, 1, 'the bundled model takes one frame a run');
    const two = await YoloxModel.load(await writeTinyYolox(dir, ['person', 'car'], 2)).catch((e: Error) => e);
    assert.match(
      String(two),
      /input images \[2, 3, 32, 32\]; expected a YOLOX model: input float32 \[1 or an open batch/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// This machine has no GPU (no /dev/dri, no /dev/nvidia0, no Vulkan driver): every accelerator
// really is tried and really fails here, which is the path these tests hold.
const NO_GPU_HERE = !existsSync('/dev/dri') && !existsSync('/dev/nvidia0');

test("execution providers: auto runs on the CPU where no accelerator can, saying why each was left; a named list falls back to the CPU with each one's own error; the model still finds people", async () => {
  assert.ok(NO_GPU_HERE, 'this test expects a machine without a GPU');
  const auto = await YoloxModel.load(MODEL);
  assert.is(auto.provider, 'cpu');
  assert.equal(
    auto.providersNotUsed.map((n) => n.name),
    ['tensorrt', 'cuda', 'webgpu'],
    'auto tries what this onnxruntime build has, most capable first',
  );
  for (const n of auto.providersNotUsed) assert.match(n.why, /no (NVIDIA )?GPU/, n.name);
  const named = await YoloxModel.load(MODEL, undefined, { providers: ['cuda', 'openvino', 'cpu'] });
  assert.is(named.provider, 'cpu');
  assert.is(named.providersNotUsed[0]!.name, 'cuda');
  assert.match(named.providersNotUsed[0]!.why, /Cuda: Failed to load shared library/, 'tried for real');
  assert.equal(named.providersNotUsed[1], {
    name: 'openvino',
    why: 'not in this onnxruntime build (it has cpu, webgpu, cuda, tensorrt)',
  });
  const [frame] = await frames(10, 0.2);
  assert.ok((await named.detect(frame!, { default: 0.5 })).some((d) => d.label === 'person'));
});

test('hardware decoding: auto decodes in software where no GPU is, saying why; a named hwaccel that fails its test clip is not used; a decoder whose hardware fails on the stream goes on in software', async () => {
  assert.ok(NO_GPU_HERE, 'this test expects a machine without a GPU');
  const auto = await chooseDecoder('ffmpeg', 'auto', null);
  assert.equal(auto, {
    decoder: 'software',
    inputArgs: [],
    notUsed: [
      { name: 'vaapi', why: 'no GPU render node (/dev/dri/renderD*)' },
      { name: 'qsv', why: 'no GPU render node (/dev/dri/renderD*)' },
      { name: 'cuda', why: 'no NVIDIA GPU (/dev/nvidia0)' },
    ],
  });
  const vaapi = await chooseDecoder('ffmpeg', 'vaapi', '/dev/dri/renderD128');
  assert.is(vaapi.decoder, 'software');
  assert.match(vaapi.notUsed[0]!.why, /^a test decode failed: .*(Device creation failed|No VA display|Failed)/);
  assert.equal(await chooseDecoder('ffmpeg', 'none', null), { decoder: 'software', inputArgs: [], notUsed: [] });
  // An ffmpeg that lists vaapi but cannot even make the test clip: vaapi is ruled out, nothing throws.
  const dir = await tempDir();
  const broken = path.join(dir, 'ffmpeg');
  await writeFile(
    broken,
    '#!/bin/sh\n[ "$2" = -hwaccels ] && printf "Hardware acceleration methods:\\nvaapi\\n" && exit 0\nexit 1\n',
    {
      mode: 0o755,
    },
  );
  const clipless = await chooseDecoder(broken, 'vaapi', null);
  assert.is(clipless.decoder, 'software');
  assert.match(clipless.notUsed[0]!.why, /^a test decode failed: the test clip could not be made/);
  await rm(dir, { recursive: true, force: true });

  // A decoder given hardware that fails on the stream: frames still come, decoded in software.
  const feed = spawn('ffmpeg', [
    // Live, as a camera sends it: the replacing decoder starts at the next keyframe.
    ...['-hide_banner', '-loglevel', 'error', '-re', '-t', '4', '-i', DEMO_CLIP, '-an'],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-bf', '0'],
    ...['-f', 'mp4', '-movflags', FRAGMENTS, 'pipe:1'],
  ]);
  const source = new FrameSource(feed.stdout, {
    ffmpegPath: 'ffmpeg',
    inputArgs: ['-hwaccel', 'vaapi', '-hwaccel_device', '/dev/dri/renderD128'],
    fps: 5,
    modelSize: model.size,
    snapshotWidth: 320,
  });
  const errors: string[] = [];
  source.on('error', (e) => errors.push(e.message));
  const got = await new Promise<number>((resolve) => {
    let n = 0;
    source.on('frame', () => ++n === 5 && resolve(n));
    setTimeout(() => resolve(n), 15_000);
  });
  source.close();
  assert.is(got, 5, `frames decoded in software after the hardware failed (${errors.join('; ')})`);
  assert.match(errors[0] ?? '', /hardware decoding failed .*: this camera now decodes in software/);
});

test("frames' pictures: kept for the frames that went to the model, a JPEG made only when asked, no encoder while nothing did", async () => {
  const feed = spawn('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-re', '-t', '4', '-i', DEMO_CLIP, '-an', '-c:v', 'copy'],
    ...['-f', 'mp4', '-movflags', FRAGMENTS, 'pipe:1'],
  ]);
  const camera = 'pictures-unit';
  const source = new FrameSource(feed.stdout, {
    ffmpegPath: 'ffmpeg',
    fps: 5,
    modelSize: 416,
    snapshotWidth: 320,
    camera,
  });
  const processes = () => [...cameraProcesses().values()].filter((c) => c === camera).length;
  const seqs: number[] = [];
  await new Promise<void>((resolve) => source.on('frame', (f) => seqs.push(f.seq) === 10 && resolve()));
  assert.is(processes(), 1, 'the decoder only: nothing went to the model, so no JPEG encoder');
  assert.is(await source.jpeg(seqs[0]!), undefined, 'an old frame that never went to the model: no picture kept');
  const newest = seqs.at(-1)!;
  source.hold(newest);
  assert.is(processes(), 2, 'the encoder starts when a frame goes to the model');
  const jpeg = (await source.jpeg(newest))!;
  assert.ok(jpeg?.subarray(0, 2).equals(Buffer.from([0xff, 0xd8])), 'a JPEG');
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  assert.equal([jpeg.readUInt16BE(sof + 7), jpeg.readUInt16BE(sof + 5)], [320, 180], 'snapshot-sized (16:9)');
  assert.is(await source.jpeg(newest), jpeg, 'made once');
  // Frames after it come and go; the held one stays.
  await new Promise<void>((resolve) => source.on('frame', (f) => f.seq >= newest + 5 && resolve()));
  assert.ok(await source.jpeg(newest), 'still kept');
  assert.is(await source.jpeg(newest + 1), undefined, 'its neighbour, never held, is gone');
  source.close();
  await waitUntil('no process left for the camera', () => processes() === 0, 5000);
});

test('motion: none between equal frames or under a mask, boxes where people walk', async () => {
  const clip = await frames(4, 2);
  const still = new MotionDetector({ threshold: 25, minAreaPercent: 0.05, masks: [] });
  for (let i = 0; i < 5; i++) assert.equal(still.detect(clip[0]!), [], 'the same frame again: no motion');
  const moving = new MotionDetector({ threshold: 25, minAreaPercent: 0.05, masks: [] });
  const boxes = clip.map((f) => moving.detect(f)).slice(1);
  assert.ok(
    boxes.every((b) => b.length > 0),
    'people walking: motion in every frame',
  );
  const masked = new MotionDetector({
    threshold: 25,
    minAreaPercent: 0.05,
    masks: [
      [
        [0, 0],
        [1, 0],
        [1, 1],
        [0, 1],
      ],
    ],
  });
  assert.ok(
    clip.every((f) => masked.detect(f).length === 0),
    'a mask over the whole frame: no motion',
  );
});

test('tracking on the real clip: each person is one object across frames, weak frames keep it', async () => {
  const clip = await frames(0, 8);
  const tracker = new Tracker({ maxMisses: 10, minHits: 2, stationaryMove: 0.02, stationaryEndMs: 30_000, zones: [] });
  let started = 0;
  let detections = 0;
  for (const [seq, frame] of clip.entries()) {
    const found = (await model.detect(frame, { default: 0.3 })).filter((d) => d.label === 'person');
    detections += found.length;
    started += tracker.update(found, { seq, at: seq * 200, width: 416, height: 234 }, () => 0.5).started.length;
  }
  // 40 frames with ~7 people each: a few hundred detections make a few objects, not hundreds.
  assert.ok(detections > 150, `${detections} detections`);
  assert.ok(started >= 4 && started <= 16, `${started} objects for ${detections} detections`);
});

test('tracker: an object confirmed once, ended after misses; a parked object ends its event and raises no other', () => {
  const zones = [
    {
      name: 'left',
      points: [
        [0, 0],
        [0.5, 0],
        [0.5, 1],
        [0, 1],
      ] as Array<[number, number]>,
    },
  ];
  const tracker = new Tracker({ maxMisses: 3, minHits: 2, stationaryMove: 0.02, stationaryEndMs: 5000, zones });
  const frame = (seq: number) => ({ seq, at: seq * 200, width: 400, height: 200 });
  const started: string[] = [];
  const ended: string[] = [];
  let seq = 0;
  // A person walks from the left half to the right.
  for (let x = 20; x < 360; x += 8) {
    const c = tracker.update([{ label: 'person', score: 0.8, box: [x, 50, x + 30, 150] }], frame(seq++));
    started.push(...c.started.map((t) => t.id));
    ended.push(...c.ended.map((t) => t.id));
  }
  assert.is(started.length, 1, 'one walk, one event');
  assert.equal(tracker.tracks[0]!.zones, ['left']);
  for (let i = 0; i < 4; i++) ended.push(...tracker.update([], frame(seq++)).ended.map((t) => t.id));
  assert.equal(ended, started, 'it left: its event ended');
  // A parked car: one event, ended once still for 5 s, none again while it stays.
  const events: string[] = [];
  for (let i = 0; i < 100; i++) {
    const c = tracker.update([{ label: 'car', score: 0.9, box: [200, 100, 300, 160] }], frame(seq++));
    events.push(...c.started.map(() => 'start'), ...c.ended.map(() => 'end'));
  }
  assert.equal(events, ['start', 'end']);
  assert.ok(tracker.tracks[0]!.stationarySince !== undefined);
});

test('tracker: a van seen as car and truck (by turns, or both at once) is one object with one event', () => {
  const tracker = new Tracker({ maxMisses: 3, minHits: 2, stationaryMove: 0.02, stationaryEndMs: 60_000, zones: [] });
  const started: string[] = [];
  for (let seq = 0; seq < 20; seq++) {
    const x = 100 + seq * 6;
    const van = (label: string, score: number) => ({
      label,
      score,
      box: [x, 40, x + 90, 110] as [number, number, number, number],
    });
    const seen = seq % 3 === 0 ? [van('car', 0.6), van('truck', 0.7)] : [van(seq % 2 ? 'car' : 'truck', 0.65)];
    const c = tracker.update(seen, { seq, at: seq * 200, width: 416, height: 234 });
    started.push(...c.started.map((t) => t.label));
  }
  assert.is(started.length, 1, `one event, not ${started.length}`);
  assert.is(tracker.tracks.length, 1);
  assert.is(tracker.tracks[0]!.label, 'truck', 'the label seen most surely');
});

test('tracker: a sure detection starts its event at its first sighting, a doubtful one at its second', () => {
  const tracker = new Tracker({
    maxMisses: 3,
    minHits: 2,
    sureScore: 0.75,
    stationaryMove: 0.02,
    stationaryEndMs: 60_000,
    zones: [],
  });
  const frame = (seq: number) => ({ seq, at: seq * 200, width: 416, height: 234 });
  const sure = { label: 'person', score: 0.85, box: [10, 50, 40, 150] as [number, number, number, number] };
  const doubtful = { label: 'person', score: 0.6, box: [300, 50, 330, 150] as [number, number, number, number] };
  assert.equal(
    tracker.update([sure, doubtful], frame(0)).started.map((t) => t.score),
    [0.85],
  );
  const second = tracker.update(
    [
      { ...sure, box: [14, 50, 44, 150] },
      { ...doubtful, box: [304, 50, 334, 150] },
    ],
    frame(1),
  );
  assert.equal(
    second.started.map((t) => t.score),
    [0.6],
    'the doubtful one on its second sighting, the sure one not again',
  );
});

test('tracker: a big box missed for a frame does not take a person who steps out beside it', () => {
  const tracker = new Tracker({ maxMisses: 5, minHits: 2, stationaryMove: 0.02, stationaryEndMs: 60_000, zones: [] });
  const group: [number, number, number, number] = [150, 40, 270, 220]; // a group of people, one box
  const frame = (seq: number) => ({ seq, at: seq * 200, width: 416, height: 234 });
  for (let seq = 0; seq < 5; seq++) tracker.update([{ label: 'person', score: 0.9, box: group }], frame(seq));
  const groupTrack = tracker.tracks[0]!;
  // The group is missed for a frame, and someone appears at its edge.
  const newcomer: [number, number, number, number] = [255, 150, 280, 215];
  tracker.update([{ label: 'person', score: 0.8, box: newcomer }], frame(5));
  assert.equal(groupTrack.box, group, "the group's object keeps its box");
  assert.is(tracker.tracks.length, 2, 'the newcomer is an object of its own');
  tracker.update(
    [
      { label: 'person', score: 0.9, box: group },
      { label: 'person', score: 0.8, box: newcomer },
    ],
    frame(6),
  );
  assert.is(tracker.tracks.length, 2);
  assert.equal(groupTrack.box, group);
});

test('motion spans: one per stretch of movement, closed by stillness or the end of the stream, cut every minute', () => {
  const spans: MotionSpan[] = [];
  const m = new MotionSpans('cam', (s) => spans.push(s));
  const at = (ms: number) => 1_000_000 + ms;
  // Moving 0-3 s, still from then (frames every 200 ms): closed at the first frame past the quiet time.
  for (let t = 0; t <= 3000; t += 200) m.frame(at(t), true);
  for (let t = 3200; t <= 3000 + QUIET_MS; t += 200) m.frame(at(t), false);
  assert.equal(spans, []);
  m.frame(at(3200 + QUIET_MS), false);
  assert.equal(spans, [{ camera: 'cam', start: at(0), end: at(3000) }]);
  // Short stills do not split a span; a long one is cut every MAX_MS.
  spans.length = 0;
  for (let t = 20_000; t <= 20_000 + MAX_MS * 1.5; t += 200) m.frame(at(t), Math.floor(t / 1000) % 4 !== 0);
  assert.is(spans.length, 1);
  assert.ok(spans[0]!.end - spans[0]!.start >= MAX_MS);
  // The stream ends: the open span ends at its last moving frame.
  m.close();
  assert.is(spans.length, 2);
  assert.is(spans[1]!.start, spans[0]!.end);
  // One moving frame still covers a second of the timeline; nothing moving, nothing sent.
  spans.length = 0;
  m.frame(at(500_000), true);
  m.close();
  m.close();
  assert.equal(spans, [{ camera: 'cam', start: at(500_000), end: at(501_000) }]);
});

test('zones and masks place an object at its feet', () => {
  const lower = [
    [0, 0.5],
    [1, 0.5],
    [1, 1],
    [0, 1],
  ] as Array<[number, number]>;
  assert.ok(insidePolygon(footOf([10, 0, 20, 90], 100, 100), lower), 'head above the line, feet below it: inside');
  assert.not.ok(insidePolygon(footOf([10, 0, 20, 40], 100, 100), lower));
});

test('one inference queue for all cameras: one at a time, urgent cameras first and in turn, none left waiting over its bound', async () => {
  const queue = new InferenceQueue(1, 50);
  const order: string[] = [];
  let running = 0;
  let most = 0;
  const job = (camera: string, ms: number) => async () => {
    running++;
    most = Math.max(most, running);
    order.push(camera);
    await new Promise((r) => setTimeout(r, ms));
    running--;
    return camera;
  };
  const tracked = new Set(['street']);
  // The first runs at once; then garden and yard wait (motion only) while street (tracks) comes later.
  const first = queue.run('door', () => false, job('door', 20));
  const garden = queue.run('garden', () => tracked.has('garden'), job('garden', 20));
  const street = queue.run('street', () => tracked.has('street'), job('street', 20));
  assert.is(queue.depth, 2);
  assert.equal(await Promise.all([first, street, garden]), ['door', 'street', 'garden']);
  assert.equal(
    order,
    ['door', 'street', 'garden'],
    'the camera following objects went before the one that waited longer',
  );
  assert.is(most, 1, 'the model ran one frame at a time');

  // A street that always has objects: garden still gets its turn once it has waited 50 ms.
  order.length = 0;
  let streetRuns = 0;
  const busyStreet = async () => {
    while (streetRuns++ < 20) await queue.run('street', () => true, job('street', 10));
  };
  const [, gardenAt] = await Promise.all([
    busyStreet(),
    (async () => {
      await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      await queue.run('garden', () => false, job('garden', 1));
      return performance.now() - t0;
    })(),
  ]);
  assert.ok(order.indexOf('garden') > 0 && order.indexOf('garden') < order.length - 1, order.join(' '));
  assert.ok(gardenAt < 200, `garden waited ${Math.round(gardenAt)} ms behind a busy street`);
  // A full box: two streets following objects take turns, and a garden where someone has just
  // walked in (urgent too) goes at the next turn, not after every street's.
  const turns = new InferenceQueue(1, 10_000);
  await turns.run('street-a', () => true, job('street-a', 1));
  await turns.run('street-b', () => true, job('street-b', 1));
  await turns.run('street-a', () => true, job('street-a', 1));
  await new Promise((r) => setImmediate(r)); // the queue's own bookkeeping after a job, done
  order.length = 0;
  const underWay = turns.run('street-a', () => true, job('street-a', 20));
  const queued = [
    turns.run('street-b', () => true, job('street-b', 1)),
    turns.run('street-a', () => true, job('street-a', 1)),
    turns.run('garden', () => true, job('garden', 1)),
  ];
  await Promise.all([underWay, ...queued]);
  assert.equal(
    order,
    ['street-a', 'garden', 'street-b', 'street-a'],
    'the camera served longest ago first (the garden never was, then street-b)',
  );

  // A job that fails is its caller's error; the queue goes on.
  const failed = await queue
    .run(
      'bad',
      () => false,
      () => Promise.reject(new Error('model failed')),
    )
    .catch((err: Error) => err.message);
  assert.is(failed, 'model failed');
  assert.is(await queue.run('door', () => false, job('door', 1)), 'door');
});

test.run();
