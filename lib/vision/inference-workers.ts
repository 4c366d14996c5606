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

interface Job {
  tensor: Float32Array;
  resolve: (r: WorkerRun) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  pending?: { id: number; jobs: Job[] };
}

export class InferenceWorkers {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** Runs so far, and frames in them (more frames than runs: batches). */
  readonly counts = { runs: 0, frames: 0 };

  private constructor(
    private readonly workerData: { onnxruntime: string; modelPath: string; options: object },
    /** One frame's input dimensions, [3, S, S]. */
    private readonly frame: number[],
    /** Frames one run may take: more than 1 when the model's batch dimension is open. */
    private readonly batch: number,
  ) {}

  /** `count` workers, each with a session of `modelPath` made with `options`; ready when all are. */
  static async start(
    count: number,
    modelPath: string,
    options: object,
    frame: number[],
    batch = 1,
  ): Promise<InferenceWorkers> {
    const onnxruntime = createRequire(projectPath('package.json')).resolve('onnxruntime-node');
    const pool = new InferenceWorkers({ onnxruntime, modelPath, options }, frame, batch);
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
        // A worker that died takes its inferences with it; another takes its place.
        this.slots.splice(i, 1);
        for (const job of slot.pending?.jobs ?? []) job.reject(err);
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
      const { jobs } = pending;
      if (m.error !== undefined) for (const job of jobs) job.reject(new Error(m.error));
      else if (jobs.length === 1) jobs[0]!.resolve({ out: m.out!, tensor: m.tensor!, ms: m.ms! });
      else {
        // One output for the batch, in the frames' order: a view of it each, the run's time shared.
        const per = m.out!.length / jobs.length;
        jobs.forEach((job, i) =>
          job.resolve({ out: m.out!.subarray(i * per, (i + 1) * per), tensor: job.tensor, ms: m.ms! / jobs.length }),
        );
      }
    }
    this.dispatch();
  }

  /** Each free worker takes what waits, up to a batch. */
  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.busy || !this.queue.length) continue;
      const jobs = this.queue.splice(0, this.batch);
      const id = this.nextId++;
      this.counts.runs++;
      this.counts.frames += jobs.length;
      slot.busy = true;
      slot.pending = { id, jobs };
      if (jobs.length === 1) {
        const { tensor } = jobs[0]!;
        slot.worker.postMessage({ id, tensor, dims: [1, ...this.frame] }, [tensor.buffer as ArrayBuffer]);
      } else {
        // The frames' own buffers stay here; the batch goes in one of its own.
        const size = jobs[0]!.tensor.length;
        const all = new Float32Array(jobs.length * size);
        jobs.forEach((job, i) => all.set(job.tensor, i * size));
        slot.worker.postMessage({ id, tensor: all, dims: [jobs.length, ...this.frame] }, [all.buffer]);
      }
    }
  }

  /** Runs `tensor` on a free worker (waiting for one), with others waiting when the model takes a batch. */
  run(tensor: Float32Array): Promise<WorkerRun> {
    if (this.closed) return Promise.reject(new Error('inference workers closed'));
    return new Promise<WorkerRun>((resolve, reject) => {
      this.queue.push({ tensor, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.slots.splice(0).map((s) => s.worker);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
