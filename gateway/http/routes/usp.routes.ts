// The box's camera agents over USP: their endpoints and notifications, their data model (Get, Set,
// Add, Delete, Operate), and firmware campaigns.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { CampaignInput } from '../../../services/usp/usp.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, signedIn } from '../openapi.ts';

const Any = z.record(z.string(), z.unknown());
const AnyList = z.array(Any);
const DeviceParam = z.object({ device: z.string() });
const Objects = z.array(z.object({ path: z.string(), params: z.record(z.string(), z.string()) }));
const CampaignBody = z.object(CampaignInput.shape).openapi('FirmwareCampaign');

/** What every route here may answer besides its own answer. */
const REFUSALS = {
  400: errors[400],
  401: errors[401],
  403: errors[403],
  404: errors[404],
  422: errors[422],
  503: errors[503],
};

export function uspRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/usp/endpoints',
      tags: ['usp'],
      security: signedIn,
      summary: 'The camera agents: endpoint id, device, model, serial, running version (admin, installer)',
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.endpoints', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/get',
      tags: ['usp'],
      security: signedIn,
      summary: "A USP Get on a camera agent's data model",
      request: { params: DeviceParam, ...body(z.object({ paths: z.array(z.string()) })) },
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.get', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/command',
      tags: ['usp'],
      security: signedIn,
      summary:
        'A command to a camera agent: snapshot (JPEG as base64), restart-stream, set-video (V4L2 cameras), reboot',
      request: {
        params: DeviceParam,
        ...body(
          z.object({
            command: z.string(),
            width: z.number().optional(),
            height: z.number().optional(),
            bitrateKbps: z.number().optional(),
          }),
        ),
      },
      responses: {
        200: json(Any),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof Any>>(broker, c, 'usp.agentCommand', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/set',
      tags: ['usp'],
      security: signedIn,
      summary:
        "A USP Set on a camera agent's data model: each object's parameters (required); allowPartial lets each object succeed alone",
      request: { params: DeviceParam, ...body(z.object({ objects: Objects, allowPartial: z.boolean().optional() })) },
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.set', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/add',
      tags: ['usp'],
      security: signedIn,
      summary: 'A USP Add: a new instance in a table of the agent (Device.LocalAgent.Subscription.)',
      request: { params: DeviceParam, ...body(z.object({ objects: Objects, allowPartial: z.boolean().optional() })) },
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.add', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/delete',
      tags: ['usp'],
      security: signedIn,
      summary: "A USP Delete: instances of the agent's tables",
      request: {
        params: DeviceParam,
        ...body(z.object({ paths: z.array(z.string()), allowPartial: z.boolean().optional() })),
      },
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.delete', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/endpoints/{device}/operate',
      tags: ['usp'],
      security: signedIn,
      summary:
        'A USP Operate: a command (Device.Reboot(), ...Download()); an asynchronous one answers with its request, or with wait, its OperationComplete',
      request: {
        params: DeviceParam,
        ...body(
          z.object({
            command: z.string(),
            args: z.record(z.string(), z.string()).optional(),
            wait: z.boolean().optional(),
            waitSeconds: z.number().optional(),
          }),
        ),
      },
      responses: {
        200: json(Any),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(
        await callAs<z.infer<typeof Any>>(broker, c, 'usp.operate', {
          ...c.req.valid('json'),
          ...c.req.valid('param'),
        }),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/usp/notifications',
      tags: ['usp'],
      security: signedIn,
      summary:
        'What the camera agents notified (Boot!, OperationComplete, value changes), newest first; ?device= for one',
      request: { query: z.object({ device: z.string().optional(), limit: z.coerce.number().optional() }) },
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) =>
      c.json(await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.notifications', c.req.valid('query')), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/usp/campaigns',
      tags: ['usp'],
      security: signedIn,
      summary:
        'Start a firmware campaign: these cameras, or all of a model, a few at a time, stopping after maxFailures',
      request: body(CampaignBody),
      responses: {
        200: json(Any),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Any>>(broker, c, 'usp.firmwareUpdate', c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/usp/campaigns',
      tags: ['usp'],
      security: signedIn,
      summary: 'The latest firmware campaigns, newest first',
      responses: {
        200: json(AnyList),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof AnyList>>(broker, c, 'usp.campaigns', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/usp/campaigns/{id}',
      tags: ['usp'],
      security: signedIn,
      summary: "A campaign: each camera's state and, when it failed, why",
      request: { params: z.object({ id: z.string() }) },
      responses: {
        200: json(Any),
        ...REFUSALS,
      },
    }),
    async (c) => c.json(await callAs<z.infer<typeof Any>>(broker, c, 'usp.campaign', c.req.valid('param')), 200),
  );
}
