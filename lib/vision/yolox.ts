// A YOLOX-format ONNX object detector in onnxruntime-node: letterbox, run, decode the
// raw grid output, per-class NMS, undo the letterbox. Any YOLOX export works (input
// [1,3,S,S] BGR 0..255, output [1, cells, 5 + classes] over strides 8/16/32); another
// shape is refused at load with what was expected.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { lazyPackage } from '../lazy-package.ts';

/** onnxruntime loads with the first model: a box with detection off never maps its 15 MiB library. */
const onnxruntime = lazyPackage<typeof ort>('onnxruntime-node');

export interface Frame {
  /** RGB24, row-major */
  data: Uint8Array;
  width: number;
  height: number;
}

/** [x1, y1, x2, y2] in pixels of the frame it was found in. */
export type Box = [number, number, number, number];

export interface Detection {
  label: string;
  score: number;
  box: Box;
}

export class ModelError extends Error {
  override name = 'ModelError';
}

const STRIDES = [8, 16, 32];
const PAD_VALUE = 114;

function cellsFor(size: number): number {
  return STRIDES.reduce((n, s) => n + (size / s) ** 2, 0);
}

/** The labels file beside the model: <model>.labels, or the only *.labels file there. */
function labelsFileFor(modelPath: string): string | undefined {
  const own = modelPath.replace(/\.onnx$/, '.labels');
  if (existsSync(own)) return own;
  const dir = path.dirname(modelPath);
  const candidates = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.labels')) : [];
  return candidates.length === 1 ? path.join(dir, candidates[0]!) : undefined;
}

