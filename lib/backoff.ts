// Waiting longer after each failure: doubling from `minMs` up to `maxMs`, with "equal jitter"
// (half the ceiling fixed, half random): never a tight loop, and a fleet that failed together
// does not come back in step.
export function backoffMs(failures: number, minMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
