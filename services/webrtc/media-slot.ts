// A camera's picture and sound in a WebRTC session, on a pair of tracks: a slot. A session from
// away carries a slot for each camera the app shows, beside its API tunnel, all on one peer
// connection. A slot can be handed another camera (or the other stream of the same one) with no
// new offer: its RTP clock and sequence numbers go on, and the new camera starts at its newest
// keyframe with its parameter sets in front, so the viewer's decoder takes it as a new picture.
import { randomInt } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  Audio,
  H264RtpPacketizer,
  RtcpNackResponder,
  RtcpSrReporter,
  RtpPacketizationConfig,
  RtpPacketizer,
  Video,
  type PeerConnection,
  type Track,
} from 'node-datachannel';
import { avcParameterSets, FragmentReader, samplesOf, tracksOf, type Sample } from '../../lib/media/fragmented-mp4.ts';
import { pickAudio, pickH264, type OfferedMedia } from './sdp-offer.ts';
import { CLOCK_RATE, PACKET_SAMPLES, type AudioCodec, type AudioFeed } from './audio-feed.ts';
import { keepUntilClosed } from './keep-until-closed.ts';

/** The RTP clock of video (RFC 6184). */
const VIDEO_CLOCK = 90_000;
/** What the clock moves by between the last frame of one camera and the first of the next (a frame at 30 fps). */
const SWITCH_TICKS = 3000;

export class MediaNotForWebRtcError extends Error {}

export interface SessionMedia {
  camera: string;
  /** The camera's live fMP4 (streams.live): init, the current GOP, then each new fragment. */
  feed: Readable;
  /** The camera's own audio codec (pcm_alaw, aac, ...), null: none. */
  cameraAudio: string | null;
  /** The camera's shared sound encoder for a codec (one per camera and codec). */
  audioFeed: (codec: AudioCodec) => AudioFeed;
  /** Tells the streams service this viewer has gone. */
  release: () => void;
}

/** One camera's live feed read as samples: held from the newest keyframe until a slot sends them. */
export class CameraFeed {
  init: Buffer | undefined;
  timescale = VIDEO_CLOCK;
  /** SPS and PPS, each after its 4-byte length, as the samples' NAL units are. */
  parameterSets: Buffer = Buffer.alloc(0);
  private held: Array<{ sample: Sample; keyframe: boolean }> = [];
  private sink: ((sample: Sample, keyframe: boolean) => void) | undefined;
  private sound: AudioFeed | undefined;
  private closed = false;
  private readonly initSeen: Promise<Buffer>;
  /** The first keyframe held: only samples show B-frames (a keyframe's own time offset), not the init segment. */
  private readonly keyframeSeen: Promise<void>;
  private keyframeHeld!: () => void;

  constructor(
    readonly media: SessionMedia,
    /** The camera's feed ended (the camera removed, turned off, its node gone). */
    onEnd: (feed: CameraFeed) => void,
  ) {
    let initSeen!: (init: Buffer) => void;
    this.initSeen = new Promise((resolve) => (initSeen = resolve));
    this.keyframeSeen = new Promise((resolve) => (this.keyframeHeld = resolve));
    const reader = new FragmentReader({
      init: (init) => {
        this.onInit(init);
        initSeen(init);
      },
      fragment: (moof, mdat, keyframe, track) => {
        if (track === 'video') this.onVideo(moof, mdat, keyframe);
        else if (track === 'audio') this.sound?.pushFragment(moof, mdat);
      },
    });
    media.feed.on('data', (chunk: Buffer) => reader.push(chunk));
    media.feed.once('end', () => onEnd(this));
    media.feed.once('error', () => onEnd(this));
  }

  get camera(): string {
    return this.media.camera;
  }

  get hasAudio(): boolean {
    return Boolean(this.init && tracksOf(this.init).some((t) => t.kind === 'audio'));
  }

  /** profile_idc of the camera's SPS, to answer with the viewer's payload type for it. */
  get profileIdc(): number | undefined {
    return this.parameterSets.length > 5 ? this.parameterSets[5] : undefined;
  }

  /** Waits for the camera's init segment and first keyframe; throws when its video cannot go over WebRTC. */
  async ready(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    const init = await within(this.initSeen, timeoutMs, 'the camera sent no picture');
    const video = tracksOf(init).find((t) => t.kind === 'video');
    if (!video?.codec.startsWith('avc1') && !video?.codec.startsWith('avc3'))
      throw new MediaNotForWebRtcError(
        `the camera sends ${video?.codec ?? 'no video'}; WebRTC here carries H.264 only (use live view over MSE)`,
      );
    // The init segment and the frames may come in different chunks of the feed.
    await within(this.keyframeSeen, Math.max(0, until - Date.now()), 'the camera sent no keyframe');
    // Frames out of order (B-frames) are shown out of order by WebRTC players, which do not reorder.
    if (this.held.some(({ sample }) => sample.cts !== 0))
      throw new MediaNotForWebRtcError('the camera sends B-frames, which WebRTC players cannot reorder (use MSE)');
  }