export class YoloxModel {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly size: number,
    readonly labels: string[],
    private readonly inputName: string,
    private readonly outputName: string,
  ) {}

  static async load(modelPath: string, labelsPath?: string, threads = 1): Promise<YoloxModel> {
    if (!existsSync(modelPath)) throw new ModelError(`Model file not found: ${modelPath}`);
    const labelsFile = labelsPath ?? labelsFileFor(modelPath);
    if (!labelsFile || !existsSync(labelsFile)) {
      throw new ModelError(
        `No labels file for ${modelPath}: put one label per line in ${modelPath.replace(/\.onnx$/, '.labels')} or set detector.labelsPath`,
      );
    }
    const labels = readFileSync(labelsFile, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    let session: ort.InferenceSession;
    try {
      // One thread per inference: the box has few cores and other cameras to decode.
      session = await onnxruntime().InferenceSession.create(modelPath, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
      });
    } catch (err) {
      throw new ModelError(`Cannot load model ${modelPath}: ${(err as Error).message.split('\n')[0]}`);
    }
    const input = session.inputMetadata[0];
    const output = session.outputMetadata[0];
    const inShape = input && input.isTensor ? input.shape : [];
    const outShape = output && output.isTensor ? output.shape : [];
    const size = Number(inShape[2]);
    const expected = `a YOLOX model: input float32 [1, 3, S, S] with S a multiple of 32, output [1, cells, 5 + ${labels.length} classes]`;
    if (
      session.inputNames.length !== 1 ||
      inShape.length !== 4 ||
      inShape[1] !== 3 ||
      inShape[2] !== inShape[3] ||
      !(size > 0 && size % 32 === 0)
    ) {
      throw new ModelError(
        `Model ${modelPath} has input ${session.inputNames[0]} [${inShape.join(', ')}]; expected ${expected}`,
      );
    }
    if (outShape.length !== 3 || outShape[1] !== cellsFor(size) || outShape[2] !== 5 + labels.length) {
      throw new ModelError(
        `Model ${modelPath} has output ${session.outputNames[0]} [${outShape.join(', ')}]; expected [1, ${cellsFor(size)}, ${5 + labels.length}] for input ${size}x${size} and ${labels.length} labels (${expected})`,
      );
    }
    return new YoloxModel(session, size, labels, session.inputNames[0]!, session.outputNames[0]!);
  }

  /** Input buffers not in use, with the picture size their padding was made for. */
  private buffers: Array<{ tensor: Float32Array; padded: string }> = [];

  /**
   * Frame into the model's square input: scaled to fit, top-left, BGR planes, padded with 114.
   * Pass `into` (from the pool) to reuse a buffer whose padding is already in place.
   */
  letterbox(frame: Frame, into?: { tensor: Float32Array; padded: string }): { tensor: Float32Array; scale: number } {
    const S = this.size;
    const scale = Math.min(S / frame.width, S / frame.height);
    const w = Math.round(frame.width * scale);
    const h = Math.round(frame.height * scale);
    const plane = S * S;
    const tensor = into?.tensor ?? new Float32Array(3 * plane);
    const src = frame.data;
    if (w === frame.width && h === frame.height) {
      // The usual case: ffmpeg already scaled the frame to fit, so this is a copy into planes.
      for (let y = 0, i = 0; y < h; y++) {
        for (let x = 0, out = y * S; x < w; x++, out++, i += 3) {
          tensor[out] = src[i + 2]!; // B
          tensor[plane + out] = src[i + 1]!; // G
          tensor[2 * plane + out] = src[i]!; // R
        }
      }
    } else {
      // Nearest neighbour otherwise.
      const stride = frame.width * 3;
      const xs = new Int32Array(w);
      for (let x = 0; x < w; x++) xs[x] = Math.min(frame.width - 1, Math.floor(x / scale)) * 3;
      for (let y = 0; y < h; y++) {
        const row = Math.min(frame.height - 1, Math.floor(y / scale)) * stride;
        for (let x = 0, out = y * S; x < w; x++, out++) {
          const i = row + xs[x]!;
          tensor[out] = src[i + 2]!;
          tensor[plane + out] = src[i + 1]!;
          tensor[2 * plane + out] = src[i]!;
        }
      }
    }
    // Padding: right of the picture and below it, in each plane (once per buffer and size).
    if (into?.padded === `${w}x${h}`) return { tensor, scale };
    if (into) into.padded = `${w}x${h}`;
    for (let c = 0; c < 3; c++) {
      const base = c * plane;
      if (w < S) for (let y = 0; y < h; y++) tensor.fill(PAD_VALUE, base + y * S + w, base + (y + 1) * S);
      tensor.fill(PAD_VALUE, base + h * S, base + plane);
    }
    return { tensor, scale };
  }

  /** Objects in the frame whose score reaches minScore (per label, or `default`). */
  async detect(frame: Frame, minScore: Record<string, number> & { default: number }, iou = 0.45): Promise<Detection[]> {
    // onnxruntime reads the input while it runs: a buffer goes back to the pool only after.
    const buffer = this.buffers.pop() ?? { tensor: new Float32Array(3 * this.size * this.size), padded: '' };
    try {
      const { tensor, scale } = this.letterbox(frame, buffer);
      const result = await this.session.run({
        [this.inputName]: new (onnxruntime().Tensor)('float32', tensor, [1, 3, this.size, this.size]),
      });
      const out = result[this.outputName]!.data as Float32Array;
      return this.decode(out, scale, frame, minScore, iou);
    } finally {
      this.buffers.push(buffer);
    }
  }

  /** Raw run, for the benchmark's reference. */
  async runRaw(tensor: Float32Array): Promise<void> {
    await this.session.run({
      [this.inputName]: new (onnxruntime().Tensor)('float32', tensor, [1, 3, this.size, this.size]),
    });
  }

  decode(
    out: Float32Array,
    scale: number,
    frame: Pick<Frame, 'width' | 'height'>,
    minScore: Record<string, number> & { default: number },
    iou: number,
  ): Detection[] {
    const classes = this.labels.length;
    const width = 5 + classes;
    const floor = Math.min(minScore.default, ...Object.values(minScore));
    const candidates: Array<Detection & { cls: number }> = [];
    let cell = 0;
    for (const stride of STRIDES) {
      const grid = this.size / stride;
      for (let gy = 0; gy < grid; gy++) {
        for (let gx = 0; gx < grid; gx++, cell++) {
          const o = cell * width;
          const objectness = out[o + 4]!;
          if (objectness < floor) continue;
          let best = 0;
          let cls = 0;
          for (let c = 0; c < classes; c++) {
            const v = out[o + 5 + c]!;
            if (v > best) {
              best = v;
              cls = c;
            }
          }
          const score = objectness * best;
          const label = this.labels[cls]!;
          if (score < (minScore[label] ?? minScore.default)) continue;
          const cx = (out[o]! + gx) * stride;
          const cy = (out[o + 1]! + gy) * stride;
          const w = Math.exp(out[o + 2]!) * stride;
          const h = Math.exp(out[o + 3]!) * stride;
          // Back to frame pixels: the letterbox put the frame at the top left, scaled.
          const box: Box = [
            clamp((cx - w / 2) / scale, frame.width),
            clamp((cy - h / 2) / scale, frame.height),
            clamp((cx + w / 2) / scale, frame.width),
            clamp((cy + h / 2) / scale, frame.height),
          ];
          candidates.push({ label, score, box, cls });
        }
      }
    }
    return nms(candidates, iou).map(({ label, score, box }) => ({ label, score, box }));
  }
}

const clamp = (v: number, max: number) => Math.max(0, Math.min(max, v));

export function iouOf(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** Greedy non-maximum suppression within each class. */
function nms<T extends { score: number; box: Box; cls: number }>(items: T[], threshold: number): T[] {
  const kept: T[] = [];
  for (const item of items.sort((a, b) => b.score - a.score)) {
    if (kept.every((k) => k.cls !== item.cls || iouOf(k.box, item.box) <= threshold)) kept.push(item);
  }
  return kept;
}
