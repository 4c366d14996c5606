// One queue for every camera's inferences on this node. The model runs `concurrency` at a time
// (one a worker, or a batch a worker when the model takes one): on the CPU more at once only share
// the same cores, and every camera's answer comes later.
// Each camera has at most one frame waiting (the detector keeps only its newest), and the next
// to run is a camera that is following objects before one that only saw motion, unless another
// has waited maxWaitMs: a busy street cannot starve a quiet garden.

interface Waiting {
  camera: string;
  /** Read at each choice: the camera's tracks may have come or gone while it waited. */
  urgent: () => boolean;
  since: number;
  start: () => void;
}

export class InferenceQueue {
  private readonly waiting: Waiting[] = [];
  private running = 0;

  constructor(
    /** Set again once the model is loaded: workers times the frames a run takes. */
    public concurrency: number,
    private readonly maxWaitMs = 1000,
  ) {}

  /** Frames waiting for the model, of every camera. */
  get depth(): number {
    return this.waiting.length;
  }

  /** Runs `job` when its turn comes; its result or error is the caller's. */
  run<T>(camera: string, urgent: () => boolean, job: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({
        camera,
        urgent,
        since: performance.now(),
        start: () => {
          job()
            .then(resolve, reject)
            .finally(() => {
              this.running--;
              this.next();
            });
        },
      });
      this.next();
    });
  }

  private next(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const i = this.choose();
      const [chosen] = this.waiting.splice(i, 1);
      this.running++;
      chosen!.start();
    }
  }

  /** The oldest that waited too long; else the oldest urgent one; else the oldest. */
  private choose(): number {
    const now = performance.now();
    const overdue = this.waiting.findIndex((w) => now - w.since > this.maxWaitMs);
    if (overdue >= 0) return overdue;
    const urgent = this.waiting.findIndex((w) => w.urgent());
    return urgent >= 0 ? urgent : 0;
  }
}
