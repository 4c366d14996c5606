// Automations: the site's rules (trigger, conditions, actions), each run's trace, a run by hand.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { Automation, AutomationId, AutomationInput, Trace } from '../../../services/automations/automations.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const IdParam = z.object({ id: AutomationId });
const AutomationAnswer = z.object(Automation.shape).openapi('Automation');
const TraceAnswer = z.object(Trace.shape).openapi('AutomationTrace');

export function automationsRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/automations',
      tags: ['automations'],
      security: signedIn,
      summary: 'Every automation, with its owner and why the box stopped it, if it did',
      responses: { 200: json(z.array(AutomationAnswer)), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'automations.list', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/automations/{id}',
      tags: ['automations'],
      security: signedIn,
      summary: 'One automation',
      request: { params: IdParam },
      responses: { 200: json(AutomationAnswer), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs(broker, c, 'automations.get', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/automations/{id}',
      tags: ['automations'],
      security: signedIn,
      summary:
        'Add or change an automation (its owner or an admin; it runs as its owner). What it names must exist: cameras, zones, devices, modes, users; webhooks only to allowed addresses',
      request: { params: IdParam, ...body(AutomationInput.omit({ id: true })) },
      responses: {
        200: json(AutomationAnswer),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        409: errors[409],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(await callAs(broker, c, 'automations.save', { ...c.req.valid('json'), ...c.req.valid('param') }), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/automations/{id}',
      tags: ['automations'],
      security: signedIn,
      summary: 'Remove an automation (its owner or an admin)',
      request: { params: IdParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs(broker, c, 'automations.remove', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/automations/{id}/traces',
      tags: ['automations'],
      security: signedIn,
      summary: 'Its last runs, newest first: what fired it, what each condition said, what each action did',
      request: { params: IdParam, query: z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() }) },
      responses: { 200: json(z.array(TraceAnswer)), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) =>
      c.json(await callAs(broker, c, 'automations.traces', { ...c.req.valid('param'), ...c.req.valid('query') }), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/automations/{id}/run',
      tags: ['automations'],
      security: signedIn,
      summary: 'Run it now, as if triggered (its conditions are checked); answers its trace once it ends or waits',
      request: { params: IdParam },
      responses: { 200: json(TraceAnswer), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs(broker, c, 'automations.run', c.req.valid('param')), 200),
  );
}
