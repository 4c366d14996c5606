// webrtc: live view over WebRTC. Each session is a live viewer of the streams service (same
// permission, same caps per camera and per user) whose fMP4 feed is sent on as RTP. A session
// belongs to the user who opened it: only they (or an admin) add candidates or hang up.
// On the LAN a session is signalled by WHEP; from away, by an offer relayed through the operator
// (remote-offers.ts), signed by a paired browser, and its data channel tunnels the box's API.
import { randomUUID } from 'node:crypto';
import type { ServiceSchema } from 'moleculer';
import { cleanup, type DataChannel, type IceServer, type RtcConfig } from 'node-datachannel';
import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible';
import { z } from 'zod';
import { action, type Caller, type Ctx } from '../../lib/actions.ts';
import { call, on } from '../../lib/bus.ts';
import { BadRequestError, NotFoundError, TooManyRequestsError, UnsupportedMediaError } from '../../lib/errors.ts';
import type { Config } from '../../appliance/config.ts';
import { tunnelEndpoint, type TunnelChannel } from '../../lib/stream-endpoints.ts';
import {
  AddSlotInput,
  CandidateInput,
  EmptySlotInput,
  HandSlotInput,
  HangUpInput,
  OfferInput,
  RemoteOfferId,
  RemoteOfferInput,
  type RemoteReply,
  type SessionInfo,
} from './webrtc.schemas.ts';
import { dtlsCertificate, type DtlsCertificate } from './dtls-certificate.ts';
import { OfferRefused, RemoteOffer, ReplayGuard } from './remote-offers.ts';
import { remoteOfferText } from '../../lib/remote-offer-text.ts';
import { BadOfferError } from './sdp-offer.ts';
import { SlotNotFoundError, ViewerSession } from './viewer-session.ts';
import { CameraFeed, MediaNotForWebRtcError } from './media-slot.ts';
import { keepUntilClosed } from './keep-until-closed.ts';
import { AudioFeed, type AudioCodec } from './audio-feed.ts';

/** The configured servers ("turn:user:password@host:3478" as libdatachannel takes it), more for a remote session, and the box's own certificate. */
function rtcConfig(config: Config['webrtc'], certificate: DtlsCertificate, more: IceServer[] = []): RtcConfig {
  return {
    iceServers: [...config.iceServers, ...more],
    ...(config.ports ? { portRangeBegin: config.ports.min, portRangeEnd: config.ports.max } : {}),
    certificatePemFile: certificate.certFile,
    keyPemFile: certificate.keyFile,
  };
}

/** A data channel as the gateway's tunnel takes it; every message is a sign of the viewer's life. */
function tunnelChannel(channel: DataChannel, heard: () => void): TunnelChannel {
  const listeners: Array<(m: string | Buffer) => void> = [];
  const closers: Array<() => void> = [];
  channel.onMessage((m) => {
    heard();
    const message = typeof m === 'string' ? m : Buffer.from(m as ArrayBuffer);
    for (const l of listeners) l(message);
  });
  keepUntilClosed(channel, () => closers.forEach((c) => c()));
  return {
    send: (m) => {
      try {
        if (typeof m === 'string') channel.sendMessage(m);
        else channel.sendMessageBinary(m);
      } catch {
        // closed under us: onClosed follows
      }
    },
    buffered: () => (channel.isOpen() ? channel.bufferedAmount() : 0),
    onMessage: (l) => void listeners.push(l),
    onClose: (l) => void closers.push(l),
    close: () => channel.close(),
  };
}

