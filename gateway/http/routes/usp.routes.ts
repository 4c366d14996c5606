// The box's camera agents over USP: their endpoints and notifications, their data model (Get, Set,
// Add, Delete, Operate), and firmware campaigns.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, signedIn } from '../openapi.ts';

const Any = z.record(z.string(), z.unknown());
const CampaignBody = z
  .object({
    url: z.string(),
    sha256: z.string(),
    devices: z.array(z.string()).optional(),
    model: z.string().optional(),
    concurrency: z.number().optional(),
    maxFailures: z.number().optional(),
    trialSeconds: z.number().optional(),
  })
  .openapi('FirmwareCampaign');

export function uspRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  const route = (method: 'get' | 'post', path: string, summary: string, request: object, answer: z.ZodType, action: string, params: (c: any) => object) =>
    app.openapi(
      createRoute({ method, path, tags: ['usp'], security: signedIn, summary, request, responses: { 200: json(answer), 400: errors[400], 401: errors[401], 403: errors[403], 404: errors[404], 422: errors[422], 503: errors[503] } }),
      async (c: any) => c.json(await callAs(broker, c, action, params(c)), 200),
    );
  route('get', '/api/v1/usp/endpoints', "The camera agents: endpoint id, device, model, serial, running version (admin, installer)", {}, z.array(Any), 'usp.endpoints', () => ({}));
  route('post', '/api/v1/usp/endpoints/{device}/get', "A USP Get on a camera agent's data model", { params: z.object({ device: z.string() }), ...body(z.object({ paths: z.array(z.string()) })) }, z.array(Any), 'usp.get', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('post', '/api/v1/usp/endpoints/{device}/command', 'A command to a camera agent: snapshot (JPEG as base64), restart-stream, set-video (V4L2 cameras), reboot', { params: z.object({ device: z.string() }), ...body(z.object({ command: z.string(), width: z.number().optional(), height: z.number().optional(), bitrateKbps: z.number().optional() })) }, Any, 'usp.agentCommand', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  const Objects = z.array(z.object({ path: z.string(), params: z.record(z.string(), z.string()) }));
  route('post', '/api/v1/usp/endpoints/{device}/set', "A USP Set on a camera agent's data model: each object's parameters (required); allowPartial lets each object succeed alone", { params: z.object({ device: z.string() }), ...body(z.object({ objects: Objects, allowPartial: z.boolean().optional() })) }, z.array(Any), 'usp.set', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('post', '/api/v1/usp/endpoints/{device}/add', 'A USP Add: a new instance in a table of the agent (Device.LocalAgent.Subscription.)', { params: z.object({ device: z.string() }), ...body(z.object({ objects: Objects, allowPartial: z.boolean().optional() })) }, z.array(Any), 'usp.add', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('post', '/api/v1/usp/endpoints/{device}/delete', 'A USP Delete: instances of the agent\'s tables', { params: z.object({ device: z.string() }), ...body(z.object({ paths: z.array(z.string()), allowPartial: z.boolean().optional() })) }, z.array(Any), 'usp.delete', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('post', '/api/v1/usp/endpoints/{device}/operate', 'A USP Operate: a command (Device.Reboot(), ...Download()); an asynchronous one answers with its request, or with wait, its OperationComplete', { params: z.object({ device: z.string() }), ...body(z.object({ command: z.string(), args: z.record(z.string(), z.string()).optional(), wait: z.boolean().optional(), waitSeconds: z.number().optional() })) }, Any, 'usp.operate', (c) => ({ ...c.req.valid('json'), ...c.req.valid('param') }));
  route('get', '/api/v1/usp/notifications', 'What the camera agents notified (Boot!, OperationComplete, value changes), newest first; ?device= for one', { query: z.object({ device: z.string().optional(), limit: z.coerce.number().optional() }) }, z.array(Any), 'usp.notifications', (c) => c.req.valid('query'));
  route('post', '/api/v1/usp/campaigns', 'Start a firmware campaign: these cameras, or all of a model, a few at a time, stopping after maxFailures', body(CampaignBody), Any, 'usp.firmwareUpdate', (c) => c.req.valid('json'));
  route('get', '/api/v1/usp/campaigns', 'The latest firmware campaigns, newest first', {}, z.array(Any), 'usp.campaigns', () => ({}));
  route('get', '/api/v1/usp/campaigns/{id}', "A campaign: each camera's state and, when it failed, why", { params: z.object({ id: z.string() }) }, Any, 'usp.campaign', (c) => c.req.valid('param'));
}
