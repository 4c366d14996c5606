// push: Web Push to the browsers users subscribed (the app, installed or not, at home or away).
// The box holds its own VAPID key pair (RFC 8292) and each subscription's keys; every message
// is encrypted for its browser (RFC 8291, aes128gcm), so the push service carries it unread. A
// notification carries a small picture of its event inside (the push service stores nothing the
// browser must fetch from the box later, which it could not when away and asleep).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import type { ServiceSchema } from 'moleculer';
import type { WebPushError } from 'web-push';
import { lazyPackage } from '../../lib/lazy-package.ts';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { call, on } from '../../lib/bus.ts';
import { BadRequestError, TooManyRequestsError, UnauthorizedError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { SubscribeInput, UnsubscribeInput, type PushSubscriptionInfo, type UserNotification } from './push.schemas.ts';
import { smallPicture } from './small-picture.ts';

const webpush = lazyPackage<typeof import('web-push')>('web-push');

interface SubscriptionRecord {
  id: string;
  username: string;
  /** The paired browser or session it was made through: revoking that ends it. */
  credential: string | null;
  name: string;
  endpoint: string;
  keys: { p256dh: string; auth: string };
  createdAt: string;
  lastSentAt: string | null;
}

/** How long a push service keeps a message for a browser that is offline, s. */
const TTL_S = 3600;
const SEND_TIMEOUT_MS = 10_000;
/** A push service that asks us to wait longer than this is not waited for: the message is dropped. */
const MAX_RETRY_WAIT_MS = 60_000;

const idOf = (endpoint: string) => createHash('sha256').update(endpoint).digest('hex').slice(0, 16);
const infoOf = (s: SubscriptionRecord): PushSubscriptionInfo => ({
  id: s.id,
  name: s.name,
  service: new URL(s.endpoint).host,
  createdAt: s.createdAt,
  lastSentAt: s.lastSentAt,
});

export function pushService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let subscriptions: Collection<SubscriptionRecord>;
  let vapid: { publicKey: string; privateKey: string };
  const agent = config.push.caFile ? new Agent({ ca: readFileSync(config.push.caFile) }) : undefined;
  const sent = { delivered: 0, gone: 0, failed: 0 };

  const callerOf = (ctx: Ctx<unknown>) => {
    const c = ctx.meta.caller;
    if (!c?.username) throw new UnauthorizedError('Sign in first', 'AUTH_REQUIRED');
    return { ...c, username: c.username };
  };

  return {
    name: 'push',

    actions: {
      health: action({
        input: z.strictObject({}),
        handler: () => ({ status: store?.status === 'open' ? 'ok' : 'down', ...sent }),
      }),
      key: action({
        input: z.strictObject({}),
        permission: 'self',
        handler: () => ({ publicKey: vapid.publicKey }),
      }),
      subscribe: action({
        input: SubscribeInput,
        permission: 'self',
        async handler(ctx) {
          const caller = callerOf(ctx);
          const { endpoint, keys, name } = ctx.params;
          if (!config.push.endpointAllow.some((prefix) => endpoint.startsWith(prefix)))
            throw new BadRequestError(
              `endpoint: ${new URL(endpoint).origin} is not a push service this box sends to (push.endpointAllow)`,
              'PUSH_SERVICE_NOT_ALLOWED',
            );
          const mine = (await subscriptions.values()).filter((s) => s.username === caller.username);
          const id = idOf(endpoint);
          if (mine.length >= config.push.maxPerUser && !mine.some((s) => s.id === id))
            throw new TooManyRequestsError(
              `"${caller.username}" has ${config.push.maxPerUser} push subscriptions, the most one may (push.maxPerUser)`,
              60,
              'TOO_MANY_SUBSCRIPTIONS',
            );
          const record: SubscriptionRecord = {
            id,
            username: caller.username,
            credential: caller.credential ?? null,
            name,
            endpoint,
            keys,
            createdAt: new Date().toISOString(),
            lastSentAt: null,
          };
          await subscriptions.put(id, record);
          return infoOf(record);
        },
      }),
      unsubscribe: action({
        input: UnsubscribeInput,
        permission: 'self',
        async handler(ctx) {
          const caller = callerOf(ctx);
          const record = await subscriptions.get(idOf(ctx.params.endpoint));
          if (!record || (record.username !== caller.username && caller.role !== 'admin')) return { removed: false };
          await subscriptions.del(record.id);
          return { removed: true };
        },
      }),
      subscriptions: action({
        input: z.strictObject({}),
        permission: 'self',
        async handler(ctx) {
          const caller = callerOf(ctx);
          return (await subscriptions.values()).filter((s) => s.username === caller.username).map(infoOf);
        },
      }),
    },

    events: {
      ...on('user.notified', function (notification) {
        return this.notify(notification);
      }),
      // Whoever can no longer see events is no longer told.
      ...on('account.deleted', function ({ username }) {
        return this.dropWhere((s: SubscriptionRecord) => s.username === username);
      }),
      ...on('account.credential.revoked', function ({ credentialId }) {
        return this.dropWhere((s: SubscriptionRecord) => s.credential === credentialId);
      }),
    },

    methods: {
      async dropWhere(which: (s: SubscriptionRecord) => boolean) {
        for (const s of (await subscriptions.values()).filter(which)) await subscriptions.del(s.id);
      },

      async notify(n: UserNotification) {
        const targets = (await subscriptions.values()).filter((s) => s.username === n.username);
        if (!targets.length) return;
        const jpeg = n.event
          ? await call(this.broker, 'events.snapshot', { id: n.event, thumbnail: true })
              .then((s) => s.jpegBase64)
              .catch(() => n.snapshotBase64)
          : n.snapshotBase64;
        const picture = jpeg
          ? await smallPicture(Buffer.from(jpeg, 'base64'), config.video.ffmpegPath).catch(() => null)
          : null;
        const payload = JSON.stringify({
          title: n.title,
          message: n.message ?? null,
          camera: n.camera ?? null,
          event: n.event ?? null,
          review: n.review ?? null,
          at: new Date().toISOString(),
          picture: picture ? `data:image/jpeg;base64,${picture.toString('base64')}` : null,
        });
        await Promise.all(targets.map((s) => this.send(s, payload)));
      },

      /** One message to one browser; a subscription the push service says is gone is forgotten. */
      async send(s: SubscriptionRecord, payload: string, attempt = 1): Promise<void> {
        try {
          await webpush().sendNotification({ endpoint: s.endpoint, keys: s.keys }, payload, {
            vapidDetails: { subject: config.push.contact, ...vapid },
            TTL: TTL_S,
            urgency: 'high',
            contentEncoding: 'aes128gcm',
            timeout: SEND_TIMEOUT_MS,
            ...(agent ? { agent } : {}),
          });
          sent.delivered++;
          await subscriptions.put(s.id, { ...s, lastSentAt: new Date().toISOString() }, { sync: false });
        } catch (err) {
          const status = err instanceof webpush().WebPushError ? err.statusCode : 0;
          if (status === 404 || status === 410) {
            sent.gone++;
            await subscriptions.del(s.id);
            this.logger.info(`push: ${s.username}'s "${s.name}" unsubscribed at its push service; forgotten`);
            return;
          }
          // Busy or failing: once more, after the wait it asks for (bounded), then the message is dropped.
          const wait = Number((err as WebPushError).headers?.['retry-after'] ?? 5) * 1000;
          if ((status === 429 || status >= 500) && attempt === 1 && wait <= MAX_RETRY_WAIT_MS) {
            await new Promise((go) => setTimeout(go, wait));
            return this.send(s, payload, 2);
          }
          sent.failed++;
          this.logger.warn(
            `push: to ${new URL(s.endpoint).host} for ${s.username} failed (${status || (err as Error).message})`,
          );
        }
      },
    },

    async started() {
      store = await Store.open(dataPaths(config).db('push'));
      subscriptions = store.collection<SubscriptionRecord>('subscriptions');
      const keys = store.collection<{ publicKey: string; privateKey: string }>('vapid');
      vapid = (await keys.get('box')) ?? webpush().generateVAPIDKeys();
      await keys.put('box', vapid);
    },

    async stopped() {
      await store?.close();
      store = undefined;
    },
  };
}
