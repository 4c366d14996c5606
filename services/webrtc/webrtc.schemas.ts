// What the webrtc service offers: WHEP sessions (RFC 9725) for live view. A viewer offers SDP,
// the box answers with the camera's H.264 (and its sound) as they are; candidates may trickle in
// later; either side hangs up.
import { z } from 'zod';
import { CameraId } from '../cameras/cameras.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const SessionId = z
  .string()
  .regex(/^[\w-]{16,64}$/)
  .describe('one WebRTC session, made by the box');

export const OfferInput = z.strictObject({
  camera: CameraId,
  stream: z.enum(['main', 'sub']).default('main'),
  /** The viewer's SDP offer (application/sdp). */
  sdp: z
    .string()
    .min(1)
    .max(64 * 1024),
});
export const CandidateInput = z.strictObject({
  session: SessionId,
  /** An SDP fragment (application/trickle-ice-sdpfrag, RFC 8840): a=mid and a=candidate lines. */
  fragment: z.string().max(16 * 1024),
});
export const HangUpInput = z.strictObject({ session: SessionId });

/** A slot of a session: the mid of the video section it sends on. */
export const SlotMid = z
  .string()
  .regex(/^[\w-]{1,32}$/, 'an SDP mid: 1-32 letters, digits, _ or -')
  .describe("the mid of the slot's video section in the viewer's offer");

/** One more slot on a session: the viewer's new offer, with the mids of the sections for it. */
export const AddSlotInput = z.strictObject({
  session: SessionId,
  sdp: z
    .string()
    .min(1)
    .max(64 * 1024),
  video: SlotMid,
  audio: SlotMid.optional(),
});
export const HandSlotInput = z.strictObject({
  session: SessionId,
  mid: SlotMid,
  camera: CameraId,
  stream: z.enum(['main', 'sub']).default('main'),
});
export const EmptySlotInput = z.strictObject({ session: SessionId, mid: SlotMid });

export const SlotAnswer = z.object({
  video: z.string().describe('the video codec and payload type it sends ("H264/102")'),
  audio: z.string().nullable().describe('the sound codec it sends, or null: none'),
});
export const AddSlotAnswer = z.object({ sdp: z.string().describe("the box's answer to the offer") });

export const OfferAnswer = z.object({
  session: SessionId,
  sdp: z.string(),
  /** What the session sends: video codec and payload type, audio codec or none. */
  video: z.string(),
  audio: z.string().nullable(),
});
export type OfferAnswer = z.infer<typeof OfferAnswer>;

/** A remote offer's id: unique per offer, and the last level of its answer's topic. */
export const RemoteOfferId = z.string().regex(/^[\w-]{16,64}$/, '16-64 letters, digits, _ or -');

/** The id of a relayed offer, read before anything else is trusted of it: where its answer goes. */
export function remoteOfferIdOf(message: string): string | null {
  try {
    const id = RemoteOfferId.safeParse((JSON.parse(message) as { id?: unknown } | null)?.id);
    return id.success ? id.data : null;
  } catch {
    return null;
  }
}

/** Internal: a remote offer as it came through the operator, and the TURN servers for its session. */
export const RemoteOfferInput = z.strictObject({
  /** The box's id at its operator (an offer names the box it is for). */
  box: z.string(),
  /** The offer's JSON as relayed: checked here, not trusted. */
  message: z.string().max(80 * 1024),
  iceServers: z
    .array(
      z.strictObject({
        hostname: z.string(),
        port: z.number().int(),
        username: z.string().optional(),
        password: z.string().optional(),
        relayType: z.enum(['TurnUdp', 'TurnTcp', 'TurnTls']).optional(),
      }),
    )
    .default([]),
});

/** What the browser reads on its answer topic. */
export type RemoteReply =
  | { ok: true; session: string; sdp: string; video: string | null; audio: string | null; tunnel: boolean }
  | { ok: false; error: { type: string; message: string } };

export const SessionInfo = z.object({
  session: SessionId,
  /** The first camera it sends (a WHEP viewer's only one), or null. */
  camera: CameraId.nullable(),
  /** Every camera it sends now (a remote session: one slot each). */
  cameras: z.array(CameraId),
  user: z.string(),
  /** Signalled through the operator (from away), not by WHEP on the LAN. */
  remote: z.boolean(),
  state: z.string(),
  startedAt: z.string(),
  framesSent: z.number(),
  bytesSent: z.number(),
});
export type SessionInfo = z.infer<typeof SessionInfo>;

declare module '../../lib/bus.ts' {
  interface Actions {
    /** A viewer's offer: the session and the box's answer, once its candidates are gathered. */
    'webrtc.offer': { input: z.input<typeof OfferInput>; answer: OfferAnswer };
    /** More of the viewer's ICE candidates (trickle ICE). */
    'webrtc.candidate': { input: z.input<typeof CandidateInput>; answer: { added: number } };
    /** One more slot on a session, by a new offer from its viewer (through its tunnel, from away). */
    'webrtc.addSlot': { input: z.input<typeof AddSlotInput>; answer: z.infer<typeof AddSlotAnswer> };
    /** Another camera (or stream) on a session's slot, from its newest keyframe, no offer needed. */
    'webrtc.handSlot': { input: z.input<typeof HandSlotInput>; answer: z.infer<typeof SlotAnswer> };
    /** A slot stops sending; it waits for the next camera. */
    'webrtc.emptySlot': { input: z.input<typeof EmptySlotInput>; answer: { emptied: boolean } };
    /** The viewer hangs up. */
    'webrtc.hangUp': { input: z.input<typeof HangUpInput>; answer: { closed: boolean } };
    /** Internal: a remote offer relayed by the operator; the reply goes back the same way. */
    'webrtc.remoteOffer': {
      input: z.input<typeof RemoteOfferInput>;
      answer: { id: string | null; reply: RemoteReply };
    };
    /** The box's DTLS certificate fingerprint, which paired browsers pin. */
    'webrtc.identity': { input: Record<string, never>; answer: { fingerprint: string } };
    /** The sessions open now (admin: all; others: their own). */
    'webrtc.sessions': { input: Record<string, never>; answer: SessionInfo[] };
  }
}
