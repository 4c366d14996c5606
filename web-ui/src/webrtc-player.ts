// Live view over WebRTC: the browser offers, the box answers over WHEP (POST
// /api/v1/cameras/{id}/whep), and the camera's H.264 plays with a few frames of delay. Away from
// home there is no offer of its own: the camera comes on a slot of the tunnel's connection. When
// the box or the browser cannot (H.265, no RTCPeerConnection, ICE fails) it says so by onState,
// and the page falls back to MSE.
import type { LiveState } from './live-player.ts';
import { LinkJudge } from './link-judge.ts';
import { tunnel, TunnelError, type RemoteView } from './remote.ts';

/** No picture this long after the offer: WebRTC is taken as not working here. */
const FIRST_FRAME_TIMEOUT_MS = 6000;

/**
 * A slow link, for a player that may step down to the camera's sub-stream (away from home): its
 * stats are read this often, and SLOW_CHECKS slow checks in a row (link-judge.ts) step it down.
 * On the sub-stream, a link good for PROBE_AFTER_MS tries the main stream again; a try that
 * fails waits twice as long next time.
 */
const CHECK_MS = 2000;
const SLOW_CHECKS = 2;
const PROBE_AFTER_MS = 15_000;
const PROBE_MAX_MS = 120_000;

export class WebRtcPlayer {
  private pc: RTCPeerConnection | undefined;
  private session: string | null = null;
  /** Away: the camera on a slot of the tunnel's connection, and how to stop hearing of the tunnel's end. */
  private view: { view: RemoteView; unlisten: () => void } | undefined;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  /** ms from start() to the first frame shown. */
  firstFrameMs: number | null = null;
  /** What it plays now: the stream asked for, or the sub-stream while the link is slow. */
  private stream: 'main' | 'sub';
  private watch: ReturnType<typeof setInterval> | undefined;
  private probeAfterMs = PROBE_AFTER_MS;
  /** Since when it has been back on the main stream (a try), or 0. */
  private probingSince = 0;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly camera: string,
    stream: 'main' | 'sub',
    private readonly onState: (state: LiveState, why?: string) => void,
    /** Step down to the sub-stream while the link is slow (a camera with one, seen from away). */
    private readonly adaptive = false,
  ) {
    this.stream = stream;
    video.dataset['stream'] = stream;
  }

  static available(): boolean {
    return typeof RTCPeerConnection !== 'undefined';
  }

  start(): void {
    void this.connect().catch((err: Error) => this.fail(err.message));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.teardown();
  }

  /** Ends this connection (not the player: a retry may follow). */
  private teardown(): void {
    clearTimeout(this.timer);
    clearInterval(this.watch);
    this.view?.unlisten();
    this.view?.view.close();
    this.view = undefined;
    this.pc?.close();
    this.pc = undefined;
    // The box would see the connection go within seconds; telling it frees the viewer's place now.
    if (this.session)
      void fetch(this.session, { method: 'DELETE', keepalive: true, credentials: 'same-origin' }).catch(
        () => undefined,
      );
    this.session = null;
    this.video.srcObject = null;
  }

  /** Ready for the first frame: "playing" when it shows; no frame within the timeout is a failure. */
  private awaitFirstFrame(startedAt: number): void {
    this.video.requestVideoFrameCallback?.(() => {
      this.failures = 0;
      this.firstFrameMs ??= Math.round(performance.now() - startedAt);
      clearTimeout(this.timer);
      this.video.dataset['firstFrameMs'] = String(this.firstFrameMs);
      this.video.dataset['firstFrameAt'] ??= String(Math.round(performance.now()));
      this.onState('playing');
    });
    this.timer = setTimeout(() => this.fail('no picture over WebRTC'), FIRST_FRAME_TIMEOUT_MS);
  }

  private async connect(): Promise<void> {
    const away = tunnel();
    if (away?.open) return this.connectAway(away);
    const startedAt = performance.now();
    this.onState('connecting');
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    this.video.srcObject = media;
    pc.ontrack = (e) => media.addTrack(e.track);
    let lost: ReturnType<typeof setTimeout> | undefined;
    pc.onconnectionstatechange = () => {
      clearTimeout(lost);
      if (pc !== this.pc) return;
      if (pc.connectionState === 'failed') this.fail('the WebRTC connection failed');
      // Disconnected for 5 s (the box restarted, the network changed): start again rather than wait for "failed".
      if (pc.connectionState === 'disconnected')
        lost = setTimeout(() => this.fail('the WebRTC connection was lost'), 5000);
    };
    this.awaitFirstFrame(startedAt);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const res = await fetch(`/api/v1/cameras/${this.camera}/whep?stream=${this.stream}`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: pc.localDescription?.sdp ?? offer.sdp ?? '',
      credentials: 'same-origin',
    });
    if (this.closed) return;
    if (res.status !== 201) {
      const why = ((await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined)?.error
        ?.message;
      return this.fail(why ?? `the box answered ${res.status}`, true);
    }
    this.session = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    void this.video.play().catch(() => undefined);
    if (this.adaptive)
      this.watchLink(
        () => pc.getStats(),
        () => pc === this.pc,
      );
  }

  /** Away: the camera on a slot of the tunnel's own connection (one connection for the API and every camera). */
  private async connectAway(away: NonNullable<ReturnType<typeof tunnel>>): Promise<void> {
    const startedAt = performance.now();
    this.onState('connecting');
    this.awaitFirstFrame(startedAt);
    let view: RemoteView;
    try {
      view = await away.watch(this.camera, this.stream);
    } catch (err) {
      const status = err instanceof TunnelError ? err.status : 0;
      return this.fail((err as Error).message, status === 415 || status === 403 || status === 404);
    }
    if (this.closed || this.view) return view.close();
    this.view = { view, unlisten: away.onClosed(() => this.fail('the tunnel to the box closed')) };
    this.video.srcObject = view.media;
    void this.video.play().catch(() => undefined);
    if (this.adaptive)
      this.watchLink(
        () => view.receiver.getStats(),
        () => this.view?.view === view,
      );
  }

  /** Reads the connection's stats: a slow link steps down to the sub-stream, a good one tries the main again. */
  private watchLink(statsOf: () => Promise<RTCStatsReport>, stillOn: () => boolean): void {
    const judge = new LinkJudge();
    let slowChecks = 0;
    let goodSince = performance.now();
    this.watch = setInterval(() => {
      void statsOf().then((stats) => {
        if (!stillOn()) return;
        let video: { packetsLost?: number; packetsReceived?: number; framesDecoded?: number } | undefined;
        stats.forEach((s) => s.type === 'inbound-rtp' && s.kind === 'video' && (video = s));
        if (!video) return;
        const now = performance.now();
        const link = judge.judge({
          lost: video.packetsLost ?? 0,
          received: video.packetsReceived ?? 0,
          frames: video.framesDecoded ?? 0,
          at: now,
        });
        if (!link) return;
        slowChecks = link.slow ? slowChecks + 1 : 0;
        if (link.slow) goodSince = now;
        // What the last check saw, for whoever looks at the page (and the tests when a step is missed).
        this.video.dataset['link'] =
          `${link.slow ? 'slow' : 'good'}: ${link.fps.toFixed(1)} fps (usually ${link.usualFps.toFixed(1)}), ` +
          `${(link.loss * 100).toFixed(1)}% lost, good for ${Math.round((now - goodSince) / 1000)} s`;
        if (this.stream === 'main' && slowChecks >= SLOW_CHECKS) {
          // A try of the main stream that failed waits longer next time.
          if (this.probingSince) this.probeAfterMs = Math.min(this.probeAfterMs * 2, PROBE_MAX_MS);
          this.switchTo('sub');
        } else if (this.stream === 'main' && this.probingSince && now - this.probingSince > PROBE_AFTER_MS) {
          this.probingSince = 0; // the main stream holds: the next step down starts afresh
          this.probeAfterMs = PROBE_AFTER_MS;
        } else if (this.stream === 'sub' && now - goodSince > this.probeAfterMs) this.switchTo('main');
      });
    }, CHECK_MS);
  }

  /** A new session on the other stream: the box starts it at that stream's newest keyframe. */
  private switchTo(stream: 'main' | 'sub'): void {
    this.probingSince = stream === 'main' ? performance.now() : 0;
    this.stream = stream;
    this.video.dataset['stream'] = stream;
    this.teardown();
    this.start();
  }

  /**
   * `unsupported`: not for this camera at all. A player that showed a picture before tries
   * again (1, 2, 4 ... 15 s: the box restarting, the network gone for a while); one that never
   * did leaves the choice to the page (MSE).
   */
  private fail(why: string, unsupported = false): void {
    if (this.closed) return;
    this.teardown();
    this.onState(unsupported ? 'unsupported' : 'failed', why);
    if (unsupported || this.firstFrameMs === null) return;
    this.failures++;
    this.retry = setTimeout(() => this.start(), Math.min(15_000, 1000 * 2 ** (this.failures - 1)));
  }
}
