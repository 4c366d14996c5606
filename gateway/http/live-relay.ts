// Live view over MSE: a camera's live fMP4 feed (from the streams service, on this node or over
// NATS) relayed to one viewer, on a WebSocket at home or as a streamed HTTP answer (which the
// tunnel carries away from home, and any HTTP player reads). A slow viewer drops whole GOPs and
// resumes on a keyframe, never mid-GOP; one that does not read at all is cut off; a feed gone
// quiet ends the viewer, so its player connects again.
import type { Readable } from 'node:stream';
import type { WebSocket } from 'ws';
import { codecString, FragmentReader } from '../../lib/media/fragmented-mp4.ts';

export const LIVE_LIMITS = {
  /** A live viewer this far behind (bytes queued for it) skips to the next keyframe (about 2 s of a 2 Mbit/s camera)... */
  skipBytes: 512 * 1024,
  /** ...and one that stays behind this long is not reading: it is cut off and its memory freed, ms. */
  stuckMs: 10_000,
  /** No bytes from the stream for this long: its source is gone (the node that records it lost, the bus restarted, the camera gone); the viewer is told and closed, so its player reconnects, ms. */
  idleMs: 5000,
};

/** Where a live feed goes: a WebSocket, or an HTTP answer's body. */
export interface LiveSink {
  /** The init segment (again after a camera restart), with its MIME type for MediaSource. */
  init(mime: string, init: Buffer): void;
  fragment(bytes: Buffer): void;
  /** Bytes queued for the viewer, not yet taken. */
  backlog(): number;
  /** The feed ended or went quiet: the viewer is told. */
  end(why: 'camera stopped' | 'stream failed' | 'stream quiet'): void;
  /** The viewer does not read: let go at once. */
  cutOff(): void;
  /** The viewer has gone (or was let go): called once. */
  onGone(listener: () => void): void;
}

/** One live viewer: the feed's fMP4 to its sink, slow viewers skipped ahead or cut off, a quiet feed ended. */
export function relayLive(sink: LiveSink, feed: Readable, stop: () => void, limits = LIVE_LIMITS): void {
  let skipping = false;
  /** Since when the viewer has been behind by skipBytes or more; 0: it keeps up. */
  let behindSince = 0;
  let idle: NodeJS.Timeout | undefined;
  const watch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      sink.end('stream quiet');
      feed.destroy();
    }, limits.idleMs);
  };
  watch();
  const reader = new FragmentReader({
    init(init) {
      sink.init(`video/mp4; codecs="${codecString(init) ?? 'avc1'}"`, init);
      skipping = true; // start (again) on a keyframe
    },
    fragment(moof, mdat, keyframe) {
      const behind = sink.backlog() >= limits.skipBytes;
      behindSince = behind ? behindSince || Date.now() : 0;
      if (behind && Date.now() - behindSince >= limits.stuckMs) return sink.cutOff();
      if (keyframe) skipping = false;
      if (behind) skipping = true;
      if (!skipping) sink.fragment(Buffer.concat([moof, mdat]));
    },
  });
  feed.on('data', (chunk: Buffer) => {
    watch();
    reader.push(chunk);
  });
  feed.on('end', () => sink.end('camera stopped'));
  feed.on('error', () => sink.end('stream failed'));
  sink.onGone(() => {
    clearTimeout(idle);
    feed.destroy();
    stop();
  });
}

/**
 * A WebSocket viewer: the first message is JSON {type:'init', mime} for
 * MediaSource.addSourceBuffer; then binary messages, each appendable as is.
 */
export function webSocketSink(ws: WebSocket): LiveSink {
  ws.on('message', () => undefined); // viewers have nothing to say; maxPayload bounds them
  return {
    init(mime, init) {
      ws.send(JSON.stringify({ type: 'init', mime }));
      ws.send(init);
    },
    fragment: (bytes) => ws.send(bytes),
    backlog: () => ws.bufferedAmount,
    end: (why) =>
      ws.close(why === 'camera stopped' ? 1000 : 1011, why === 'stream quiet' ? 'live stream stopped; reconnect' : why),
    cutOff: () => ws.terminate(),
    onGone: (listener) => void ws.on('close', listener),
  };
}

/**
 * An HTTP answer's body: the init segment, then fragments, as one fMP4 byte stream (a new init
 * segment in it after a camera restart). `mime` resolves with the first init's type, or null
 * when the viewer went before it came.
 */
export function httpSink(): { sink: LiveSink; body: ReadableStream<Uint8Array>; mime: Promise<string | null> } {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const listeners: Array<() => void> = [];
  let gone = false;
  let firstMime: (mime: string | null) => void;
  const mime = new Promise<string | null>((resolve) => (firstMime = resolve));
  const leave = () => {
    if (gone) return;
    gone = true;
    firstMime(null);
    for (const l of listeners) l();
  };
  // No queue of its own beyond what the reader has not taken: desiredSize goes negative by what waits.
  const body = new ReadableStream<Uint8Array>(
    { start: (c) => void (controller = c), cancel: leave },
    new ByteLengthQueuingStrategy({ highWaterMark: 0 }),
  );
  const sink: LiveSink = {
    init(type, init) {
      firstMime(type);
      if (!gone) controller.enqueue(new Uint8Array(init));
    },
    fragment(bytes) {
      if (!gone) controller.enqueue(new Uint8Array(bytes));
    },
    backlog: () => (gone ? 0 : Math.max(0, -(controller.desiredSize ?? 0))),
    end() {
      if (!gone) controller.close();
      leave();
    },
    cutOff() {
      if (!gone) controller.error(new Error('the viewer does not read'));
      leave();
    },
    onGone: (listener) => void listeners.push(listener),
  };
  return { sink, body, mime };
}
