// The site's mode: which is on, switching it, what each mode does, and the schedule.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import {
  ActiveMode,
  Mode,
  ModeId,
  ModesAnswer,
  ScheduleEntry,
  ScheduleInput,
} from '../../../services/modes/modes.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const IdParam = z.object({ id: ModeId });

export function modesRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/modes',
      tags: ['modes'],
      security: signedIn,
      summary: 'The active mode (since when, by whom), every mode and what it changes per camera, and the schedule',
      responses: { 200: json(z.object(ModesAnswer.shape).openapi('Modes')), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'modes.list', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/modes/active',
      tags: ['modes'],
      security: signedIn,
      summary: 'Switch the site to a mode (every camera follows at once; audited)',
      request: body(z.object({ mode: ModeId })),
      responses: {
        200: json(z.object({ active: ActiveMode, changed: z.boolean() })),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        422: errors[422],
      },
    }),
    async (c) => c.json(await callAs(broker, c, 'modes.set', { mode: c.req.valid('json').mode }), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/modes/{id}',
      tags: ['modes'],
      security: signedIn,
      summary:
        "Add or change a mode: per camera (or '*' for all), detection, labels, recording, alerts, notifications (admin)",
      request: { params: IdParam, ...body(Mode.omit({ id: true })) },
      responses: {
        200: json(z.object(Mode.shape).openapi('Mode')),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(await callAs(broker, c, 'modes.save', { ...c.req.valid('json'), ...c.req.valid('param') }), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/modes/{id}',
      tags: ['modes'],
      security: signedIn,
      summary: 'Remove a mode the admin added (not one of the four, not the active one, not one the schedule names)',
      request: { params: IdParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404], 409: errors[409] },
    }),
    async (c) => c.json(await callAs(broker, c, 'modes.remove', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/mode-schedule',
      tags: ['modes'],
      security: signedIn,
      summary: "The schedule: cron expressions in the box's local time, each with the mode it switches to (admin)",
      request: body(ScheduleInput),
      responses: {
        200: json(z.array(ScheduleEntry)),
        400: errors[400],
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) => c.json(await callAs(broker, c, 'modes.setSchedule', c.req.valid('json')), 200),
  );
}
