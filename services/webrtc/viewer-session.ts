// One WebRTC viewer of one camera: a node-datachannel peer connection that sends the camera's
// H.264 samples, taken from its live fMP4 feed, as RTP without transcoding. The feed starts at
// the newest keyframe (with the parameter sets from the init segment put in front of it), so
// the picture shows at once. RTP goes out on UDP as it comes: nothing queues behind a slow viewer.
import { randomBytes, randomInt } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  Audio,
  H264RtpPacketizer,
  PeerConnection,
  RtcpNackResponder,
  RtcpSrReporter,
  RtpPacketizationConfig,
  RtpPacketizer,
  Video,
  type DataChannel,
  type RtcConfig,
  type Track,
} from 'node-datachannel';
import { avcParameterSets, FragmentReader, samplesOf, tracksOf, type Sample } from '../../lib/media/fragmented-mp4.ts';
import { BadOfferError, parseOffer, pickAudio, pickH264, receiving, type OfferedMedia } from './sdp-offer.ts';
import { CLOCK_RATE, PACKET_SAMPLES, type AudioCodec, type AudioFeed } from './audio-feed.ts';

/** The RTP clock of video (RFC 6184). */
const VIDEO_CLOCK = 90_000;
/** A connection lost this long is given up (ICE may come back within it). */
const DISCONNECTED_GRACE_MS = 10_000;
/** No RTCP from the viewer this long: it is gone (RFC 3550 §6.3.5 takes five report intervals). */
const VIEWER_SILENT_MS = 6000;
/** The time a viewer has after the answer to connect and send its first report. */
const CONNECT_GRACE_MS = 10_000;

export class MediaNotForWebRtcError extends Error {}

/** Tracks and data channels not yet closed (see keepUntilClosed). */
const open = new Set<Track | DataChannel>();

/**
 * node-datachannel forgets a track's or data channel's native wrapper only once its "closed"
 * callback has run; one collected as garbage before that stays on its list, and cleanup() (when
 * the service stops) closes it again from freed memory, which crashes the process. So each is
 * held here until it has closed, and gets its one "closed" callback here.
 */
export function keepUntilClosed(channel: Track | DataChannel, onClosed?: () => void): void {
  open.add(channel);
  channel.onClosed(() => {
    open.delete(channel);
    onClosed?.();
  });
}

export interface SessionMedia {
  camera: string;
  /** The camera's live fMP4 (streams.live): init, the current GOP, then each new fragment. */
  feed: Readable;
  /** The camera's own audio codec (pcm_alaw, aac, ...), null: none. */
  cameraAudio: string | null;
  /** The camera's shared sound encoder for a codec (one per camera and codec). */
  audioFeed: (codec: AudioCodec) => AudioFeed;
}

export interface SessionOptions {
  /** The camera it sends; none for a remote session that only tunnels the API. */
  media: SessionMedia | null;
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

export class ViewerSession {
  readonly id = randomBytes(16).toString('base64url');
  readonly startedAt = new Date().toISOString();
  framesSent = 0;
  /** Media bytes handed to the tracks (node-datachannel's own count is of data channels only). */
  bytesSent = 0;
  private readonly pc: PeerConnection;
  private video: Track | undefined;
  private config: RtpPacketizationConfig | undefined;
  private init: Buffer | undefined;
  private timescale = VIDEO_CLOCK;
  private parameterSets: Buffer = Buffer.alloc(0);
  /** The video samples since the newest keyframe, held until the track opens. */
  private held: Array<{ sample: Sample; keyframe: boolean }> = [];
  /** A random start for the RTP clock (RFC 3550 §5.1). */
  private readonly clockBase = randomInt(2 ** 31);
  private closed = false;
  private lostTimer: NodeJS.Timeout | undefined;
  private liveness: NodeJS.Timeout | undefined;
  /** When the viewer was last heard (its RTCP). */
  private heardAt = 0;
  private readonly initSeen: Promise<Buffer>;
  private audio: { track: Track; feed: AudioFeed; unlisten: () => void } | undefined;

