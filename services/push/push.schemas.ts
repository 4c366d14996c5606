// What the push service offers: Web Push (RFC 8030, with RFC 8291 encryption and RFC 8292 VAPID)
// of the notifications the box decides on, to the browsers their users subscribed.
import { z } from 'zod';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

const Base64Url = z.string().regex(/^[A-Za-z0-9_-]+={0,2}$/, 'base64url');

/** A browser's PushSubscription as its toJSON() gives it. */
export const SubscribeInput = z.strictObject({
  endpoint: z.string().url().max(2048),
  expirationTime: z.number().nullable().optional(),
  keys: z.strictObject({
    /** The browser's ECDH P-256 public key (65 bytes). */
    p256dh: Base64Url.min(86).max(90),
    /** The authentication secret (16 bytes). */
    auth: Base64Url.min(21).max(24),
  }),
  /** What the user calls this browser. */
  name: z.string().trim().max(80).default('Browser'),
});
export const UnsubscribeInput = z.strictObject({ endpoint: z.string().url().max(2048) });

export const PushSubscriptionInfo = z.object({
  id: z.string(),
  name: z.string(),
  /** The push service's host only: the rest of the endpoint is the browser's secret. */
  service: z.string(),
  createdAt: z.string(),
  lastSentAt: z.string().nullable(),
});
export type PushSubscriptionInfo = z.infer<typeof PushSubscriptionInfo>;

/** A notification decided for a user (by the MQTT service's rules), for every channel that carries them. */
export interface UserNotification {
  username: string;
  title: string;
  message?: string;
  camera?: string;
  /** The event whose picture goes with it. */
  event?: string;
  review?: string;
  /** A picture (JPEG) when no event's goes with it. */
  snapshotBase64?: string;
}

declare module '../../lib/bus.ts' {
  interface Events {
    /** A user is to be told something (a review item, an automation's message). */
    'user.notified': UserNotification;
  }
  interface Actions {
    /** The box's VAPID public key, for PushManager.subscribe's applicationServerKey. */
    'push.key': { input: Record<string, never>; answer: { publicKey: string } };
    'push.subscribe': { input: z.input<typeof SubscribeInput>; answer: PushSubscriptionInfo };
    'push.unsubscribe': { input: z.input<typeof UnsubscribeInput>; answer: { removed: boolean } };
    /** The caller's subscriptions. */
    'push.subscriptions': { input: Record<string, never>; answer: PushSubscriptionInfo[] };
  }
}
