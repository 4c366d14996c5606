// Whether the link a live view comes over is slow, from the receiver's video counts read every
// few seconds: more than LOSS_SLOW of the packets lost, or a frame rate under half the usual one.
// The usual rate is the median of the recent checks, not the best: a burst of frames decoded
// after a stall would otherwise set a rate the camera never sends, and every check after it
// would look slow.

export const LOSS_SLOW = 0.05;
/** Checks the usual frame rate is taken over. */
const RECENT = 9;
/** Under this many frames a second the rate says nothing (a still scene, a camera at 1 fps). */
const MIN_USUAL_FPS = 4;

/** The receiver's video counts at one check (inbound-rtp: packetsLost, packetsReceived, framesDecoded). */
export interface VideoCounts {
  lost: number;
  received: number;
  frames: number;
  /** ms, any clock that only goes on. */
  at: number;
}

export interface Judgement {
  slow: boolean;
  loss: number;
  fps: number;
  usualFps: number;
}

export class LinkJudge {
  private last: VideoCounts | undefined;
  private readonly rates: number[] = [];

  /** The link since the last check; undefined at the first, which has nothing to compare with. */
  judge(now: VideoCounts): Judgement | undefined {
    const before = this.last;
    this.last = now;
    if (!before || now.at <= before.at) return undefined;
    const lost = Math.max(0, now.lost - before.lost); // retransmissions found may lower the count
    const received = Math.max(0, now.received - before.received);
    const loss = lost / Math.max(1, lost + received);
    const fps = ((now.frames - before.frames) * 1000) / (now.at - before.at);
    const usualFps = this.rates.length ? median(this.rates) : fps;
    this.rates.push(fps);
    if (this.rates.length > RECENT) this.rates.shift();
    const slow = loss > LOSS_SLOW || (usualFps >= MIN_USUAL_FPS && fps < usualFps / 2);
    return { slow, loss, fps, usualFps };
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
