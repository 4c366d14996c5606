// A YOLOX-format ONNX object detector in onnxruntime-node: letterbox, run, decode the
// raw grid output, per-class NMS, undo the letterbox. Any YOLOX export works (input
// [1 or an open batch, 3, S, S] BGR 0..255, output [the same, cells, 5 + classes] over strides
// 8/16/32); another shape is refused at load with what was expected.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { lazyPackage } from '../lazy-package.ts';
import { nvidiaGpu, renderNode } from '../gpu-devices.ts';
import { InferenceWorkers, type WorkerRun } from './inference-workers.ts';

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

/** Execution providers `auto` tries before the CPU, most capable first. */
const AUTO_PROVIDERS = ['tensorrt', 'cuda', 'openvino', 'coreml', 'dml', 'webgpu'];

/** Why auto does not try an accelerator on this box (no device it could open); undefined: try it. */
function missingDevice(provider: string): string | undefined {
  const nvidia = nvidiaGpu();
  const gpu = nvidia || renderNode() !== undefined;
  if ((provider === 'cuda' || provider === 'tensorrt') && !nvidia) return 'no NVIDIA GPU (/dev/nvidia0)';
  if (provider === 'webgpu' && !gpu) return 'no GPU (/dev/dri/renderD*, /dev/nvidia0)';
  return undefined;
}

export interface ProviderNotUsed {
  name: string;
  why: string;
}

/** The model's input size and tensor names, or a ModelError saying what a YOLOX model has. */
function checkedShape(session: ort.InferenceSession, modelPath: string, labelCount: number) {
  const input = session.inputMetadata[0];
  const output = session.outputMetadata[0];
  const inShape = input && input.isTensor ? input.shape : [];
  const outShape = output && output.isTensor ? output.shape : [];
  const size = Number(inShape[2]);
  const expected = `a YOLOX model: input float32 [1 or an open batch, 3, S, S] with S a multiple of 32, output [the same, cells, 5 + ${labelCount} classes]`;
  // An open batch dimension is a name (or -1); a fixed one must be 1.
  const batchOpen = typeof inShape[0] === 'string' || Number(inShape[0]) < 0;
  if (
    session.inputNames.length !== 1 ||
    inShape.length !== 4 ||
    (!batchOpen && inShape[0] !== 1) ||
    inShape[1] !== 3 ||
    inShape[2] !== inShape[3] ||
    !(size > 0 && size % 32 === 0)
  ) {
    throw new ModelError(
      `Model ${modelPath} has input ${session.inputNames[0]} [${inShape.join(', ')}]; expected ${expected}`,
    );
  }
  if (outShape.length !== 3 || outShape[1] !== cellsFor(size) || outShape[2] !== 5 + labelCount) {
    throw new ModelError(
      `Model ${modelPath} has output ${session.outputNames[0]} [${outShape.join(', ')}]; expected [1, ${cellsFor(size)}, ${5 + labelCount}] for input ${size}x${size} and ${labelCount} labels (${expected})`,
    );
  }
  return { size, batchOpen, inputName: session.inputNames[0]!, outputName: session.outputNames[0]! };
}

/** A session's time for one inference of a grey frame: the median of five, after one to warm up. */
async function msPerInference(session: ort.InferenceSession, inputName: string, size: number): Promise<number> {
  const input = new (onnxruntime().Tensor)('float32', new Float32Array(3 * size * size).fill(114), [1, 3, size, size]);
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    await session.run({ [inputName]: input });
    if (i > 0) times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[2]!;
}

export class YoloxModel {
  private constructor(
    /** The session in this thread, or the workers that hold one each. */
    private readonly session: ort.InferenceSession | undefined,
    private readonly workers: InferenceWorkers | undefined,
    /** Frames one inference may take (on workers, with a model whose batch dimension is open). */
    readonly batch: number,
    readonly size: number,
    readonly labels: string[],
    private readonly inputName: string,
    private readonly outputName: string,
    /** The onnxruntime execution provider it runs on. */
    readonly provider: string,
    /** Accelerators tried and not used, and why. */
    readonly providersNotUsed: ProviderNotUsed[],
  ) {}

