// A camera's stream as fragmented MP4, fanned out to live viewers (and the detector), with
// the current GOP kept so a new viewer starts at once on a keyframe instead of waiting for
// the next one. Its source is the recording being written (read only while someone
// watches) or, for a sub-stream, an ffmpeg pipe; either way it is one continuous stream:
// one init segment, and fragment times that go on across segment files and restarts.
import { Readable } from 'node:stream';
import {
  FragmentReader,
  fragmentTiming,
  setFragmentStart,
  trackIdOf,
  type Track,
} from '../../lib/media/fragmented-mp4.ts';

export interface Fragment {
  /** moof + mdat */
  parts: Buffer[];
  keyframe: boolean;
  /** What it carries: one track each (ffmpeg writes a fragment per frame or audio packet). */
  track: Track['kind'];
  /** When it arrived, ms since the epoch. */
  at: number;
}

/** A viewer further behind than this skips ahead to the next keyframe. */
const VIEWER_BUFFER_BYTES = 4 * 1024 * 1024;
/** Bounds the GOP kept for new viewers if a camera sends keyframes rarely (audio counts too). */
const MAX_GOP_FRAGMENTS = 2000;

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
  private currentInit: Buffer | undefined;
  /** Parses a byte source (a pipe); made on first use. */
  private reader: FragmentReader | undefined;
  /**
   * Per track: added to fragment times so its clock never goes back (fixed at each new init),
   * and where its last fragment ended on the shifted clock.
   */
  private clocks = new Map<number, { shift?: number; end: number }>();
  private wanted = false;

  /** `onDemand(true)` when the first viewer or listener comes, `(false)` when the last leaves. */
  constructor(private readonly onDemand?: (wanted: boolean) => void) {}

  /** Bytes of fragmented MP4, cut anywhere (an ffmpeg pipe). */
  push(chunk: Buffer): void {
    this.reader ??= new FragmentReader({
      init: (init) => this.addInit(init),
      fragment: (moof, mdat, keyframe, track) =>
        this.addFragment({ parts: [moof, mdat], keyframe, track, at: Date.now() }),
    });
    this.reader.push(chunk);
  }

  /**
   * The init segment (ftyp+moov) of what follows: a new segment file or a new ffmpeg run,
   * whose clock starts again. Viewers get it only when it differs from the one they have.
   */
  addInit(init: Buffer): void {
    for (const clock of this.clocks.values()) clock.shift = undefined;
    if (this.currentInit?.equals(init)) return;
    this.currentInit = init;
    this.gop = [];
    for (const viewer of this.viewers) viewer.push(init);
  }

  addFragment(fragment: Fragment): void {
    const moof = fragment.parts[0]!;
    const timing = fragmentTiming(moof, this.currentInit);
    const trackId = trackIdOf(moof) ?? 0;
    if (timing) {
      const clock = this.clocks.get(trackId) ?? { end: timing.start };
      clock.shift ??= clock.end - timing.start;
      if (clock.shift !== 0) setFragmentStart(moof, timing.start + clock.shift);
      clock.end = timing.start + clock.shift + timing.duration;
      this.clocks.set(trackId, clock);
    }
    if (fragment.keyframe || this.gop.length >= MAX_GOP_FRAGMENTS) this.gop = [];
    this.gop.push(fragment);
    for (const viewer of this.viewers) viewer.send(fragment);
    for (const listener of this.listeners) listener(fragment);
  }

  /** ftyp+moov: what a decoder needs before any fragment. */
  get init(): Buffer | undefined {
    return this.currentInit;
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
    const viewer: Viewer = new Viewer(() => {
      this.viewers.delete(viewer);
      this.demandChanged();
    });
    if (this.currentInit) {
      viewer.push(this.currentInit);
      for (const f of this.gop) viewer.send(f);
    }
    this.viewers.add(viewer);
    this.demandChanged();
    return viewer;
  }

  /** Each new fragment, for in-process consumers; returns the unsubscribe. */
  onFragment(listener: (f: Fragment) => void): () => void {
    this.listeners.add(listener);
    this.demandChanged();
    return () => {
      this.listeners.delete(listener);
      this.demandChanged();
    };
  }

  /** The source stops: what the feed holds is stale, the next start begins clean. */
  reset(): void {
    this.currentInit = undefined;
    this.gop = [];
    this.reader = undefined;
    this.clocks.clear();
  }

  /** The stream ended (the camera stopped): viewers are told by the end of their stream. */
  end(): void {
    const viewers = [...this.viewers];
    this.viewers.clear();
    for (const viewer of viewers) viewer.push(null);
    this.demandChanged();
  }

  private demandChanged(): void {
    const wanted = this.viewers.size + this.listeners.size > 0;
    if (wanted === this.wanted) return;
    this.wanted = wanted;
    this.onDemand?.(wanted);
  }
}
