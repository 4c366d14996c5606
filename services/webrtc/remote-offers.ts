// Offers from browsers away from home, relayed by the operator's broker (the ADMP uplink). The
// operator carries them but must not be able to make or replay one: each names this box, carries
// a fresh id and time, and is signed with the key of a browser paired with the box (or, to pair,
// names an open invitation, which only opens the box's encrypted channel for the pairing itself).
import { z } from 'zod';
import { CameraId } from '../cameras/cameras.schemas.ts';
import { RemoteOfferId } from './webrtc.schemas.ts';

/** How far an offer's time may be from the box's clock (phones' clocks drift), ms. */
export const OFFER_SKEW_MS = 60_000;
/** Offer ids remembered (they must not come twice within the skew either side). */
const REMEMBERED_IDS = 20_000;

const HexId = z.string().regex(/^[a-f0-9]{16}$/);

export const RemoteOffer = z
  .strictObject({
    v: z.literal(1),
    /** Unique per offer; the answer goes to <topicRoot>/<boxId>/remote/answer/<id>. */
    id: RemoteOfferId,
    /** When the browser made it, ms since 1970. */
    at: z.number().int().positive(),
    /** The box it is for: an offer for one box is no good at another. */
    box: z.string().min(1).max(63),
    /** The paired browser that signed it... */
    browser: HexId.optional(),
    signature: z.string().max(200).optional(),
    /** ...or the invitation it pairs with. */
    invitation: HexId.optional(),
    /** The camera whose video and sound the session carries beside the tunnel; none: tunnel only. */
    camera: CameraId.optional(),
    stream: z.enum(['main', 'sub']).default('main'),
    sdp: z
      .string()
      .min(1)
      .max(64 * 1024),
  })
  .refine((o) => Boolean(o.browser) !== Boolean(o.invitation), {
    message: 'an offer names a paired browser or an invitation, not both',
    path: ['browser'],
  })
  .refine((o) => !o.browser || Boolean(o.signature), {
    message: 'a paired browser signs its offer',
    path: ['signature'],
  })
  .refine((o) => !o.invitation || !o.camera, { message: 'a pairing offer carries no camera', path: ['camera'] });
export type RemoteOffer = z.output<typeof RemoteOffer>;

export class OfferRefused extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Offers too old, from the future, or seen before. */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  check(offer: Pick<RemoteOffer, 'id' | 'at'>): void {
    const now = this.now();
    if (Math.abs(now - offer.at) > OFFER_SKEW_MS)
      throw new OfferRefused(
        'STALE_OFFER',
        `the offer was made ${Math.round((now - offer.at) / 1000)} s from the box's time; at most ${OFFER_SKEW_MS / 1000} s either way (check the device's clock)`,
      );
    this.forgetOld(now);
    if (this.seen.has(offer.id)) throw new OfferRefused('REPLAYED_OFFER', `offer ${offer.id} came before`);
    if (this.seen.size >= REMEMBERED_IDS)
      throw new OfferRefused('TOO_MANY_OFFERS', 'too many remote offers lately; try again in a minute');
    this.seen.set(offer.id, offer.at);
  }

  private forgetOld(now: number): void {
    // Insertion order is close to time order; an id older than the window cannot pass the time check again.
    for (const [id, at] of this.seen) {
      if (now - at <= 2 * OFFER_SKEW_MS) break;
      this.seen.delete(id);
    }
  }
}