  constructor(private readonly options: SessionOptions) {
    this.pc = new PeerConnection(`viewer-${this.id.slice(0, 8)}`, options.rtc);
    this.pc.onStateChange((state) => this.onState(state));
    this.pc.onDataChannel((channel) => {
      keepUntilClosed(channel);
      if (options.onDataChannel) options.onDataChannel(channel, this);
      else channel.close();
    });
    let initSeen!: (init: Buffer) => void;
    this.initSeen = new Promise((resolve) => (initSeen = resolve));
    const reader = new FragmentReader({
      init: (init) => {
        this.onInit(init);
        initSeen(init);
      },
      fragment: (moof, mdat, keyframe, track) => {
        if (track === 'video') this.onVideo(moof, mdat, keyframe);
        else if (track === 'audio') this.audio?.feed.pushFragment(moof, mdat);
      },
    });
    const feed = options.media?.feed;
    feed?.on('data', (chunk: Buffer) => reader.push(chunk));
    feed?.once('end', () => this.close());
    feed?.once('error', () => this.close());
  }

  get camera(): string | null {
    return this.options.media?.camera ?? null;
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
   * The answer to the viewer's offer, with the box's candidates in it (all of them: a WHEP client
   * need not wait for trickled ones). Waits for the camera's init segment to know its codec.
   */
  async answer(offer: string, timeoutMs: number): Promise<{ sdp: string; video: string | null; audio: string | null }> {
    const media = parseOffer(offer);
    const sent = this.options.media ? await this.addMedia(media, timeoutMs) : { video: null, audio: null };
    if (!this.options.media && !media.some((m) => m.kind === 'application'))
      throw new BadOfferError('the offer has no data channel (m=application) and names no camera');
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
    if (this.pc.gatheringState() !== 'complete') await this.within(gathered, timeoutMs, 'ICE gathering did not end');
    const local = this.pc.localDescription();
    if (!local) throw new Error('no local description was made');
    return { sdp: local.sdp, ...sent };
  }

  /** The camera's video track (and its sound), for the offer's sections. */
  private async addMedia(media: OfferedMedia[], timeoutMs: number): Promise<{ video: string; audio: string | null }> {
    const camera = this.options.media!.camera;
    const wanted = receiving(media, 'video');
    if (!wanted) throw new BadOfferError('the offer has no video section the box can send to (recvonly or sendrecv)');
    const init = await this.within(this.initSeen, timeoutMs, 'the camera sent no picture');
    const video = tracksOf(init).find((t) => t.kind === 'video');
    if (!video?.codec.startsWith('avc1') && !video?.codec.startsWith('avc3'))
      throw new MediaNotForWebRtcError(
        `the camera sends ${video?.codec ?? 'no video'}; WebRTC here carries H.264 only (use live view over MSE)`,
      );
    // Frames out of order (B-frames) are shown out of order by WebRTC players, which do not reorder.
    if (this.held.some(({ sample }) => sample.cts !== 0))
      throw new MediaNotForWebRtcError('the camera sends B-frames, which WebRTC players cannot reorder (use MSE)');
    const profileIdc = this.parameterSets.length > 5 ? this.parameterSets[5] : undefined;
    const codec = pickH264(wanted, profileIdc);
    if (!codec) throw new MediaNotForWebRtcError('the viewer offers no H.264 with packetization-mode=1');

    const ssrc = randomInt(1, 2 ** 32 - 1);
    const cname = `fogedge-${camera}`;
    const description = new Video(wanted.mid, 'SendOnly');
    const fmtp = Object.entries(codec.fmtp)
      .map(([k, v]) => `${k}=${v}`)
      .join(';');
    description.addH264Codec(codec.payloadType, fmtp || undefined);
    description.addSSRC(ssrc, cname, cname, `${cname}-video`);
    const track = this.pc.addTrack(description);
    const config = new RtpPacketizationConfig(ssrc, cname, codec.payloadType, VIDEO_CLOCK);
    const packetizer = new H264RtpPacketizer('Length', config);
    packetizer.addToChain(new RtcpSrReporter(config));
    packetizer.addToChain(new RtcpNackResponder());
    track.setMediaHandler(packetizer);
    keepUntilClosed(track);
    track.onOpen(() => this.flushHeld());
    track.onMessage(() => this.heard());
    this.video = track;
    this.config = config;

    const audio = this.addAudio(media, init);
    return { video: `H264/${codec.payloadType}`, audio };
  }

  /**
   * The camera's sound, when it has some and the viewer takes it: G.711 as the camera sent it
   * (PCMA or PCMU), otherwise Opus. Returns what it sends ("PCMA/8" ...) or null.
   */
  private addAudio(media: OfferedMedia[], init: Buffer): string | null {
    const wanted = receiving(media, 'audio');
    const { camera, cameraAudio: own, audioFeed } = this.options.media!;
    if (!wanted || !tracksOf(init).some((t) => t.kind === 'audio')) return null;
    const preferred: AudioCodec[] =
      own === 'pcm_alaw' ? ['pcma', 'opus'] : own === 'pcm_mulaw' ? ['pcmu', 'opus'] : ['opus'];
    let chosen: { codec: AudioCodec; payloadType: number } | undefined;
    for (const codec of preferred) {
      const offered = pickAudio(wanted, codec);
      if (offered) {
        chosen = { codec, payloadType: offered.payloadType };
        break;
      }
    }
    if (!chosen) return null;
    const { codec, payloadType } = chosen;
    const ssrc = randomInt(1, 2 ** 32 - 1);
    const cname = `fogedge-${camera}`;
    const description = new Audio(wanted.mid, 'SendOnly');
    if (codec === 'opus') description.addOpusCodec(payloadType);
    else description.addAudioCodec(payloadType, codec.toUpperCase());
    description.addSSRC(ssrc, cname, cname, `${cname}-audio`);
    const track = this.pc.addTrack(description);
    const config = new RtpPacketizationConfig(ssrc, cname, payloadType, CLOCK_RATE[codec]);
    const packetizer = new RtpPacketizer(config);
    packetizer.addToChain(new RtcpSrReporter(config));
    track.setMediaHandler(packetizer);
    keepUntilClosed(track);
    track.onMessage(() => this.heard());
    const feed = audioFeed(codec);
    feed.pushInit(init);
    let timestamp = randomInt(2 ** 31);
    const onPacket = (packet: Buffer) => {
      if (!track.isOpen()) return;
      timestamp = (timestamp + PACKET_SAMPLES[codec]) % 2 ** 32;
      config.timestamp = timestamp;
      try {
        track.sendMessageBinary(packet);
        this.bytesSent += packet.length;
      } catch {
        // closed under us: the session's close follows
      }
    };
    feed.on('packet', onPacket);
    feed.listen(true);
    this.audio = {
      track,
      feed,
      unlisten: () => {
        feed.off('packet', onPacket);
        feed.listen(false);
      },
    };
    return `${codec === 'opus' ? 'opus' : codec.toUpperCase()}/${payloadType}`;
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
    this.audio?.unlisten();
    this.options.media?.feed.destroy();
    try {
      this.video?.close();
      this.audio?.track.close();
      this.pc.close();
    } catch {
      // already closed by the library
    }
    this.options.onClose(this);
  }

  private onState(state: string): void {
    clearTimeout(this.lostTimer);
    if (state === 'closed' || state === 'failed') this.close();
    else if (state === 'disconnected') this.lostTimer = setTimeout(() => this.close(), DISCONNECTED_GRACE_MS);
  }

  private onInit(init: Buffer): void {
    this.init = init;
    this.audio?.feed.pushInit(init);
    const video = tracksOf(init).find((t) => t.kind === 'video');
    this.timescale = video?.timescale ?? VIDEO_CLOCK;
    // SPS and PPS, each after its 4-byte length, as the samples' NAL units are.
    this.parameterSets = Buffer.concat(
      avcParameterSets(init).flatMap((unit) => {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(unit.length);
        return [length, unit];
      }),
    );
  }

  private onVideo(moof: Buffer, mdat: Buffer, keyframe: boolean): void {
    const samples = samplesOf(moof, mdat, this.init);
    if (!this.video?.isOpen()) {
      if (keyframe) this.held = [];
      if (keyframe || this.held.length)
        this.held.push(...samples.map((sample, i) => ({ sample, keyframe: keyframe && i === 0 })));
      return;
    }
    samples.forEach((sample, i) => this.send(sample, keyframe && i === 0));
  }

  private flushHeld(): void {
    const held = this.held;
    this.held = [];
    for (const { sample, keyframe } of held) this.send(sample, keyframe);
  }

  private send(sample: Sample, keyframe: boolean): void {
    const track = this.video;
    if (!track || !this.config || this.closed) return;
    // Presentation time on the 90 kHz clock; it only goes forward (the feed's clock never goes back).
    const pts = sample.dts + sample.cts;
    this.config.timestamp = (this.clockBase + Math.round((pts * VIDEO_CLOCK) / this.timescale)) % 2 ** 32;
    const data = keyframe ? Buffer.concat([this.parameterSets, sample.data]) : sample.data;
    try {
      track.sendMessageBinary(data);
      this.framesSent++;
      this.bytesSent += data.length;
    } catch {
      this.close(); // the track closed under us
    }
  }

  private within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}
