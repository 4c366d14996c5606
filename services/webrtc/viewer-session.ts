// One WebRTC viewer: a node-datachannel peer connection that sends cameras' H.264, taken from
// their live fMP4 feeds, as RTP without transcoding (media-slot.ts), and, from away, carries the
// API tunnel's data channel. A WHEP viewer has one camera; a remote session adds a slot for each
// camera the app shows by offering again over its tunnel, and hands a slot another camera with
// no offer at all. RTP goes out on UDP as it comes: nothing queues behind a slow viewer.
import { randomBytes } from 'node:crypto';
import { PeerConnection, type DataChannel, type RtcConfig } from 'node-datachannel';
import { BadOfferError, parseOffer, receiving } from './sdp-offer.ts';
import { keepUntilClosed } from './keep-until-closed.ts';
import { within, MediaSlot, type CameraFeed, type SentCounts } from './media-slot.ts';

/** A connection lost this long is given up (ICE may come back within it). */
const DISCONNECTED_GRACE_MS = 10_000;
/** No RTCP from the viewer this long: it is gone (RFC 3550 §6.3.5 takes five report intervals). */
const VIEWER_SILENT_MS = 6000;
/** The time a viewer has after the answer to connect and send its first report. */
const CONNECT_GRACE_MS = 10_000;
/** Slots one session may hold (each a camera's tracks). */
export const MAX_SLOTS = 16;

export class SlotNotFoundError extends Error {}

export interface SessionOptions {
  user: string;
  /** The id of the token, session or paired browser it was opened with: revoking it ends the session. */
  credential: string | undefined;
  /** From the LAN (WHEP) or from away (signalling through the operator). */
  remote: boolean;
  rtc: RtcConfig;
  /** The viewer's data channels (a remote session's API tunnel); none: they are closed. */
  onDataChannel?: (channel: DataChannel, session: ViewerSession) => void;
  onClose: (session: ViewerSession) => void;
}

export class ViewerSession implements SentCounts {
  readonly id = randomBytes(16).toString('base64url');
  readonly startedAt = new Date().toISOString();
  framesSent = 0;
  bytesSent = 0;
  private readonly pc: PeerConnection;
  /** The cameras' slots, by the mid of their video section. */
  private readonly slots = new Map<string, MediaSlot>();
  /** Data channels the viewer opened (a remote session's tunnel). */
  private channels = 0;
  /** Its first offer had media: later offers can add more (a connection made without any cannot). */
  private withMedia = false;
  /** Offers after the first go one at a time (each is an offer/answer round on the same connection). */
  private negotiating: Promise<unknown> = Promise.resolve();
  private closed = false;
  private lostTimer: NodeJS.Timeout | undefined;
  private liveness: NodeJS.Timeout | undefined;
  /** When the viewer was last heard (its RTCP). */
  private heardAt = 0;

  constructor(private readonly options: SessionOptions) {
    this.pc = new PeerConnection(`viewer-${this.id.slice(0, 8)}`, options.rtc);
    this.pc.onStateChange((state) => this.onState(state));
    this.pc.onDataChannel((channel) => {
      keepUntilClosed(channel);
      this.channels++;
      if (options.onDataChannel) options.onDataChannel(channel, this);
      else channel.close();
    });
  }

  /** The cameras it sends now (the first, for a WHEP viewer). */
  get cameras(): string[] {
    return [...this.slots.values()].flatMap((s) => (s.camera ? [s.camera] : []));
  }
  get remote(): boolean {
    return this.options.remote;
  }
  get user(): string {
    return this.options.user;
  }
  get credential(): string | undefined {
    return this.options.credential;
  }
  get state(): string {
    return this.closed ? 'closed' : this.pc.state();
  }

  /**
   * The answer to the viewer's first offer, with the box's candidates in it (all of them: a WHEP
   * client need not wait for trickled ones). With a camera, waits for its init segment to know
   * its codec.
   */
  async answer(
    offer: string,
    timeoutMs: number,
    camera: CameraFeed | null,
  ): Promise<{ sdp: string; video: string | null; audio: string | null }> {
    const media = parseOffer(offer);
    let sent: { video: string | null; audio: string | null } = { video: null, audio: null };
    if (camera) {
      const video = receiving(media, 'video');
      if (!video) throw new BadOfferError('the offer has no video section the box can send to (recvonly or sendrecv)');
      await camera.ready(timeoutMs);
      const slot = this.openSlot({ video, audio: receiving(media, 'audio') }, camera);
      sent = { video: slot.videoCodec, audio: slot.audioCodec };
    } else if (!media.some((m) => m.kind === 'application'))
      throw new BadOfferError('the offer has no data channel (m=application) and names no camera');
    else {
      // A tunnel's first slot, empty until the viewer hands it a camera. WebRTC cannot add media
      // to a connection made without any (its DTLS carries no SRTP then): this one is offered at once.
      const video = receiving(media, 'video');
      if (video) this.openSlot({ video, audio: receiving(media, 'audio') }, null);
    }
    this.withMedia = this.slots.size > 0;
    // The viewer's RTCP (receiver reports, about one a second) or its tunnel's pings: a viewer
    // that stops sending them is gone (a closed tab says nothing), and its place is freed.
    this.heardAt = Date.now() + CONNECT_GRACE_MS;
    this.liveness = setInterval(() => {
      if (Date.now() - this.heardAt > VIEWER_SILENT_MS) this.close();
    }, 1000);
    const gathered = new Promise<void>((resolve) =>
      this.pc.onGatheringStateChange((state) => state === 'complete' && resolve()),
    );
    this.pc.setRemoteDescription(offer, 'offer');
    if (this.pc.gatheringState() !== 'complete') await within(gathered, timeoutMs, 'ICE gathering did not end');
    const local = this.pc.localDescription();
    if (!local) throw new Error('no local description was made');
    return { sdp: local.sdp, ...sent };
  }

