// Cloud sync: targets (S3, Azure Blob) with a connection test, the upload plan, and the queue's state.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { Policy, Target, TargetId } from '../../../services/sync/sync.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const TargetAnswer = z.record(z.string(), z.unknown()).openapi('SyncTarget', { description: 'A target as stored, its secret as "***"' });
const TestAnswer = z
  .object({
    ok: z.boolean(),
    code: z.enum(['DNS', 'UNREACHABLE', 'TIMEOUT', 'AUTH', 'NO_BUCKET', 'CLOCK_SKEW', 'SERVER', 'UPLOAD_EXPIRED', 'REJECTED']).optional(),
    message: z.string().optional(),
  })
  .openapi('SyncTest');
const Status = z.record(z.string(), z.unknown()).openapi('SyncStatus', { description: 'queue (items, bytes, oldest), counters, and per target: state, pending, last success and error' });
const IdParam = z.object({ id: TargetId });

export function syncRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  const route = <T>(method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string, summary: string, request: object, answer: z.ZodType, action: string, params: (c: any) => object, status: 200 | 201 = 200) =>
    app.openapi(
      createRoute({ method, path, tags: ['sync'], security: signedIn, summary, request, responses: { [status]: json(answer), 401: errors[401], 403: errors[403], 404: errors[404], 409: errors[409], 422: errors[422] } }),
      async (c: any) => c.json(await callAs<T>(broker, c, action, params(c)), status),
    );

  route('get', '/api/v1/sync/status', 'Queue length and bytes, oldest item, and per target the last success and error (any role)', {}, Status, 'sync.status', () => ({}));
  route('get', '/api/v1/sync/queue', 'What waits to go up, oldest first, with attempts and the last error per target', { query: z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() }) }, z.array(z.record(z.string(), z.unknown())), 'sync.queue', (c) => c.req.valid('query'));
  route('get', '/api/v1/sync/targets', 'The cloud targets, secrets masked (admin, installer)', {}, z.array(TargetAnswer), 'sync.targets', () => ({}));
  route('post', '/api/v1/sync/targets', 'Add an S3-compatible or Azure Blob target', body(Target), TargetAnswer, 'sync.addTarget', (c) => c.req.valid('json'), 201);
  route('patch', '/api/v1/sync/targets/{id}', 'Change a target; secrets left out keep their value', { params: IdParam, ...body(z.record(z.string(), z.unknown())) }, TargetAnswer, 'sync.updateTarget', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('delete', '/api/v1/sync/targets/{id}', 'Remove a target; what waited only for it is dropped', { params: IdParam }, Ok, 'sync.removeTarget', (c) => c.req.valid('param'));
  route('post', '/api/v1/sync/targets/{id}/test', 'Try a stored target: reach it, write and delete a probe; says what is wrong', { params: IdParam }, TestAnswer, 'sync.testTarget', (c) => c.req.valid('param'));
  route('post', '/api/v1/sync/test', 'Try a target before saving it', body(Target), TestAnswer, 'sync.testTarget', (c) => c.req.valid('json'));
  route('get', '/api/v1/sync/policy', 'The upload plan: resources, cameras, labels, zones, daily budget, bandwidth cap, windows', {}, Policy, 'sync.policy', () => ({}));
  route('put', '/api/v1/sync/policy', 'Replace the upload plan; applies to what is enqueued from now on', body(Policy), Policy, 'sync.setPolicy', (c) => c.req.valid('json'));
}
