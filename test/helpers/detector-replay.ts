// The box's detector for one camera (CameraDetector: real ffmpeg, real model, tracker) fed
// a clip at real time as the live fMP4 it reads in the box, and a check of what the user
// then sees: the model run again on each event's stored snapshot, to see whether the
// event's box lands on an object of its label in its own picture.
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import type { LoggerInstance } from 'moleculer';
import { CameraDetector } from '../../services/detector/camera-detector.ts';
import { CameraInput, type Camera } from '../../services/cameras/cameras.schemas.ts';
import { ConfigSchema } from '../../appliance/config.ts';
import { iouOf, type Box, type YoloxModel } from '../../lib/vision/yolox.ts';
import type { ObjectEvent } from '../../services/events/events.schemas.ts';
import { FRAGMENTS } from '../../services/streams/ffmpeg.ts';
import { InferenceQueue } from '../../services/detector/inference-queue.ts';

const run = promisify(execFile);
const config = ConfigSchema.parse({});

const quietLog = {
  debug: () => undefined,
  info: () => undefined,
  warn: (msg: string) => console.warn(msg),
  error: (msg: string) => console.error(msg),
} as unknown as LoggerInstance;

/** What the user has of one event once it ended: its last snapshot and its final record. */
export interface SeenEvent {
  id: string;
  label: string;
  box: Box;
  start: number;
  /** When its start message came out of the detector (wall clock). */
  announcedAt: number;
  /** Frames the detector had decoded when its start came out. */
  framesDecoded: number;
  end: number;
  snapshot: Buffer | undefined;
  messages: ObjectEvent[];
}

/** The clip as the box's live feed: stream-copied fragmented MP4 at the clip's own pace. */
export function clipFeed(clip: string, seconds: number): Readable {
  const ffmpeg = spawn(
    'ffmpeg',
    [
      ...['-v', 'error', '-re', '-i', clip, '-t', String(seconds), '-map', '0:v:0', '-c', 'copy'],
      ...['-f', 'mp4', '-movflags', FRAGMENTS, '-flush_packets', '1', 'pipe:1'],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return ffmpeg.stdout;
}

/**
 * Runs the detector over `seconds` of the clip: every event it raised, as the store keeps it,
 * and when the clip's first bytes came (its time 0 on the wall clock, give or take the decode).
 */
export async function replayDetector(
  model: YoloxModel,
  clip: string,
  seconds: number,
  detection: Partial<Camera['detection']> = {},
  /** Each message as the detector sends it (to events.record). */
  onMessage: (e: ObjectEvent) => void = () => undefined,
): Promise<{ events: SeenEvent[]; firstDataAt: number; counts: CameraDetector['counts'] }> {
  const source = { kind: 'rtsp' as const, url: 'rtsp://camera.invalid/stream', transport: 'tcp' as const };
  const camera: Camera = {
    ...CameraInput.parse({ id: 'replay', name: 'replay', source, detection }),
    source,
    createdAt: new Date().toISOString(),
  };
  const options = {
    ffmpegPath: 'ffmpeg',
    snapshotWidth: config.detector.snapshotWidth,
    minScore: config.detector.minScore,
    stationaryCheckMs: config.detector.stationaryCheckSeconds * 1000,
    stationaryEndMs: config.detector.stationaryEndSeconds * 1000,
  };
  let feed: Readable | undefined;
  let opened = false;
  let firstDataAt = 0;
  const detector = new CameraDetector(
    camera,
    model,
    new InferenceQueue(1),
    options,
    async () => {
      if (opened) throw new Error('the clip has ended');
      opened = true;
      feed = clipFeed(clip, seconds);
      feed.once('data', () => (firstDataAt = Date.now()));
      return feed;
    },
    quietLog,
  );
  const seen = new Map<string, SeenEvent>();
  detector.on('event', (e) => {
    onMessage(e);
    const s = seen.get(e.id) ?? {
      id: e.id,
      label: e.label,
      box: e.box,
      start: Date.parse(e.start),
      announcedAt: Date.now(),
      framesDecoded: detector.counts.frames,
      end: Date.now(),
      snapshot: undefined,
      messages: [],
    };
    s.messages.push(e);
    s.label = e.label;
    s.box = e.box;
    if (e.end) s.end = Date.parse(e.end);
    if (e.snapshot) s.snapshot = Buffer.from(e.snapshot, 'base64');
    seen.set(e.id, s);
  });
  detector.start();
  await new Promise<void>((resolve) => {
    const wait = () => (feed ? feed.once('close', () => resolve()) : setTimeout(wait, 100));
    wait();
  });
  await new Promise((r) => setTimeout(r, 500)); // the last frames through the model
  detector.stop();
  return { events: [...seen.values()], firstDataAt, counts: { ...detector.counts } };
}

/** The model's detections of `label` in a JPEG, with boxes relative to the picture (0..1). */
export async function detectInJpeg(model: YoloxModel, jpeg: Buffer, label: string): Promise<Box[]> {
  const { stdout } = await runWithInput(jpeg);
  const width = model.size;
  const height = stdout.length / 3 / width;
  const found = await model.detect({ data: stdout, width, height }, { default: 0.3 });
  return found
    .filter((d) => d.label === label)
    .map((d) => [d.box[0] / width, d.box[1] / height, d.box[2] / width, d.box[3] / height] as Box);
}

async function runWithInput(jpeg: Buffer): Promise<{ stdout: Buffer }> {
  const child = run(
    'ffmpeg',
    [
      '-v',
      'error',
      '-f',
      'jpeg_pipe',
      '-i',
      'pipe:0',
      '-vf',
      'scale=416:-2',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      'pipe:1',
    ],
    { encoding: 'buffer', maxBuffer: 1e8 },
  );
  child.child.stdin!.end(jpeg);
  return child as unknown as Promise<{ stdout: Buffer }>;
}

/** Whether the event's box is on an object of its label in its own snapshot (IoU >= 0.5). */
export async function boxOnItsObject(model: YoloxModel, e: SeenEvent): Promise<boolean> {
  if (!e.snapshot) return false;
  const found = await detectInJpeg(model, e.snapshot, e.label);
  return found.some((b) => iouOf(b, e.box) >= 0.5);
}
