// Health (public, for installers and load balancers), version and configuration.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { callAs, type HttpEnv } from '../context.ts';
import { isUnreachable } from '../../../lib/errors.ts';
import { version } from '../../../appliance/version.ts';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../metrics.ts';
import { body, errors, json, signedIn } from '../openapi.ts';
import { History, SystemInfo, UpdateStarted, UpdateStatus } from '../../../services/system/system.schemas.ts';

const Status = z.enum(['ok', 'degraded', 'down']);
const Health = z
  .object({
    status: Status,
    version: z.string(),
    node: z.string(),
    time: z.string(),
    reason: z.string().optional().describe('why the report is short: the system service could not be reached'),
    services: z.array(
      z.object({
        name: z.string(),
        status: Status,
        instances: z.array(z.object({ node: z.string(), status: Status, error: z.string().optional() })),
      }),
    ),
    nodes: z.array(
      z.object({
        id: z.string(),
        available: z.boolean(),
        local: z.boolean(),
        hostname: z.string().nullable(),
        cpu: z.number().nullable(),
        services: z.array(z.string()),
      }),
    ),
  })
  .openapi('Health');
type Health = z.infer<typeof Health>;

const Storage = z
  .object({
    recordingsBytes: z.number(),
    clipsBytes: z.number().describe('cached clips: given up first when space runs short'),
    diskTotalBytes: z.number(),
    diskFreeBytes: z.number(),
    diskFull: z.boolean().describe('under the free-space floor with nothing left to delete'),
    quotaBytes: z.number().nullable(),
    minFreeBytes: z.number(),
    cameras: z.record(
      z.string(),
      z.object({
        bytes: z.number(),
        segments: z.number(),
        oldest: z.string(),
        archivedBytes: z.number().describe('of bytes, those in the archive tier'),
      }),
    ),
    archive: z
      .object({
        path: z.string(),
        state: z.enum(['ok', 'full', 'unmounted', 'missing', 'unwritable']),
        reason: z.string().nullable(),
        since: z.string(),
        totalBytes: z.number().nullable(),
        freeBytes: z.number().nullable(),
        recordingsBytes: z.number(),
      })
      .nullable()
      .describe('the archive tier (video.archive); null: one disk'),
  })
  .openapi('Storage');

export function systemRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/health',
      tags: ['system'],
      summary: 'Per-service status and the node list; 503 unless every service is up',
      responses: { 200: json(Health, 'All services up'), 503: json(Health, 'Some service is down') },
    }),
    async (c) => {
      const health = await callAs<Health>(broker, c, 'system.health').catch((err: Error): Health => {
        if (!isUnreachable(err)) throw err;
        // Health always answers: with no system service in reach, this node says so itself.
        return {
          status: 'down',
          version,
          node: broker.nodeID,
          time: new Date().toISOString(),
          reason: err.message,
          services: [],
          nodes: [],
        };
      });
      return health.status === 'ok' ? c.json(health, 200) : c.json(health, 503);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/info',
      tags: ['system'],
      summary: 'Version, node, uptime and memory of the node that answers',
      security: signedIn,
      responses: { 200: json(SystemInfo), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'system.info', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/history',
      tags: ['system'],
      summary:
        "The last day of the node's figures, a sample a minute: CPU, memory, disk, the sync queue, each camera's detector",
      security: signedIn,
      responses: { 200: json(History), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'system.history', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/storage',
      tags: ['system'],
      summary: 'Disk size and free space, the recordings quota, and how many bytes the recordings of each camera take',
      security: signedIn,
      responses: { 200: json(Storage), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Storage>>(broker, c, 'recorder.storage'), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/metrics',
      tags: ['system'],
      summary:
        'Prometheus metrics: cloud sync (queue, each target), cameras, disk (signed in: Prometheus sends an API token as its bearer token)',
      security: signedIn,
      responses: {
        200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: z.string() } } },
        401: errors[401],
        403: errors[403],
      },
    }),
    async (c) => c.text(await renderMetrics(broker, c.get('caller')), 200, { 'content-type': METRICS_CONTENT_TYPE }),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/config',
      tags: ['system'],
      summary: 'The running configuration, secrets masked (admin, installer)',
      security: signedIn,
      responses: { 200: json(z.record(z.string(), z.unknown())), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs<Record<string, unknown>>(broker, c, 'system.config'), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/diagnostics',
      tags: ['system'],
      summary:
        'A diagnostic bundle for support: runtime, configuration (secrets masked), health, cameras, storage, detector, sync and uplink (admin, installer)',
      security: signedIn,
      responses: { 200: json(z.record(z.string(), z.unknown())), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs<Record<string, unknown>>(broker, c, 'system.diagnostics'), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/system/update',
      tags: ['system'],
      summary:
        "The running version, how the box updates (balena, release, checkout), the last update's state and the releases on disk",
      security: signedIn,
      responses: { 200: json(UpdateStatus), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'system.updateStatus', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/system/update',
      tags: ['system'],
      summary:
        'Update the box: download and check a release, restart into it; rolled back unless healthy in time (admin, installer)',
      security: signedIn,
      request: body(
        z
          .object({
            version: z.string(),
            url: z.string().optional(),
            sha256: z.string().optional(),
            signature: z.string().optional(),
            deadlineSeconds: z.number().optional(),
            healthySeconds: z.number().optional(),
          })
          .openapi('BoxUpdate'),
      ),
      responses: {
        202: json(UpdateStarted, 'Installed; the box restarts into it'),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        409: errors[409],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(await callAs<z.output<typeof UpdateStarted>>(broker, c, 'system.update', c.req.valid('json')), 202),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/system/restart',
      tags: ['system'],
      summary: 'Restart services of this node (admin, installer)',
      security: signedIn,
      request: body(z.object({ services: z.array(z.string()) }).openapi('RestartServices')),
      responses: {
        200: json(z.object({ restarted: z.array(z.string()), tookMs: z.number() })),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(
        await callAs<{ restarted: string[]; tookMs: number }>(broker, c, 'system.restartServices', c.req.valid('json')),
        200,
      ),
  );
}
