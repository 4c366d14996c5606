// One queue for every camera's inferences on this node. The model runs `concurrency` at a time
// (one a worker, or a batch a worker when the model takes one): on the CPU more at once only share
// the same cores, and every camera's answer comes later.
// Each camera has at most one frame waiting (the detector keeps only its newest). The next to run:
//   - one that has waited maxWaitMs, so that nothing is starved;
//   - else an urgent one (following objects, or motion that just began: see CameraDetector), the
//     camera served longest ago first, so that when the box is full every camera gets its share
//     and a person walking into a quiet garden is not queued behind a busy street's turns;
//   - else (motion that goes on with nothing found in it: trees in the wind) likewise in turn.

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
  /** When each camera's last frame went to the model (performance.now()). */
  private readonly lastServed = new Map<string, number>();

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

  /** A camera removed: its turn is forgotten. */
  forget(camera: string): void {
    this.lastServed.delete(camera);
  }

  private next(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const [chosen] = this.waiting.splice(this.choose(), 1);
      this.running++;
      this.lastServed.set(chosen!.camera, performance.now());
      chosen!.start();
    }
  }

  private choose(): number {
    const now = performance.now();
    const overdue = this.waiting.findIndex((w) => now - w.since > this.maxWaitMs);
    if (overdue >= 0) return overdue;
    const urgent = this.waiting.map((w) => w.urgent());
    const anyUrgent = urgent.includes(true);
    let best = -1;
    for (let i = 0; i < this.waiting.length; i++) {
      if (anyUrgent && !urgent[i]) continue;
      if (best < 0 || this.servedAt(i) < this.servedAt(best)) best = i;
    }
    return best;
  }

  private servedAt(i: number): number {
    return this.lastServed.get(this.waiting[i]!.camera) ?? -Infinity;
  }
}
