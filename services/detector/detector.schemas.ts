// What the detector service tells others: its model and its statistics per camera
// (detector.status, the health sample, the metrics).
import { z } from 'zod';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const DetectorStats = z.object({
  frames: z.number().int(),
  motionFrames: z.number().int(),
  inferences: z.number().int(),
  dropped: z.number().int(),
  inferenceMs: z.number().nullable(),
  inferenceSeconds: z
    .number()
    .describe("CPU time of this camera's detections so far (letterbox, inference, decoding), s"),
  /** Frames were dropped in the last 10 s: the detector cannot keep up. */
  behind: z.boolean().describe('frames were dropped in the last 10 s: the detector cannot keep up'),
  activeObjects: z.number().int(),
});
export type DetectorStats = z.output<typeof DetectorStats>;

export const DetectorStatus = z.object({
  node: z.string().describe('the node whose detector answered'),
  model: z.object({ path: z.string(), inputSize: z.number().int(), labels: z.number().int() }).nullable(),
  error: z.string().nullable().describe('why detection is off (no model, a model that does not load); null: working'),
  lostEvents: z.number().int().describe('event changes the events service could not take'),
  accelerators: z
    .object({
      inference: z
        .string()
        .nullable()
        .describe("the model's onnxruntime execution provider (cpu, cuda, …); null: no model"),
      decoding: z.string().describe('the detection decoders: software, or the ffmpeg hwaccel they use'),
      notUsed: z
        .array(z.object({ name: z.string(), why: z.string() }))
        .describe('accelerators tried or asked for and not used, and why'),
    })
    .describe('what detection runs on (detector.executionProviders, detector.hwaccel)'),
  inferences: z
    .object({
      concurrency: z.number().int().describe('inferences run at once, for all cameras of the node'),
      waiting: z.number().int().describe('frames waiting for the model now, at most one a camera'),
    })
    .describe("the node's one queue of inferences: cameras following objects first, none waiting over 1 s"),
  cameras: z.record(z.string(), DetectorStats),
});
export type DetectorStatus = z.output<typeof DetectorStatus>;

/** A motion span is at most this long: a longer stretch of motion comes as several, ms. */
export const MOTION_SPAN_MAX_MS = 60_000;

/** A stretch of time a camera's picture moved (ms since epoch), whatever moved in it. */
export interface MotionSpan {
  camera: string;
  start: number;
  end: number;
}

declare module '../../lib/bus.ts' {
  interface Actions {
    'detector.status': { input: Record<string, never>; answer: DetectorStatus };
  }
  interface Events {
    /** A camera's picture moved from start to end (the recorder keeps it for the timeline and retention). */
    'detector.motion.spanned': MotionSpan;
  }
}
