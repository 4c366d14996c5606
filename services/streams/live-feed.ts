// The camera's stream as fragmented MP4, from the one ffmpeg that records it, fanned out
// to live viewers (and the detector), with the current GOP kept so a new viewer starts
// at once on a keyframe instead of waiting for the next one.
import { Readable } from 'node:stream';
import { FragmentReader } from '../recorder/fragmented-mp4.ts';

export interface Fragment {
  /** moof + mdat */
  parts: Buffer[];
  keyframe: boolean;
  at: number;
}

/** A viewer further behind than this skips ahead to the next keyframe. */
const VIEWER_BUFFER_BYTES = 4 * 1024 * 1024;
/** Bounds the GOP kept for new viewers if a camera sends keyframes rarely. */
const MAX_GOP_FRAGMENTS = 600;

class Viewer extends Readable {
  skipping = false;
  constructor(private readonly onClose: () => void) {
    super({ highWaterMark: VIEWER_BUFFER_BYTES });
  }
  override _read(): void {}
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.onClose();
    callback(err);
  }
  send(fragment: Fragment): void {
    if (this.skipping && !fragment.keyframe) return;
    if (this.readableLength > VIEWER_BUFFER_BYTES) {
      this.skipping = true; // too slow: drop until the next keyframe rather than fall further behind
      return;
    }
    this.skipping = false;
    for (const part of fragment.parts) this.push(part);
  }
}

export class LiveFeed {
  /** Fragments since (and with) the newest keyframe. */
  private gop: Fragment[] = [];
  private viewers = new Set<Viewer>();
  private listeners = new Set<(f: Fragment) => void>();
  private reader = new FragmentReader({
    init: (init) => {
      this.gop = [];
      for (const viewer of this.viewers) viewer.push(init); // a new run: players reinitialise
    },
    fragment: (moof, mdat, keyframe) => this.onFragmentRead({ parts: [moof, mdat], keyframe, at: Date.now() }),
  });

  push(chunk: Buffer): void {
    this.reader.push(chunk);
  }

  /** ftyp+moov: what a decoder needs before any fragment. */
  get init(): Buffer | undefined {
    return this.reader.init;
  }

  /** The fragment that holds the newest keyframe. */
  get keyframe(): Fragment | undefined {
    return this.gop[0]?.keyframe ? this.gop[0] : undefined;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** A byte stream of fMP4: init, the current GOP, then each new fragment. Destroy it to leave. */
  watch(): Readable {
    const viewer: Viewer = new Viewer(() => this.viewers.delete(viewer));
    if (this.init) {
      viewer.push(this.init);
      for (const f of this.gop) viewer.send(f);
    }
    this.viewers.add(viewer);
    return viewer;
  }

  /** Each new fragment, for in-process consumers; returns the unsubscribe. */
  onFragment(listener: (f: Fragment) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The stream ended (ffmpeg stopped): viewers are told by the end of their stream. */
  end(): void {
    for (const viewer of this.viewers) viewer.push(null);
    this.viewers.clear();
  }

  private onFragmentRead(fragment: Fragment): void {
    if (fragment.keyframe || this.gop.length >= MAX_GOP_FRAGMENTS) this.gop = [];
    this.gop.push(fragment);
    for (const viewer of this.viewers) viewer.send(fragment);
    for (const listener of this.listeners) listener(fragment);
  }
}