export function webrtcService(config: Config): ServiceSchema {
  const sessions = new Map<string, ViewerSession>();
  /** Offers per user (or, to pair, per invitation) and minute. */
  const offers = new RateLimiterMemory({ points: config.webrtc.offersPerMinute, duration: 60 });
  const replays = new ReplayGuard();
  /**
   * The TURN servers of each paired browser's last remote session: its players' own sessions
   * (WHEP through the tunnel) need the same relay to reach it.
   */
  const remoteIce = new Map<string, IceServer[]>();
  let certificate: DtlsCertificate;
  /** Refused remote offers since the last line about them in the log (one line a minute at most). */
  const refusedLately = new Map<string, number>();
  let refusedLogged = 0;
  /** Each camera's sound encoders, by "camera codec", while someone listens. */
  const audioFeeds = new Map<string, AudioFeed>();
  const audioFeedOf = (camera: string) => (codec: AudioCodec) => {
    const key = `${camera} ${codec}`;
    let feed = audioFeeds.get(key);
    if (!feed) {
      const made = new AudioFeed(camera, codec, config.video.ffmpegPath);
      made.on('idle', () => audioFeeds.delete(key));
      audioFeeds.set(key, (feed = made));
    }
    return feed;
  };
  const userOf = (caller: Caller | undefined) => caller?.username ?? '(box)';

  const endWhere = (which: (s: ViewerSession) => boolean) => {
    for (const session of [...sessions.values()]) if (which(session)) session.close();
  };

  /** A session of the caller's (an admin may touch any); another's reads as not found. */
  const sessionOf = (ctx: Ctx<unknown>, id: string): ViewerSession => {
    const session = sessions.get(id);
    if (!session || (session.user !== userOf(ctx.meta.caller) && ctx.meta.caller?.role !== 'admin'))
      throw new NotFoundError('WebRTC session', id);
    return session;
  };

  /** Each offer costs a peer connection and a feed: so many a minute per user (or invitation). */
  const countOffer = async (key: string, who: string) =>
    offers.consume(key).catch((refused: RateLimiterRes) => {
      throw new TooManyRequestsError(
        `${who} made ${config.webrtc.offersPerMinute} WebRTC offers in the last minute, the most one may (webrtc.offersPerMinute)`,
        Math.ceil(refused.msBeforeNext / 1000),
        'TOO_MANY_OFFERS',
      );
    });

  /** A camera's live feed for a session, as the caller may watch it (the streams service checks the caps and who may). */
  async function feedFor(
    ctx: Ctx<unknown>,
    caller: Caller | undefined,
    camera: string,
    stream: 'main' | 'sub',
    ended: (feed: CameraFeed) => void,
  ): Promise<CameraFeed> {
    const meta = { meta: { caller } };
    const viewer = randomUUID();
    const feed = await call(ctx.broker, 'streams.live', { id: camera, viewer, stream }, meta);
    const statuses = await call(ctx.broker, 'streams.status', { id: camera }, meta).catch(() => undefined);
    return new CameraFeed(
      {
        camera,
        feed,
        cameraAudio: statuses?.[camera]?.audio ?? null,
        audioFeed: audioFeedOf(camera),
        release: () => void call(ctx.broker, 'streams.liveStop', { viewer }).catch(() => undefined),
      },
      ended,
    );
  }

  /** What a session's refusals mean to the caller. */
  function refusal(err: unknown, camera: string | undefined): unknown {
    if (err instanceof BadOfferError) return new BadRequestError(`Bad SDP offer: ${err.message}`, 'BAD_OFFER');
    if (err instanceof MediaNotForWebRtcError)
      return new UnsupportedMediaError(`Camera "${camera}": ${err.message}`, 'NOT_FOR_WEBRTC');
    if (err instanceof SlotNotFoundError) return new NotFoundError('WebRTC slot', err.message);
    return err;
  }

  /** A session for an offer: the camera's media (a live viewer like any other) and/or data channels. */
  async function open(
    ctx: Ctx<unknown>,
    o: {
      caller: Caller | undefined;
      camera: string | undefined;
      stream: 'main' | 'sub';
      sdp: string;
      remote: boolean;
      iceServers?: IceServer[];
      onDataChannel?: (channel: DataChannel, session: ViewerSession) => void;
    },
  ) {
    if (sessions.size >= config.webrtc.maxSessions)
      throw new TooManyRequestsError(
        `The box holds ${config.webrtc.maxSessions} WebRTC sessions, the most it takes (webrtc.maxSessions)`,
        5,
        'TOO_MANY_SESSIONS',
      );
    let session: ViewerSession | undefined;
    const camera = o.camera
      ? await feedFor(ctx, o.caller, o.camera, o.stream, (feed) => session?.feedEnded(feed))
      : null;
    session = new ViewerSession({
      user: userOf(o.caller),
      credential: o.caller?.credential,
      remote: o.remote,
      rtc: rtcConfig(config.webrtc, certificate, o.iceServers),
      ...(o.onDataChannel ? { onDataChannel: o.onDataChannel } : {}),
      onClose: (s) => sessions.delete(s.id),
    });
    sessions.set(session.id, session);
    try {
      const answer = await session.answer(o.sdp, config.webrtc.answerTimeoutMs, camera);
      return { session: session.id, ...answer };
    } catch (err) {
      camera?.close();
      session.close();
      throw refusal(err, o.camera);
    }
  }

  /** A remote offer's caller: the paired browser's user, or (to pair) nobody yet. */
  async function remoteCaller(ctx: Ctx<unknown>, offer: RemoteOffer): Promise<Caller | undefined> {
    if (offer.invitation) {
      const { open: isOpen } = await call(ctx.broker, 'accounts.invitationOpen', { invitation: offer.invitation });
      if (!isOpen) throw new OfferRefused('BAD_INVITATION', 'the invitation is unknown, used or expired');
      await countOffer(`invitation ${offer.invitation}`, 'This invitation');
      return undefined;
    }
    const signer = await call(ctx.broker, 'accounts.remoteSigner', {
      browser: offer.browser!,
      signed: remoteOfferText(offer),
      signature: offer.signature!,
    });
    await countOffer(signer.username, `"${signer.username}"`);
    return { username: signer.username, role: signer.role, ip: 'remote', via: 'remote', credential: signer.browser };
  }

  /** The pairing channel of an invitation's session: the secret and the browser's key, once. */
  function servePairing(ctx: Ctx<unknown>, channel: DataChannel, session: ViewerSession, invitation: string) {
    let done = false;
    channel.onMessage((raw) => {
      session.heard();
      if (done || typeof raw !== 'string') return;
      done = true;
      let pairing: { secret?: unknown; publicKey?: unknown; name?: unknown } = {};
      try {
        pairing = (JSON.parse(raw) as { pair?: typeof pairing }).pair ?? {};
      } catch {
        // answered below as a bad pairing
      }
      void call(ctx.broker, 'accounts.pairBrowser', {
        invitation,
        secret: String(pairing.secret ?? ''),
        publicKey: String(pairing.publicKey ?? ''),
        name: String(pairing.name ?? ''),
      })
        .then((browser) => channel.sendMessage(JSON.stringify({ paired: browser })))
        .catch((err: Error & { type?: string }) =>
          channel.sendMessage(JSON.stringify({ error: { type: err.type ?? 'ERROR', message: err.message } })),
        )
        .finally(() => setTimeout(() => session.close(), 1000).unref());
    });
  }

  function noteRefused(type: string, log: { warn(m: string): void }) {
    refusedLately.set(type, (refusedLately.get(type) ?? 0) + 1);
    if (Date.now() - refusedLogged < 60_000) return;
    refusedLogged = Date.now();
    log.warn(`remote offers refused lately: ${[...refusedLately].map(([t, n]) => `${n} ${t}`).join(', ')}`);
    refusedLately.clear();
  }

  return {
    name: 'webrtc',

    actions: {
      offer: action({
        input: OfferInput,
        permission: 'live.view',
        timeout: config.webrtc.answerTimeoutMs + 5000,
        async handler(ctx) {
          const caller = ctx.meta.caller;
          await countOffer(userOf(caller), `"${userOf(caller)}"`);
          const { camera, stream, sdp } = ctx.params;
          const away = caller?.via === 'remote' && caller.credential ? remoteIce.get(caller.credential) : undefined;
          const answer = await open(ctx, {
            caller,
            camera,
            stream,
            sdp,
            remote: Boolean(away),
            iceServers: away ?? [],
          });
          return { ...answer, video: answer.video ?? '' };
        },
      }),

      /**
       * Internal (the ADMP uplink): an offer a browser away from home sent through the operator.
       * Never throws: what is wrong goes back in the reply, for the browser to show.
       */
      remoteOffer: action({
        input: RemoteOfferInput,
        timeout: config.webrtc.answerTimeoutMs + 5000,
        async handler(ctx): Promise<{ id: string | null; reply: RemoteReply }> {
          let raw: unknown;
          try {
            raw = JSON.parse(ctx.params.message);
          } catch {
            raw = undefined;
          }
          const replyId = RemoteOfferId.safeParse((raw as { id?: unknown } | null)?.id).data ?? null;
          const refuse = (type: string, message: string) => {
            noteRefused(type, ctx.service!.logger);
            return { id: replyId, reply: { ok: false as const, error: { type, message } } };
          };
          if (raw === undefined) return refuse('BAD_OFFER', 'the offer is not JSON');
          const parsed = RemoteOffer.safeParse(raw);
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            return refuse('BAD_OFFER', `${issue.path.join('.') || 'offer'}: ${issue.message}`);
          }
          const offer: RemoteOffer = parsed.data;
          try {
            if (offer.box !== ctx.params.box)
              throw new OfferRefused('WRONG_BOX', `the offer is for box "${offer.box}"`);
            replays.check(offer);
            const remote = [...sessions.values()].filter((s) => s.remote).length;
            if (remote >= config.webrtc.maxRemoteSessions)
              throw new OfferRefused(
                'TOO_MANY_SESSIONS',
                `the box holds ${config.webrtc.maxRemoteSessions} remote sessions, the most it takes (webrtc.maxRemoteSessions)`,
              );
            const caller = await remoteCaller(ctx, offer);
            if (caller?.credential) {
              remoteIce.delete(caller.credential); // newest last: the map stays in order of use
              remoteIce.set(caller.credential, ctx.params.iceServers);
              if (remoteIce.size > 1000) remoteIce.delete(remoteIce.keys().next().value!);
            }
            const tunnel = tunnelEndpoint(ctx.broker);
            const answer = await open(ctx, {
              caller,
              camera: offer.camera,
              stream: offer.stream,
              sdp: offer.sdp,
              remote: true,
              iceServers: ctx.params.iceServers,
              onDataChannel: (channel, session) => {
                if (offer.invitation && channel.getLabel() === 'pair')
                  servePairing(ctx, channel, session, offer.invitation);
                else if (caller && channel.getLabel() === 'api' && tunnel)
                  tunnel.accept(
                    tunnelChannel(channel, () => session.heard()),
                    caller,
                  );
                else channel.close();
              },
            });
            return {
              id: offer.id,
              reply: {
                ok: true as const,
                session: answer.session,
                sdp: answer.sdp,
                video: answer.video,
                audio: answer.audio,
                tunnel: Boolean(caller && tunnel),
              },
            };
          } catch (err) {
            const e = err as Error & { type?: string };
            return refuse(err instanceof OfferRefused ? err.type : (e.type ?? 'ERROR'), e.message);
          }
        },
      }),

      /** What a paired browser pins: the box's DTLS certificate. */
      identity: action({
        input: z.strictObject({}),
        permission: 'live.view',
        handler: () => ({ fingerprint: certificate.fingerprint }),
      }),

      addSlot: action({
        input: AddSlotInput,
        permission: 'live.view',
        async handler(ctx) {
          const { session, sdp, video, audio } = ctx.params;
          try {
            return await sessionOf(ctx, session).addSlot(sdp, { video, audio });
          } catch (err) {
            throw refusal(err, undefined);
          }
        },
      }),
      handSlot: action({
        input: HandSlotInput,
        permission: 'live.view',
        timeout: config.webrtc.answerTimeoutMs + 5000,
        async handler(ctx) {
          const { session: id, mid, camera, stream } = ctx.params;
          const session = sessionOf(ctx, id);
          const feed = await feedFor(ctx, ctx.meta.caller, camera, stream, (f) => session.feedEnded(f));
          try {
            return await session.handSlot(mid, feed, config.webrtc.answerTimeoutMs);
          } catch (err) {
            feed.close();
            throw refusal(err, camera);
          }
        },
      }),
      emptySlot: action({
        input: EmptySlotInput,
        permission: 'live.view',
        handler(ctx) {
          try {
            sessionOf(ctx, ctx.params.session).emptySlot(ctx.params.mid);
          } catch (err) {
            throw refusal(err, undefined);
          }
          return { emptied: true };
        },
      }),

      candidate: action({
        input: CandidateInput,
        permission: 'live.view',
        handler(ctx) {
          const session = sessionOf(ctx, ctx.params.session);
          try {
            return { added: session.addCandidates(ctx.params.fragment) };
          } catch (err) {
            throw new BadRequestError(`Bad ICE candidate: ${(err as Error).message}`, 'BAD_CANDIDATE');
          }
        },
      }),
      hangUp: action({
        input: HangUpInput,
        permission: 'live.view',
        handler(ctx) {
          sessionOf(ctx, ctx.params.session).close();
          return { closed: true };
        },
      }),
      sessions: action({
        input: z.strictObject({}),
        permission: 'live.view',
        handler(ctx): SessionInfo[] {
          const admin = ctx.meta.caller?.role === 'admin' || !ctx.meta.caller;
          return [...sessions.values()]
            .filter((s) => admin || s.user === userOf(ctx.meta.caller))
            .map((s) => ({
              session: s.id,
              camera: s.cameras[0] ?? null,
              cameras: s.cameras,
              user: s.user,
              remote: s.remote,
              state: s.state,
              startedAt: s.startedAt,
              framesSent: s.framesSent,
              bytesSent: s.bytesSent,
            }));
        },
      }),
    },

    events: {
      // Whoever can no longer watch stops watching at once.
      ...on('account.deleted', ({ username }) => endWhere((s) => s.user === username)),
      ...on('account.updated', ({ username }) => endWhere((s) => s.user === username)),
      ...on('account.password.changed', ({ username }) => endWhere((s) => s.user === username)),
      ...on('account.credential.revoked', ({ credentialId }) => {
        remoteIce.delete(credentialId);
        endWhere((s) => s.credential === credentialId);
      }),
      ...on('camera.removed', ({ id }) => {
        for (const session of [...sessions.values()]) session.dropCamera(id);
      }),
    },

    async started() {
      certificate = await dtlsCertificate(config);
    },

    stopped() {
      for (const session of [...sessions.values()]) session.close();
      for (const feed of audioFeeds.values()) feed.stop();
      // libdatachannel's threads (ICE, TURN refreshes) hold the process open until released.
      cleanup();
    },
  };
}