  /** From now on the samples go to the sink: the held ones first (from a keyframe), then each as it comes. */
  start(sink: (sample: Sample, keyframe: boolean) => void): void {
    this.sink = sink;
    const held = this.held;
    this.held = [];
    for (const { sample, keyframe } of held) sink(sample, keyframe);
  }

  /** The encoder whose packets the slot sends; fed this camera's sound from now on. */
  soundTo(feed: AudioFeed | undefined): void {
    this.sound = feed;
    if (feed && this.init) feed.pushInit(this.init);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sink = undefined;
    this.sound = undefined;
    this.media.feed.destroy();
    this.media.release();
  }

  private onInit(init: Buffer): void {
    this.init = init;
    this.sound?.pushInit(init);
    const video = tracksOf(init).find((t) => t.kind === 'video');
    this.timescale = video?.timescale ?? VIDEO_CLOCK;
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
    const sink = this.sink;
    if (sink) return samples.forEach((sample, i) => sink(sample, keyframe && i === 0));
    if (keyframe) this.held = [];
    if (keyframe || this.held.length)
      this.held.push(...samples.map((sample, i) => ({ sample, keyframe: keyframe && i === 0 })));
    if (keyframe) this.keyframeHeld();
  }
}

/** What a session counts of what its slots sent. */
export interface SentCounts {
  framesSent: number;
  /** Media bytes handed to the tracks (node-datachannel's own count is of data channels only). */
  bytesSent: number;
}

export class MediaSlot {
  private feed: CameraFeed | undefined;
  /** The RTP timestamp of the last frame sent, and the offset from the current feed's clock to it. */
  private lastTimestamp: number;
  private offset: number | undefined;
  private audioListening: { feed: AudioFeed; unlisten: () => void } | undefined;
  private audioTimestamp = randomInt(2 ** 31);

  private constructor(
    readonly mid: string,
    private readonly video: Track,
    private readonly videoConfig: RtpPacketizationConfig,
    /** What the slot sends, as the answer says: "H264/102", "opus/111", or null for no sound track. */
    readonly videoCodec: string,
    private readonly audio: { track: Track; config: RtpPacketizationConfig; codec: AudioCodec; name: string } | null,
    private readonly counts: SentCounts,
    private readonly onBroken: () => void,
  ) {
    // A random start for the RTP clock (RFC 3550 §5.1).
    this.lastTimestamp = randomInt(2 ** 31);
    video.onOpen(() => this.feed?.start((s, k) => this.send(s, k)));
  }

  /**
   * A slot for the viewer's sections (a video one, and a sound one if it offered it), made before
   * the offer is set so that the answer carries its tracks. The first camera chooses the payload
   * types: its own H.264 profile, its own G.711 as it is (otherwise Opus, which any sound is
   * encoded to). With none yet (a tunnel's first slot) the viewer's first H.264 and Opus.
   */
  static open(
    pc: PeerConnection,
    sections: { video: OfferedMedia; audio: OfferedMedia | undefined },
    first: CameraFeed | null,
    options: { counts: SentCounts; heard: () => void; onBroken: () => void },
  ): MediaSlot {
    const codec = pickH264(sections.video, first?.profileIdc);
    if (!codec) throw new MediaNotForWebRtcError('the viewer offers no H.264 with packetization-mode=1');
    // One name per slot (its sound and picture play in sync), unique in the session (one msid each).
    const cname = `fogedge-${sections.video.mid}`;
    const ssrc = randomInt(1, 2 ** 32 - 1);
    const description = new Video(sections.video.mid, 'SendOnly');
    const fmtp = Object.entries(codec.fmtp)
      .map(([k, v]) => `${k}=${v}`)
      .join(';');
    description.addH264Codec(codec.payloadType, fmtp || undefined);
    description.addSSRC(ssrc, cname, cname, `${cname}-video`);
    const track = pc.addTrack(description);
    const config = new RtpPacketizationConfig(ssrc, cname, codec.payloadType, VIDEO_CLOCK);
    const packetizer = new H264RtpPacketizer('Length', config);
    packetizer.addToChain(new RtcpSrReporter(config));
    packetizer.addToChain(new RtcpNackResponder());
    track.setMediaHandler(packetizer);
    keepUntilClosed(track);
    track.onMessage(() => options.heard());
    const audio = sections.audio && MediaSlot.audioTrack(pc, sections.audio, cname, first, options.heard);
    const slot = new MediaSlot(
      sections.video.mid,
      track,
      config,
      `H264/${codec.payloadType}`,
      audio ?? null,
      options.counts,
      options.onBroken,
    );
    if (first) slot.attach(first);
    return slot;
  }

