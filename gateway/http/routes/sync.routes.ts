// Cloud sync: targets (S3, Azure Blob) with a connection test, the upload plan, and the queue's state.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import {
  FailureCode,
  Policy,
  PublicTarget,
  QueuedItem,
  SyncStatus,
  Target,
  TargetId,
} from '../../../services/sync/sync.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const TargetAnswer = PublicTarget.openapi('SyncTarget', { description: 'A target as stored, its secret as "***"' });
const TestAnswer = z
  .object({ ok: z.boolean(), code: FailureCode.optional(), message: z.string().optional() })
  .openapi('SyncTest');
const IdParam = z.object({ id: TargetId });
const TargetList = z.array(TargetAnswer);
const QueueAnswer = z.array(QueuedItem);

/** What every route here may answer besides its own answer. */
const REFUSALS = { 401: errors[401], 403: errors[403], 404: errors[404], 409: errors[409], 422: errors[422] };

export function syncRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sync/status',
      tags: ['sync'],
      security: signedIn,
      summary: 'Queue length and bytes, oldest item, and per target the last success and error (any role)',
      responses: {
        200: json(SyncStatus),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs(broker, c, 'sync.status', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sync/queue',
      tags: ['sync'],
      security: signedIn,
      summary: 'What waits to go up, oldest first, with attempts and the last error per target',
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() }) },
      responses: {
        200: json(QueueAnswer),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs(broker, c, 'sync.queue', c.req.valid('query')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sync/targets',
      tags: ['sync'],
      security: signedIn,
      summary: 'The cloud targets, secrets masked (admin, installer)',
      responses: {
        200: json(TargetList),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof TargetList>>(broker, c, 'sync.targets', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/sync/targets',
      tags: ['sync'],
      security: signedIn,
      summary: 'Add an S3-compatible or Azure Blob target',
      request: body(Target),
      responses: {
        201: json(TargetAnswer),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(await callAs<z.infer<typeof TargetAnswer>>(broker, c, 'sync.addTarget', c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v1/sync/targets/{id}',
      tags: ['sync'],
      security: signedIn,
      summary: 'Change a target; secrets left out keep their value',
      request: { params: IdParam, ...body(z.record(z.string(), z.unknown())) },
      responses: {
        200: json(TargetAnswer),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof TargetAnswer>>(broker, c, 'sync.updateTarget', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/sync/targets/{id}',
      tags: ['sync'],
      security: signedIn,
      summary: 'Remove a target; what waited only for it is dropped',
      request: { params: IdParam },
      responses: {
        200: json(Ok),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Ok>>(broker, c, 'sync.removeTarget', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/sync/targets/{id}/test',
      tags: ['sync'],
      security: signedIn,
      summary: 'Try a stored target: reach it, write and delete a probe; says what is wrong',
      request: { params: IdParam },
      responses: {
        200: json(TestAnswer),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(await callAs<z.infer<typeof TestAnswer>>(broker, c, 'sync.testTarget', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/sync/test',
      tags: ['sync'],
      security: signedIn,
      summary: 'Try a target before saving it',
      request: body(Target),
      responses: {
        200: json(TestAnswer),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(await callAs<z.infer<typeof TestAnswer>>(broker, c, 'sync.testTarget', c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sync/policy',
      tags: ['sync'],
      security: signedIn,
      summary: 'The upload plan: resources, cameras, labels, zones, daily budget, bandwidth cap, windows',
      responses: {
        200: json(Policy),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Policy>>(broker, c, 'sync.policy', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/sync/policy',
      tags: ['sync'],
      security: signedIn,
      summary: 'Replace the upload plan; applies to what is enqueued from now on',
      request: body(Policy),
      responses: {
        200: json(Policy),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Policy>>(broker, c, 'sync.setPolicy', c.req.valid('json')), 200),
  );
}
