// Live view over WebRTC: the browser offers, the box answers over WHEP (POST
// /api/v1/cameras/{id}/whep), and the camera's H.264 plays with a few frames of delay. When the
// box or the browser cannot (H.265, no RTCPeerConnection, ICE fails) it says so by onState, and
// the page falls back to MSE.
import type { LiveState } from './live-player.ts';
import { iceServers } from './remote.ts';

/** No picture this long after the offer: WebRTC is taken as not working here. */
const FIRST_FRAME_TIMEOUT_MS = 6000;

export class WebRtcPlayer {
  private pc: RTCPeerConnection | undefined;
  private session: string | null = null;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  /** ms from start() to the first frame shown. */
  firstFrameMs: number | null = null;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly camera: string,
    private readonly stream: 'main' | 'sub',
    private readonly onState: (state: LiveState, why?: string) => void,
  ) {}

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

  private async connect(): Promise<void> {
    const startedAt = performance.now();
    this.onState('connecting');
    const pc = new RTCPeerConnection({ iceServers: iceServers() });
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
    this.video.requestVideoFrameCallback?.(() => {
      this.failures = 0;
      this.firstFrameMs ??= Math.round(performance.now() - startedAt);
      clearTimeout(this.timer);
      this.video.dataset['firstFrameMs'] = String(this.firstFrameMs);
      this.video.dataset['firstFrameAt'] ??= String(Math.round(performance.now()));
      this.onState('playing');
    });
    this.timer = setTimeout(() => this.fail('no picture over WebRTC'), FIRST_FRAME_TIMEOUT_MS);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    // Away, the box can only answer to addresses it is told: the offer waits for this side's
    // candidates (the operator's STUN gives the one beyond the NAT). At home the box hears them.
    if (iceServers().length && pc.iceGatheringState !== 'complete')
      await new Promise<void>((resolve) => {
        const done = setTimeout(resolve, 5000);
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState !== 'complete') return;
          clearTimeout(done);
          resolve();
        });
      });
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
