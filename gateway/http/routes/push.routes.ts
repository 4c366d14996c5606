// Web Push: the box's VAPID key for a browser to subscribe with, and the caller's subscriptions.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { PushSubscriptionInfo, SubscribeInput, UnsubscribeInput } from '../../../services/push/push.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, signedIn } from '../openapi.ts';

export function pushRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/push/key',
      tags: ['push'],
      security: signedIn,
      summary: "The box's VAPID public key (PushManager.subscribe's applicationServerKey)",
      responses: { 200: json(z.object({ publicKey: z.string() })), 401: errors[401] },
    }),
    async (c) => c.json(await callAs(broker, c, 'push.key', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/push/subscriptions',
      tags: ['push'],
      security: signedIn,
      summary: 'Your browsers that get notifications by Web Push',
      responses: { 200: json(z.array(PushSubscriptionInfo)), 401: errors[401] },
    }),
    async (c) => c.json(await callAs(broker, c, 'push.subscriptions', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/push/subscriptions',
      tags: ['push'],
      security: signedIn,
      summary: 'Send your notifications to this browser: its PushSubscription (toJSON()) and a name',
      request: body(SubscribeInput),
      responses: {
        201: json(PushSubscriptionInfo),
        400: errors[400],
        401: errors[401],
        422: errors[422],
        429: errors[429],
      },
    }),
    async (c) => c.json(await callAs(broker, c, 'push.subscribe', c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/push/subscriptions',
      tags: ['push'],
      security: signedIn,
      summary: 'Stop notifications to a browser (its endpoint)',
      request: body(UnsubscribeInput),
      responses: { 200: json(z.object({ removed: z.boolean() })), 401: errors[401], 422: errors[422] },
    }),
    async (c) => c.json(await callAs(broker, c, 'push.unsubscribe', c.req.valid('json')), 200),
  );
}
