// WHEP (RFC 9725): WebRTC live view for any WHEP player. POST an SDP offer to the camera's
// endpoint, get the answer and the session's URL (Location); PATCH trickles ICE candidates to it;
// DELETE hangs up. Signed in as for any live view (a bearer token, or a page of the box).
// A session's slots: the app away from home shows every camera on its one remote session (the
// tunnel's peer connection), offering again for each slot it adds and handing a slot another
// camera with no offer.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { CameraId } from '../../../services/cameras/cameras.schemas.ts';
import {
  AddSlotAnswer,
  AddSlotInput,
  HandSlotInput,
  SessionId,
  SlotAnswer,
  SlotMid,
} from '../../../services/webrtc/webrtc.schemas.ts';
import { BadRequestError } from '../../../lib/errors.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, ErrorBody, errors, json, Ok, signedIn } from '../openapi.ts';

const sdp = (description: string) => ({ description, content: { 'application/sdp': { schema: z.string() } } });

/** The body as text, of the content type WHEP names; anything else is refused by name. */
async function textOf(c: { req: { header(name: string): string | undefined; text(): Promise<string> } }, type: string) {
  const given = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (given !== type) throw new BadRequestError(`The body must be ${type}, not ${given || 'none'}`, 'BAD_CONTENT_TYPE');
  return c.req.text();
}

export function webrtcRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/cameras/{id}/whep',
      tags: ['live'],
      security: signedIn,
      summary:
        "WebRTC live view (WHEP): an SDP offer in, the box's answer out (the camera's H.264 as it is); the session's URL in Location",
      request: {
        params: z.object({ id: CameraId }),
        query: z.object({ stream: z.enum(['main', 'sub']).default('main') }),
        body: { content: { 'application/sdp': { schema: z.string() } }, required: true },
      },
      responses: {
        201: sdp('The answer, with the box’s ICE candidates'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
        415: json(ErrorBody, 'The camera’s codec cannot go over WebRTC (H.265, B-frames): use MSE'),
        429: errors[429],
      },
    }),
    async (c) => {
      const offer = await textOf(c, 'application/sdp');
      const answer = await callAs(broker, c, 'webrtc.offer', {
        camera: c.req.valid('param').id,
        stream: c.req.valid('query').stream,
        sdp: offer,
      });
      c.header('location', `/api/v1/whep/${answer.session}`);
      c.header('etag', `"${answer.session}"`);
      c.header('x-fogedge-video', answer.video);
      c.header('content-type', 'application/sdp');
      return c.body(answer.sdp, 201) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v1/whep/{session}',
      tags: ['live'],
      security: signedIn,
      summary: 'More ICE candidates for a WHEP session (application/trickle-ice-sdpfrag, RFC 8840)',
      request: { params: z.object({ session: SessionId }) },
      responses: { 204: { description: 'Added' }, 400: errors[400], 401: errors[401], 404: errors[404] },
    }),
    async (c) => {
      const fragment = await textOf(c, 'application/trickle-ice-sdpfrag');
      await callAs(broker, c, 'webrtc.candidate', { session: c.req.valid('param').session, fragment });
      return c.body(null, 204) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/whep/{session}',
      tags: ['live'],
      security: signedIn,
      summary: 'Hang up a WHEP session',
      request: { params: z.object({ session: SessionId }) },
      responses: { 200: json(Ok), 401: errors[401], 404: errors[404] },
    }),
    async (c) => {
      await callAs(broker, c, 'webrtc.hangUp', { session: c.req.valid('param').session });
      return c.json({ ok: true }, 200);
    },
  );

  const SlotParams = z.object({ session: SessionId, mid: SlotMid });
  const notForWebRtc = json(ErrorBody, 'The camera’s codec cannot go over WebRTC (H.265, B-frames): use MSE');

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/webrtc/sessions/{session}/slots',
      tags: ['live'],
      security: signedIn,
      summary:
        "One more slot on a session: the viewer's new offer (same connection) and the mids of the slot's sections; the box's answer. The slot waits to be handed a camera (PUT)",
      request: {
        params: z.object({ session: SessionId }),
        ...body(AddSlotInput.omit({ session: true })),
      },
      responses: {
        201: json(AddSlotAnswer.openapi('WebRtcSlotAnswer')),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) =>
      c.json(
        await callAs(broker, c, 'webrtc.addSlot', { session: c.req.valid('param').session, ...c.req.valid('json') }),
        201,
      ),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/webrtc/sessions/{session}/slots/{mid}',
      tags: ['live'],
      security: signedIn,
      summary: "Another camera (or stream) on a session's slot, from its newest keyframe; no offer needed",
      request: { params: SlotParams, ...body(HandSlotInput.omit({ session: true, mid: true })) },
      responses: {
        200: json(SlotAnswer.openapi('WebRtcSlot')),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        415: notForWebRtc,
        429: errors[429],
      },
    }),
    async (c) =>
      c.json(await callAs(broker, c, 'webrtc.handSlot', { ...c.req.valid('param'), ...c.req.valid('json') }), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/webrtc/sessions/{session}/slots/{mid}',
      tags: ['live'],
      security: signedIn,
      summary: "A session's slot stops sending (its tracks wait for the next camera)",
      request: { params: SlotParams },
      responses: { 200: json(Ok), 401: errors[401], 404: errors[404] },
    }),
    async (c) => {
      await callAs(broker, c, 'webrtc.emptySlot', c.req.valid('param'));
      return c.json({ ok: true }, 200);
    },
  );
}
