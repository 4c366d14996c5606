// Events (what the detector found): list and filter, snapshot, clip, review, delete; and the detector's state.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { CameraId } from '../../../services/cameras/cameras.schemas.ts';
import { EventId, StoredEvent } from '../../../services/events/events.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { binary, body, errors, json, Ok, signedIn } from '../openapi.ts';
import { sendClip, type Clip } from '../recorder-files.ts';
import { DetectorStatus } from '../../../services/detector/detector.schemas.ts';

const EventAnswer = z.object(StoredEvent.shape).openapi('Event');
const IdParam = z.object({ id: EventId });
const ListQuery = z.object({
  camera: CameraId.optional(),
  label: z.string().max(40).optional(),
  zone: z.string().max(32).optional(),
  from: z.string().optional().describe('ISO 8601: events that started at or after'),
  to: z.string().optional().describe('ISO 8601: events that started before'),
  reviewed: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export function eventsRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/events',
      tags: ['events'],
      security: signedIn,
      summary: 'Events, newest first, filtered by camera, label, zone, time and review state (admin, family)',
      request: { query: ListQuery },
      responses: { 200: json(z.array(EventAnswer)), 401: errors[401], 403: errors[403], 422: errors[422] },
    }),
    async (c) => {
      const { reviewed, ...q } = c.req.valid('query');
      const params = { ...q, ...(reviewed ? { reviewed: reviewed === 'true' } : {}) };
      return c.json(await callAs<StoredEvent[]>(broker, c, 'events.list', params), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/events/{id}',
      tags: ['events'],
      security: signedIn,
      summary: 'One event',
      request: { params: IdParam },
      responses: { 200: json(EventAnswer), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs<StoredEvent>(broker, c, 'events.get', c.req.valid('param')), 200),
  );

  // Pictures change while an event goes on (a better frame): each answer carries its version as
  // ETag and is revalidated, and the web UI asks with ?v=<snapshotVersion> so a new one is fetched.
  const picture = (file: string, summary: string, options: { thumbnail: boolean }) =>
    app.openapi(
      createRoute({
        method: 'get',
        path: `/api/v1/events/{id}/${file}`,
        tags: ['events'],
        security: signedIn,
        summary,
        request: {
          params: IdParam,
          query: z.object({
            boxes: z.enum(['true', 'false']).optional().describe('draw the box (not on thumbnails)'),
            v: z.string().max(20).optional().describe("the event's snapshotVersion: a new URL for a new picture"),
          }),
        },
        responses: {
          200: binary('image/jpeg', 'JPEG'),
          304: { description: "the picture the client has is still the event's" },
          401: errors[401],
          403: errors[403],
          404: errors[404],
          503: errors[503],
        },
      }),
      async (c) => {
        const boxes = !options.thumbnail && c.req.valid('query').boxes === 'true';
        const { id } = c.req.valid('param');
        const kind = options.thumbnail ? 'thumbnail' : boxes ? 'boxes' : 'clean';
        const etagOf = (version: number) => `"${version}-${kind}"`;
        const headers = { 'cache-control': 'private, no-cache' };
        const known = c.req.header('if-none-match');
        if (known) {
          const e = await callAs<StoredEvent>(broker, c, 'events.get', { id });
          const etag = etagOf(e.snapshotVersion);
          if (e.hasSnapshot && known === etag) return c.body(null, 304, { ...headers, etag });
        }
        const shot = await callAs<{ jpegBase64: string; version: number }>(broker, c, 'events.snapshot', {
          id,
          boxes,
          thumbnail: options.thumbnail,
        });
        return c.body(Buffer.from(shot.jpegBase64, 'base64'), 200, {
          ...headers,
          'content-type': 'image/jpeg',
          etag: etagOf(shot.version),
        });
      },
    );
  picture('snapshot.jpg', "The event's best frame as JPEG; ?boxes=true draws the object's box", { thumbnail: false });
  picture('thumbnail.jpg', "The event's best frame, small (320 px wide), for lists", { thumbnail: true });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/events/{id}/clip.mp4',
      tags: ['events'],
      security: signedIn,
      summary:
        'The event as one MP4 from the recordings, with pre- and post-roll (detector.preRollSeconds / postRollSeconds)',
      request: { params: IdParam },
      responses: { 200: binary('video/mp4', 'MP4'), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => {
      const range = await callAs<{ camera: string; from: string; to: string }>(
        broker,
        c,
        'events.clipRange',
        c.req.valid('param'),
      );
      return sendClip(c, broker, await callAs<Clip>(broker, c, 'recorder.clip', range));
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/events/{id}/review',
      tags: ['events'],
      security: signedIn,
      summary: 'Mark an event reviewed (or not) (admin, family)',
      request: { params: IdParam, ...body(z.object({ reviewed: z.boolean().default(true) })) },
      responses: { 200: json(EventAnswer), 401: errors[401], 403: errors[403], 404: errors[404], 422: errors[422] },
    }),
    async (c) =>
      c.json(
        await callAs<StoredEvent>(broker, c, 'events.review', { ...c.req.valid('param'), ...c.req.valid('json') }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/events/{id}',
      tags: ['events'],
      security: signedIn,
      summary: 'Delete an event and its snapshot (admin, family); the recordings stay',
      request: { params: IdParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs<{ ok: boolean }>(broker, c, 'events.remove', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/detector/status',
      tags: ['events'],
      security: signedIn,
      summary:
        'The detector: its model (or why it is off) and, per camera, frames, motion frames, inferences, dropped frames, ms per inference, whether it is behind',
      responses: { 200: json(DetectorStatus), 401: errors[401], 503: errors[503] },
    }),
    async (c) => c.json(await callAs(broker, c, 'detector.status', {}), 200),
  );
}
