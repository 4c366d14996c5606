// webrtc: live view over WebRTC (WHEP). Each session is a live viewer of the streams service
// (same permission, same caps per camera and per user) whose fMP4 feed is sent on as RTP. A
// session belongs to the user who opened it: only they (or an admin) add candidates or hang up.
import { randomUUID } from 'node:crypto';
import type { ServiceSchema } from 'moleculer';
import { cleanup, type RtcConfig } from 'node-datachannel';
import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { call, on } from '../../lib/bus.ts';
import { BadRequestError, NotFoundError, TooManyRequestsError, UnsupportedMediaError } from '../../lib/errors.ts';
import type { Config } from '../../appliance/config.ts';
import { CandidateInput, HangUpInput, OfferInput, type SessionInfo } from './webrtc.schemas.ts';
import { BadOfferError } from './sdp-offer.ts';
import { MediaNotForWebRtcError, ViewerSession } from './viewer-session.ts';
import { AudioFeed, type AudioCodec } from './audio-feed.ts';

/** "turn:user:password@host:3478" as libdatachannel takes it; STUN as it is. */
function rtcConfig(config: Config['webrtc']): RtcConfig {
  return {
    iceServers: config.iceServers,
    ...(config.ports ? { portRangeBegin: config.ports.min, portRangeEnd: config.ports.max } : {}),
  };
}

export function webrtcService(config: Config): ServiceSchema {
  const sessions = new Map<string, ViewerSession>();
  /** Offers per user and minute. */
  const offers = new RateLimiterMemory({ points: config.webrtc.offersPerMinute, duration: 60 });
  /** Each camera's sound encoders, by "camera codec", while someone listens. */
  const audioFeeds = new Map<string, AudioFeed>();
  const audioFeedOf = (camera: string) => (codec: AudioCodec) => {
    const key = `${camera} ${codec}`;
    let feed = audioFeeds.get(key);
    if (!feed) {
      const made = new AudioFeed(codec, config.video.ffmpegPath);
      made.on('idle', () => audioFeeds.delete(key));
      audioFeeds.set(key, (feed = made));
    }
    return feed;
  };
  const userOf = (ctx: Ctx<unknown>) => ctx.meta.caller?.username ?? '(box)';

  const endWhere = (which: (s: ViewerSession) => boolean) => {
    for (const session of [...sessions.values()]) if (which(session)) session.close();
  };

  /** A session of the caller's (an admin may touch any); another's reads as not found. */
  const sessionOf = (ctx: Ctx<unknown>, id: string): ViewerSession => {
    const session = sessions.get(id);
    if (!session || (session.user !== userOf(ctx) && ctx.meta.caller?.role !== 'admin'))
      throw new NotFoundError('WebRTC session', id);
    return session;
  };

  return {
    name: 'webrtc',

    actions: {
      offer: action({
        input: OfferInput,
        permission: 'live.view',
        timeout: config.webrtc.answerTimeoutMs + 5000,
        async handler(ctx) {
          if (sessions.size >= config.webrtc.maxSessions)
            throw new TooManyRequestsError(
              `The box holds ${config.webrtc.maxSessions} WebRTC sessions, the most it takes (webrtc.maxSessions)`,
              5,
              'TOO_MANY_SESSIONS',
            );
          // Each offer costs a peer connection and a feed: a user gets so many a minute.
          const user = userOf(ctx);
          await offers.consume(user).catch((refused: RateLimiterRes) => {
            throw new TooManyRequestsError(
              `"${user}" made ${config.webrtc.offersPerMinute} WebRTC offers in the last minute, the most one user may (webrtc.offersPerMinute)`,
              Math.ceil(refused.msBeforeNext / 1000),
              'TOO_MANY_OFFERS',
            );
          });
          const { camera, stream, sdp } = ctx.params;
          // A live viewer like any other: the streams service checks the caps and who may watch.
          const viewer = randomUUID();
          const feed = await call(ctx, 'streams.live', { id: camera, viewer, stream });
          const statuses = await call(ctx, 'streams.status', { id: camera }).catch(() => undefined);
          const status = statuses?.[camera];
          const session = new ViewerSession({
            camera,
            user: userOf(ctx),
            credential: ctx.meta.caller?.credential,
            feed,
            rtc: rtcConfig(config.webrtc),
            cameraAudio: status?.audio ?? null,
            audioFeed: audioFeedOf(camera),
            onClose: (s) => {
              sessions.delete(s.id);
              void call(ctx.broker, 'streams.liveStop', { viewer }).catch(() => undefined);
            },
          });
          sessions.set(session.id, session);
          try {
            const answer = await session.answer(sdp, config.webrtc.answerTimeoutMs);
            return { session: session.id, ...answer };
          } catch (err) {
            session.close();
            if (err instanceof BadOfferError) throw new BadRequestError(`Bad SDP offer: ${err.message}`, 'BAD_OFFER');
            if (err instanceof MediaNotForWebRtcError)
              throw new UnsupportedMediaError(`Camera "${camera}": ${err.message}`, 'NOT_FOR_WEBRTC');
            throw err;
          }
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
            .filter((s) => admin || s.user === userOf(ctx))
            .map((s) => ({
              session: s.id,
              camera: s.camera,
              user: s.user,
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
      ...on('account.credential.revoked', ({ credentialId }) => endWhere((s) => s.credential === credentialId)),
      ...on('camera.removed', ({ id }) => endWhere((s) => s.camera === id)),
    },

    stopped() {
      for (const session of [...sessions.values()]) session.close();
      for (const feed of audioFeeds.values()) feed.stop();
      // libdatachannel's threads (ICE, TURN refreshes) hold the process open until released.
      cleanup();
    },
  };
}