  static async load(
    modelPath: string,
    labelsPath?: string,
    options: {
      threads?: number;
      providers?: 'auto' | readonly string[];
      /** Worker threads that run the inferences (0: this thread; see inference-workers.ts). */
      workers?: number;
      /** With workers and a model whose batch dimension is open: frames one run may take (4). */
      maxBatch?: number;
    } = {},
  ): Promise<YoloxModel> {
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
    // One thread per inference by default: the box has few cores and other cameras to decode.
    const sessionOptions = (provider: string) => ({
      executionProviders: [provider],
      intraOpNumThreads: options.threads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all' as const,
      // An accelerator's session logs only fatal errors: what fails is said once in detector.status
      // (onnxruntime itself may still print a provider library it could not load).
      logSeverityLevel: provider === 'cpu' ? (2 as const) : (4 as const),
    });
    const sessionOn = (provider: string) => onnxruntime().InferenceSession.create(modelPath, sessionOptions(provider));
    let cpu: ort.InferenceSession;
    try {
      cpu = await sessionOn('cpu');
    } catch (err) {
      throw new ModelError(`Cannot load model ${modelPath}: ${(err as Error).message.split('\n')[0]}`);
    }
    const { size, batchOpen, inputName, outputName } = checkedShape(cpu, modelPath, labels.length);
    // Frames a worker runs at once when several wait: a model with an open batch dimension takes them.
    const batch = batchOpen && options.workers ? (options.maxBatch ?? 4) : 1;
    // The chosen provider's sessions move to the workers, if any: this thread's is let go.
    const model = async (session: ort.InferenceSession, provider: string, notUsed: ProviderNotUsed[]) => {
      let workers: InferenceWorkers | undefined;
      if (options.workers) {
        try {
          workers = await InferenceWorkers.start(
            options.workers,
            modelPath,
            sessionOptions(provider),
            [3, size, size],
            batch,
          );
        } catch (err) {
          throw new ModelError(`Cannot load model ${modelPath} in a worker: ${(err as Error).message.split('\n')[0]}`);
        } finally {
          if (workers) await session.release();
        }
      }
      return new YoloxModel(
        workers ? undefined : session,
        workers,
        workers ? batch : 1,
        size,
        labels,
        inputName,
        outputName,
        provider,
        notUsed,
      );
    };

    // Auto: an accelerator this build of onnxruntime has, kept only if it infers faster than the
    // CPU (a software GPU would not). Named: tried in that order, as they are.
    const auto = (options.providers ?? 'auto') === 'auto';
    const supported = new Set(
      onnxruntime()
        .listSupportedBackends()
        .map((b) => b.name),
    );
    const candidates = auto
      ? AUTO_PROVIDERS.filter((p) => supported.has(p))
      : (options.providers as readonly string[]).filter((p) => p !== 'cpu');
    const notUsed: ProviderNotUsed[] = [];
    let cpuMs: number | undefined; // measured once, against the first accelerator that loads
    for (const provider of candidates) {
      const missing = auto ? missingDevice(provider) : undefined;
      if (missing) {
        notUsed.push({ name: provider, why: missing });
        continue;
      }
      if (!supported.has(provider)) {
        notUsed.push({ name: provider, why: `not in this onnxruntime build (it has ${[...supported].join(', ')})` });
        continue;
      }
      let session: ort.InferenceSession;
      try {
        session = await sessionOn(provider);
        checkedShape(session, modelPath, labels.length);
      } catch (err) {
        notUsed.push({ name: provider, why: (err as Error).message.split('\n')[0]!.slice(0, 300) });
        continue;
      }
      if (auto) {
        const onIt = await msPerInference(session, inputName, size);
        const onCpu = (cpuMs ??= await msPerInference(cpu, inputName, size));
        if (onIt >= onCpu) {
          notUsed.push({
            name: provider,
            why: `slower than the CPU (${onIt.toFixed(1)} against ${onCpu.toFixed(1)} ms an inference)`,
          });
          await session.release();
          continue;
        }
      }
      await cpu.release();
      return model(session, provider, notUsed);
    }
    return model(cpu, 'cpu', notUsed);
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

  /**
   * Objects in the frame whose score reaches minScore (per label, or `default`). `spent`, if
   * given, gets the CPU time this detection took, ms: the letterbox and decoding here, and the
   * inference where it ran (its wall time there).
   */
  async detect(
    frame: Frame,
    minScore: Record<string, number> & { default: number },
    iou = 0.45,
    spent?: { ms: number },
  ): Promise<Detection[]> {
    // onnxruntime reads the input while it runs: a buffer goes back to the pool only after.
    const buffer = this.buffers.pop() ?? { tensor: new Float32Array(3 * this.size * this.size), padded: '' };
    let t0 = performance.now();
    const { tensor, scale } = this.letterbox(frame, buffer);
    let ms = performance.now() - t0;
    try {
      const run = await this.infer(tensor);
      buffer.tensor = run.tensor; // back from the worker, padding as it was
      ms += run.ms;
      t0 = performance.now();
      const found = this.decode(run.out, scale, frame, minScore, iou);
      if (spent) spent.ms = ms + performance.now() - t0;
      return found;
    } finally {
      // A buffer lost with a dead worker is not put back (a new one is made).
      if (buffer.tensor.byteLength) this.buffers.push(buffer);
    }
  }

  /** One inference of a letterboxed input, on a worker or here. */
  private async infer(tensor: Float32Array): Promise<WorkerRun> {
    if (this.workers) return this.workers.run(tensor);
    const t0 = performance.now();
    const result = await this.session!.run({
      [this.inputName]: new (onnxruntime().Tensor)('float32', tensor, [1, 3, this.size, this.size]),
    });
    return { out: result[this.outputName]!.data as Float32Array, tensor, ms: performance.now() - t0 };
  }

  /** Raw run, for the benchmark's reference. */
  async runRaw(tensor: Float32Array): Promise<void> {
    await this.infer(tensor);
  }

  /** Inferences run on the workers so far, and the frames in them (undefined: no workers). */
  get workerCounts(): { runs: number; frames: number } | undefined {
    return this.workers && { ...this.workers.counts };
  }

  /** Lets the workers go. */
  async close(): Promise<void> {
    await this.workers?.close();
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