  /** The sound track: the first camera's G.711 as it is when the viewer takes it, otherwise Opus. */
  private static audioTrack(
    pc: PeerConnection,
    section: OfferedMedia,
    cname: string,
    first: CameraFeed | null,
    heard: () => void,
  ) {
    if (section.direction !== 'recvonly' && section.direction !== 'sendrecv') return undefined;
    const own = first?.media.cameraAudio;
    const preferred: AudioCodec[] =
      own === 'pcm_alaw' ? ['pcma', 'opus'] : own === 'pcm_mulaw' ? ['pcmu', 'opus'] : ['opus'];
    let chosen: { codec: AudioCodec; payloadType: number } | undefined;
    for (const codec of preferred) {
      const offered = pickAudio(section, codec);
      if (offered) {
        chosen = { codec, payloadType: offered.payloadType };
        break;
      }
    }
    if (!chosen) return undefined;
    const { codec, payloadType } = chosen;
    const ssrc = randomInt(1, 2 ** 32 - 1);
    const description = new Audio(section.mid, 'SendOnly');
    if (codec === 'opus') description.addOpusCodec(payloadType);
    else description.addAudioCodec(payloadType, codec.toUpperCase());
    description.addSSRC(ssrc, cname, cname, `${cname}-audio`);
    const track = pc.addTrack(description);
    const config = new RtpPacketizationConfig(ssrc, cname, payloadType, CLOCK_RATE[codec]);
    const packetizer = new RtpPacketizer(config);
    packetizer.addToChain(new RtcpSrReporter(config));
    track.setMediaHandler(packetizer);
    keepUntilClosed(track);
    track.onMessage(() => heard());
    return { track, config, codec, name: `${codec === 'opus' ? 'opus' : codec.toUpperCase()}/${payloadType}` };
  }

  get camera(): string | null {
    return this.feed?.camera ?? null;
  }

  /** The sound it sends ("PCMA/8", "opus/111"), or null: no sound track, or a camera without sound. */
  get audioCodec(): string | null {
    return this.audio && this.feed?.hasAudio ? this.audio.name : null;
  }

  carries(feed: CameraFeed): boolean {
    return this.feed === feed;
  }

  /** Sends this camera from its newest keyframe on; the one before is let go. The feed must be ready. */
  attach(feed: CameraFeed): void {
    this.detach();
    this.feed = feed;
    this.offset = undefined;
    if (this.audio && feed.hasAudio) this.listen(feed, feed.media.audioFeed(this.audio.codec));
    if (this.video.isOpen()) feed.start((s, k) => this.send(s, k));
  }

  /** Stops sending: the tracks stay, for the next camera. */
  detach(): void {
    this.audioListening?.unlisten();
    this.audioListening = undefined;
    this.feed?.close();
    this.feed = undefined;
  }

  close(): void {
    this.detach();
    try {
      this.video.close();
      this.audio?.track.close();
    } catch {
      // already closed by the library
    }
  }

  private listen(camera: CameraFeed, sound: AudioFeed): void {
    const { track, config, codec } = this.audio!;
    camera.soundTo(sound);
    const onPacket = (packet: Buffer) => {
      if (!track.isOpen()) return;
      this.audioTimestamp = (this.audioTimestamp + PACKET_SAMPLES[codec]) % 2 ** 32;
      config.timestamp = this.audioTimestamp;
      try {
        track.sendMessageBinary(packet);
        this.counts.bytesSent += packet.length;
      } catch {
        // closed under us: the session's close follows
      }
    };
    sound.on('packet', onPacket);
    sound.listen(true);
    this.audioListening = {
      feed: sound,
      unlisten: () => {
        camera.soundTo(undefined);
        sound.off('packet', onPacket);
        sound.listen(false);
      },
    };
  }

  private send(sample: Sample, keyframe: boolean): void {
    const feed = this.feed;
    if (!feed) return;
    // Presentation time on the 90 kHz clock; it only goes forward, across cameras too.
    const ticks = Math.round(((sample.dts + sample.cts) * VIDEO_CLOCK) / feed.timescale);
    this.offset ??= this.lastTimestamp + SWITCH_TICKS - ticks;
    this.lastTimestamp = this.offset + ticks;
    this.videoConfig.timestamp = ((this.lastTimestamp % 2 ** 32) + 2 ** 32) % 2 ** 32;
    const data = keyframe ? Buffer.concat([feed.parameterSets, sample.data]) : sample.data;
    try {
      this.video.sendMessageBinary(data);
      this.counts.framesSent++;
      this.counts.bytesSent += data.length;
    } catch {
      this.onBroken(); // the track closed under us
    }
  }
}

export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
