// Review: each camera's activity as items (alerts and detections), their previews, and marking
// them reviewed one by one or all up to a time.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { CameraId } from '../../../services/cameras/cameras.schemas.ts';
import { EventId, MarkReviewedInput, ReviewItem, Severity } from '../../../services/events/events.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { binary, body, errors, json, signedIn } from '../openapi.ts';

const ItemAnswer = z.object(ReviewItem.shape).openapi('ReviewItem');
const IdParam = z.object({ id: EventId });
const ListQuery = z.object({
  camera: CameraId.optional(),
  severity: Severity.optional(),
  reviewed: z.enum(['true', 'false']).optional(),
  from: z.string().optional().describe('ISO 8601: items that started at or after'),
  to: z.string().optional().describe('ISO 8601: items that started before'),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export function reviewRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/review',
      tags: ['review'],
      security: signedIn,
      summary: 'Review items, newest first, by camera, severity (alert, detection), time and review state',
      request: { query: ListQuery },
      responses: { 200: json(z.array(ItemAnswer)), 401: errors[401], 403: errors[403], 422: errors[422] },
    }),
    async (c) => {
      const { reviewed, ...q } = c.req.valid('query');
      const params = { ...q, ...(reviewed ? { reviewed: reviewed === 'true' } : {}) };
      return c.json(await callAs<ReviewItem[]>(broker, c, 'events.reviewItems', params), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/review/{id}',
      tags: ['review'],
      security: signedIn,
      summary: 'One review item',
      request: { params: IdParam },
      responses: { 200: json(ItemAnswer), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs<ReviewItem>(broker, c, 'events.reviewItem', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/review/{id}/preview.mp4',
      tags: ['review'],
      security: signedIn,
      summary: "The item's preview: its footage small (320 px) and sped up to at most 10 s, made once it closed",
      request: { params: IdParam },
      responses: {
        200: binary('video/mp4', 'MP4'),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        503: errors[503],
      },
    }),
    async (c) => {
      const { mp4Base64 } = await callAs<{ mp4Base64: string }>(
        broker,
        c,
        'events.reviewPreview',
        c.req.valid('param'),
      );
      // Made once and never changed: a browser may keep it.
      return c.body(Buffer.from(mp4Base64, 'base64'), 200, {
        'content-type': 'video/mp4',
        'cache-control': 'private, max-age=86400',
      });
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/review/reviewed',
      tags: ['review'],
      security: signedIn,
      summary:
        'Mark items reviewed (or not): { ids } for these, or { before, camera?, severity? } for all that started before a time (admin, family)',
      request: body(MarkReviewedInput),
      responses: {
        200: json(z.object({ marked: z.number() })),
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) => c.json(await callAs<{ marked: number }>(broker, c, 'events.markReviewed', c.req.valid('json')), 200),
  );
}
