// Remote access: pairing a browser for use away from home, and the browsers paired. An
// invitation is a link (or QR code) to the web app with everything a browser needs to find and
// trust the box in its fragment (never sent to the app's host): the operator's broker, the box's
// topics, its DTLS fingerprint, and the one-time secret.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { PairedBrowser } from '../../../services/accounts/accounts.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { errors, json, signedIn } from '../openapi.ts';

const Invitation = z.object({
  link: z.string().describe('the web app with the pairing in its #fragment: show it as a QR code'),
  expiresAt: z.string(),
  pairing: z.object({
    box: z.string(),
    topicRoot: z.string(),
    broker: z.string().describe('the operator’s broker for browsers (MQTT over WebSocket)'),
    stun: z.array(z.string()).describe('STUN servers for the browser'),
    fingerprint: z.string().describe('the box’s DTLS certificate, which the browser pins'),
    invitation: z.string(),
    secret: z.string().describe('shown once'),
  }),
});

export function remoteRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/remote/invitations',
      tags: ['remote'],
      security: signedIn,
      summary: 'Pair a browser or phone for use away from home: a one-time link, valid 15 minutes',
      responses: { 201: json(Invitation), 401: errors[401], 403: errors[403], 409: errors[409] },
    }),
    async (c) => {
      const endpoint = await callAs(broker, c, 'admp.remoteEndpoint', {});
      const { fingerprint } = await callAs(broker, c, 'webrtc.identity', {});
      const invitation = await callAs(broker, c, 'accounts.inviteBrowser', {});
      const pairing = {
        box: endpoint.boxId,
        topicRoot: endpoint.topicRoot,
        broker: endpoint.browserUrl,
        stun: endpoint.stun,
        fingerprint,
        invitation: invitation.invitation,
        secret: invitation.secret,
      };
      const appUrl = endpoint.appUrl ?? new URL('/', c.req.url).href;
      const link = `${appUrl}#pair=${Buffer.from(JSON.stringify(pairing)).toString('base64url')}`;
      return c.json({ link, expiresAt: invitation.expiresAt, pairing }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/remote/browsers',
      tags: ['remote'],
      security: signedIn,
      summary: 'The browsers paired for remote access (yours; an admin sees everyone’s)',
      responses: { 200: json(z.array(PairedBrowser)), 401: errors[401] },
    }),
    async (c) => c.json(await callAs(broker, c, 'accounts.browsers', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/remote/browsers/{id}',
      tags: ['remote'],
      security: signedIn,
      summary: 'Unpair a browser: its remote sessions end at once',
      request: { params: z.object({ id: z.string().regex(/^[a-f0-9]{16}$/) }) },
      responses: { 200: json(PairedBrowser), 401: errors[401], 404: errors[404] },
    }),
    async (c) => c.json(await callAs(broker, c, 'accounts.unpairBrowser', c.req.valid('param')), 200),
  );
}
