// Live view in a <video>: fMP4 fragments from /api/v1/cameras/{id}/live appended to a
// MediaSource. The first message names the codec; a camera the browser cannot decode (H.265 in
// most browsers) or a socket that fails falls back to snapshots, said by onState. Away from home
// the same bytes come as one streamed answer (/live.mp4) through the tunnel.
import { tunnel, type Tunnel } from './remote.ts';

export type LiveState = 'connecting' | 'playing' | 'unsupported' | 'failed';

const KEEP_SECONDS = 20; // buffer kept behind the play head
const MAX_LATENCY_S = 1.5; // further behind the live edge than this: jump to it

export class LivePlayer {
  private ws: WebSocket | undefined;
  /** Away: the streamed answer being read through the tunnel. */
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private source: MediaSource | undefined;
  private buffer: SourceBuffer | undefined;
  private queue: ArrayBuffer[] = [];
  private retry: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private failures = 0;
  /** ms from start() to the first frame shown, for the tests and the System page. */
  firstFrameMs: number | null = null;
  private startedAt = 0;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly camera: string,
    private readonly stream: 'main' | 'sub',
    private readonly onState: (state: LiveState, why?: string) => void,
  ) {}

  start(): void {
    this.startedAt = performance.now();
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.stopReading();
    this.teardown();
  }

  private stopReading(): void {
    this.ws?.close();
    void this.reader?.cancel().catch(() => undefined);
    this.reader = undefined;
  }

  /** The stream stopped: try again after 1, 2, 4 ... 15 s. */
  private lost(): void {
    if (this.closed) return;
    this.teardown();
    this.failures++;
    this.onState('failed', 'the live stream stopped');
    this.retry = setTimeout(() => this.connect(), Math.min(15_000, 1000 * 2 ** (this.failures - 1)));
  }

  /** Away: the camera's fMP4 as one answer streamed through the tunnel. */
  private async connectAway(away: Tunnel): Promise<void> {
    const res = await away
      .fetch(`/api/v1/cameras/${this.camera}/live.mp4?stream=${this.stream}`)
      .catch(() => undefined);
    if (this.closed) return void res?.body?.cancel().catch(() => undefined);
    if (!res?.ok || !res.body) {
      void res?.body?.cancel().catch(() => undefined);
      return this.lost();
    }
    const reader = res.body.getReader();
    this.reader = reader;
    this.init({ type: 'init', mime: res.headers.get('content-type') ?? '' });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.reader !== reader) break;
        this.queue.push(value.slice().buffer);
        this.pump();
      }
    } catch {
      // the tunnel closed: lost below
    }
    if (this.reader === reader) this.lost();
  }

  private connect(): void {
    if (this.closed) return;
    this.onState('connecting');
    const away = tunnel();
    if (away?.open) return void this.connectAway(away);
    const ws = new WebSocket(
      `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/cameras/${this.camera}/live?stream=${this.stream}`,
    );
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') return this.init(JSON.parse(m.data) as { type: string; mime: string });
      this.queue.push(m.data as ArrayBuffer);
      this.pump();
    };
    ws.onclose = () => this.lost();
  }

  private init(message: { type: string; mime: string }): void {
    if (message.type !== 'init') return;
    if (typeof MediaSource === 'undefined' || !MediaSource.isTypeSupported(message.mime)) {
      this.closed = true;
      this.stopReading();
      this.onState(
        'unsupported',
        `this browser cannot play ${message.mime.replace(/^.*codecs="?([^"]+)"?.*$/, '$1')} live`,
      );
      return;
    }
    if (this.buffer && this.source?.readyState === 'open') return; // a camera restart: same codec, go on
    this.teardown();
    const source = new MediaSource();
    this.source = source;
    this.video.src = URL.createObjectURL(source);
    source.addEventListener(
      'sourceopen',
      () => {
        URL.revokeObjectURL(this.video.src);
        this.buffer = source.addSourceBuffer(message.mime);
        this.buffer.mode = 'sequence'; // a camera restart starts its clock again: play on regardless
        this.buffer.addEventListener('updateend', () => this.pump());
        this.pump();
      },
      { once: true },
    );
    this.video.addEventListener(
      'loadeddata',
      () => {
        this.failures = 0;
        this.firstFrameMs ??= Math.round(performance.now() - this.startedAt);
        this.video.dataset['firstFrameMs'] = String(this.firstFrameMs);
        // ms since the page's navigation: the whole wait a user sees.
        this.video.dataset['firstFrameAt'] ??= String(Math.round(performance.now()));
        this.onState('playing');
        void this.video.play().catch(() => undefined);
      },
      { once: true },
    );
  }

  private pump(): void {
    const buffer = this.buffer;
    if (!buffer || buffer.updating || this.source?.readyState !== 'open') return;
    const ranges = buffer.buffered;
    if (ranges.length > 0) {
      const end = ranges.end(ranges.length - 1);
      // Keep close to live: a tab in the background or a slow phone falls behind.
      if (end - this.video.currentTime > MAX_LATENCY_S) this.video.currentTime = end - 0.2;
      const start = ranges.start(0);
      if (this.video.currentTime - start > KEEP_SECONDS * 2)
        return buffer.remove(start, this.video.currentTime - KEEP_SECONDS);
    }
    const next = this.queue.shift();
    if (!next) return;
    try {
      buffer.appendBuffer(next);
    } catch (err) {
      // QuotaExceeded or a decode error: start over.
      this.onState('failed', (err as Error).message);
      if (this.ws)
        this.ws.close(); // its close starts over
      else {
        this.stopReading();
        this.lost();
      }
    }
  }

  private teardown(): void {
    this.queue = [];
    this.buffer = undefined;
    if (this.source?.readyState === 'open') {
      try {
        this.source.endOfStream();
      } catch {
        /* already ended */
      }
    }
    this.source = undefined;
    this.video.removeAttribute('src');
  }
}