  /**
   * A later offer on the same connection that adds a slot (the viewer names the mids of its
   * sections): the answer to it. The slot waits, empty, to be handed a camera.
   */
  addSlot(offer: string, mids: { video: string; audio?: string | undefined }): Promise<{ sdp: string }> {
    const turn = this.negotiating.then(() => {
      if (this.closed) throw new SlotNotFoundError('the session has ended');
      const media = parseOffer(offer);
      const video = receiving(media, 'video', mids.video);
      if (!video) throw new BadOfferError(`the offer has no video section "${mids.video}" the box can send to`);
      const audio = mids.audio === undefined ? undefined : receiving(media, 'audio', mids.audio);
      if (mids.audio !== undefined && !audio)
        throw new BadOfferError(`the offer has no audio section "${mids.audio}" the box can send to`);
      if (this.slots.has(mids.video)) throw new BadOfferError(`section "${mids.video}" is a slot already`);
      if (!this.withMedia)
        throw new BadOfferError(
          'the session was opened without a video section, and WebRTC cannot add media to such a connection: open it with one',
        );
      if (this.slots.size >= MAX_SLOTS)
        throw new BadOfferError(`a session has ${MAX_SLOTS} slots at most: hand one another camera`);
      const slot = this.openSlot({ video, audio }, null);
      try {
        this.pc.setRemoteDescription(offer, 'offer');
        const local = this.pc.localDescription();
        if (!local || local.type !== 'answer') throw new Error('no answer was made to the offer');
        return { sdp: local.sdp };
      } catch (err) {
        this.slots.delete(slot.mid);
        slot.close();
        throw err;
      }
    });
    this.negotiating = turn.catch(() => undefined);
    return turn;
  }

  /** Another camera (or the other stream) on a slot, from its newest keyframe: no offer needed. */
  async handSlot(mid: string, camera: CameraFeed, timeoutMs: number): Promise<{ video: string; audio: string | null }> {
    const slot = this.slots.get(mid);
    if (!slot) throw new SlotNotFoundError(`no slot "${mid}" in this session`);
    await camera.ready(timeoutMs);
    if (this.closed || this.slots.get(mid) !== slot) throw new SlotNotFoundError(`the slot "${mid}" has gone`);
    slot.attach(camera);
    return { video: slot.videoCodec, audio: slot.audioCodec };
  }

  /** The slot stops sending; its tracks wait for the next camera. */
  emptySlot(mid: string): void {
    const slot = this.slots.get(mid);
    if (!slot) throw new SlotNotFoundError(`no slot "${mid}" in this session`);
    slot.detach();
  }

  /** A camera the viewer may no longer watch (or one removed): a WHEP viewer ends, a tunnel's slot empties. */
  dropCamera(camera: string): void {
    if (!this.channels && this.cameras.includes(camera)) return this.close();
    for (const slot of this.slots.values()) if (slot.camera === camera) slot.detach();
  }

  /** A camera's feed ended (removed, turned off, its node gone): a WHEP viewer ends, a tunnel's slot empties. */
  feedEnded(camera: CameraFeed): void {
    if (!this.channels) return this.close();
    for (const slot of this.slots.values()) if (slot.carries(camera)) slot.detach();
  }

  /** The viewer said something (RTCP, a data channel message): it is still there. */
  heard(): void {
    this.heardAt = Math.max(this.heardAt, Date.now());
  }

  /** Trickled candidates: "a=candidate:..." lines, each for the mid above it (or the offer's first). */
  addCandidates(fragment: string): number {
    const remote = this.pc.remoteDescription();
    let mid = (remote && /^a=mid:(\S+)/m.exec(remote.sdp)?.[1]) ?? '0';
    let added = 0;
    for (const line of fragment.split(/\r?\n/).map((l) => l.trim())) {
      if (line.startsWith('a=mid:')) mid = line.slice(6);
      else if (line.startsWith('a=candidate:')) {
        this.pc.addRemoteCandidate(line.slice(2), mid);
        added++;
      }
    }
    return added;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.lostTimer);
    clearInterval(this.liveness);
    for (const slot of this.slots.values()) slot.close();
    try {
      this.pc.close();
    } catch {
      // already closed by the library
    }
    this.options.onClose(this);
  }

  private openSlot(sections: Parameters<typeof MediaSlot.open>[1], camera: CameraFeed | null): MediaSlot {
    const slot = MediaSlot.open(this.pc, sections, camera, {
      counts: this,
      heard: () => this.heard(),
      onBroken: () => this.close(),
    });
    this.slots.set(slot.mid, slot);
    return slot;
  }

  private onState(state: string): void {
    clearTimeout(this.lostTimer);
    if (state === 'closed' || state === 'failed') this.close();
    else if (state === 'disconnected') this.lostTimer = setTimeout(() => this.close(), DISCONNECTED_GRACE_MS);
  }
}
