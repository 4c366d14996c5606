// The model's inferences on worker threads, one session each. onnxruntime-node runs an inference
// synchronously on the thread that asks (inside a setImmediate): on the main thread every
// inference stops the event loop (the broker, the streams) for its whole length, and two at once
// take turns on one core. A worker per core runs them side by side, and the loop stays free.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { projectPath } from '../project-root.ts';

/** The worker: a session of the model, one inference at a time, input buffer handed back. */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.onnxruntime);
ort.InferenceSession.create(workerData.modelPath, workerData.options).then((session) => {
  const input = session.inputNames[0];
  const output = session.outputNames[0];
  parentPort.on('message', async ({ id, tensor, dims }) => {
    try {
      const t0 = performance.now();
      const result = await session.run({ [input]: new ort.Tensor('float32', tensor, dims) });
      const ms = performance.now() - t0;
      const data = result[output].data;
      // The output's own buffer goes over as it is; a view into a larger one is copied first.
      const out = data.byteOffset === 0 && data.buffer.byteLength === data.byteLength ? data : data.slice();
      parentPort.postMessage({ id, out, tensor, ms }, [out.buffer, tensor.buffer]);
    } catch (err) {
      parentPort.postMessage({ id, error: String(err && err.message), tensor }, [tensor.buffer]);
    }
  });
  parentPort.postMessage({ ready: true });
}, (err) => parentPort.postMessage({ failed: String(err && err.message) }));
`;

interface Reply {
  id?: number;
  out?: Float32Array;
  tensor?: Float32Array;
  ms?: number;
  error?: string;
  ready?: boolean;
  failed?: string;
}

export interface WorkerRun {
  out: Float32Array;
  /** The input, handed back (its buffer went to the worker and came back). */
  tensor: Float32Array;
  /** The inference alone, in the worker, ms. */
  ms: number;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  pending?: { id: number; resolve: (r: WorkerRun) => void; reject: (e: Error) => void };
}

export class InferenceWorkers {
  private readonly slots: Slot[] = [];
  private readonly queue: Array<() => void> = [];
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly workerData: { onnxruntime: string; modelPath: string; options: object },
    private readonly dims: number[],
  ) {}

  /** `count` workers, each with a session of `modelPath` made with `options`; ready when all are. */
  static async start(count: number, modelPath: string, options: object, dims: number[]): Promise<InferenceWorkers> {
    const onnxruntime = createRequire(projectPath('package.json')).resolve('onnxruntime-node');
    const pool = new InferenceWorkers({ onnxruntime, modelPath, options }, dims);
    try {
      await Promise.all(Array.from({ length: count }, () => pool.spawn()));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private spawn(): Promise<void> {
    const worker = new Worker(WORKER, { eval: true, workerData: this.workerData });
    worker.unref(); // a box or a test exits without waiting for idle workers
    const slot: Slot = { worker, busy: false };
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: Reply) => {
        if (m.ready) {
          this.slots.push(slot);
          resolve();
          this.dispatch();
        } else if (m.failed) reject(new Error(m.failed));
        else this.settle(slot, m);
      });
      const gone = (err: Error) => {
        reject(err);
        const i = this.slots.indexOf(slot);
        if (i < 0) return;
        // A worker that died takes its inference with it; another takes its place.
        this.slots.splice(i, 1);
        slot.pending?.reject(err);
        if (!this.closed) void this.spawn().catch(() => undefined);
      };
      worker.on('error', gone);
      worker.on('exit', (code) => gone(new Error(`inference worker exited (${code})`)));
    });
  }

  private settle(slot: Slot, m: Reply): void {
    const pending = slot.pending;
    slot.pending = undefined;
    slot.busy = false;
    if (pending && pending.id === m.id) {
      if (m.error !== undefined) pending.reject(new Error(m.error));
      else pending.resolve({ out: m.out!, tensor: m.tensor!, ms: m.ms! });
    }
    this.dispatch();
  }

  private dispatch(): void {
    while (this.queue.length && this.slots.some((s) => !s.busy)) this.queue.shift()!();
  }

  /** Runs `tensor` on a free worker (waiting for one); the tensor's buffer is the worker's meanwhile. */
  run(tensor: Float32Array): Promise<WorkerRun> {
    if (this.closed) return Promise.reject(new Error('inference workers closed'));
    return new Promise<WorkerRun>((resolve, reject) => {
      const go = () => {
        const slot = this.slots.find((s) => !s.busy)!;
        const id = this.nextId++;
        slot.busy = true;
        slot.pending = { id, resolve, reject };
        slot.worker.postMessage({ id, tensor, dims: this.dims }, [tensor.buffer as ArrayBuffer]);
      };
      this.queue.push(go);
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.slots.splice(0).map((s) => s.worker);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
