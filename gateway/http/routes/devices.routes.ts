// MQTT devices: the allow/deny list, secrets, and the pairing window (admin, installer).
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { DeviceId, DeviceState, DeviceType, StateEntry } from '../../../services/devices/devices.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, Ok, signedIn } from '../openapi.ts';

const DeviceAnswer = z
  .object({
    id: z.string(),
    name: z.string(),
    state: DeviceState,
    grants: z.array(z.string()).describe('topic filters it may read beyond its own fogedge/devices/<id>/cmd/#'),
    createdAt: z.string(),
    origin: z.enum(['added', 'paired']),
    type: DeviceType.optional().describe('how its state is read (absent: generic)'),
  })
  .openapi('Device');
const StatesAnswer = z
  .record(z.string(), z.record(z.string(), StateEntry))
  .describe('by device, by topic below fogedge/devices/<id>/: the last message and its value')
  .openapi('DeviceStates');
type DeviceAnswer = z.infer<typeof DeviceAnswer>;
const IdParam = z.object({ id: DeviceId });
const Grants = z.array(z.string()).max(32);

export function devicesRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/device-states',
      tags: ['devices'],
      security: signedIn,
      summary: "Every device's states: its last message per topic, read as its type says (contact: open or closed)",
      request: { query: z.object({ id: DeviceId.optional() }) },
      responses: { 200: json(StatesAnswer), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs(broker, c, 'devices.states', c.req.valid('query')), 200),
  );
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/devices',
      tags: ['devices'],
      security: signedIn,
      summary: 'The MQTT devices, and until when the pairing window is open',
      request: { query: z.object({ state: DeviceState.optional() }) },
      responses: {
        200: json(z.object({ devices: z.array(DeviceAnswer), pairingUntil: z.string().nullable() })),
        401: errors[401],
        403: errors[403],
      },
    }),
    async (c) =>
      c.json(
        await callAs<{ devices: DeviceAnswer[]; pairingUntil: string | null }>(
          broker,
          c,
          'devices.list',
          c.req.valid('query'),
        ),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/devices',
      tags: ['devices'],
      security: signedIn,
      summary: 'Add a device; its MQTT secret is in the answer, shown this once (user name: the device id)',
      request: body(
        z.object({
          id: DeviceId,
          name: z.string().min(1).max(64),
          grants: Grants.optional(),
          type: DeviceType.optional(),
        }),
      ),
      responses: {
        201: json(DeviceAnswer.extend({ secret: z.string() })),
        401: errors[401],
        403: errors[403],
        409: errors[409],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(await callAs<DeviceAnswer & { secret: string }>(broker, c, 'devices.add', c.req.valid('json')), 201),
  );
  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v1/devices/{id}',
      tags: ['devices'],
      security: signedIn,
      summary: 'Allow or deny a device (denied: cut off at once), rename it, change what it may read',
      request: {
        params: IdParam,
        ...body(
          z.object({
            name: z.string().min(1).max(64).optional(),
            state: z.enum(['allowed', 'denied']).optional(),
            grants: Grants.optional(),
            type: DeviceType.optional(),
          }),
        ),
      },
      responses: { 200: json(DeviceAnswer), 401: errors[401], 403: errors[403], 404: errors[404], 422: errors[422] },
    }),
    async (c) =>
      c.json(
        await callAs<DeviceAnswer>(broker, c, 'devices.update', { ...c.req.valid('json'), ...c.req.valid('param') }),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/devices/{id}/secret',
      tags: ['devices'],
      security: signedIn,
      summary: 'A new MQTT secret for a device (the old one stops working)',
      request: { params: IdParam },
      responses: {
        200: json(z.object({ id: z.string(), secret: z.string() })),
        401: errors[401],
        403: errors[403],
        404: errors[404],
      },
    }),
    async (c) =>
      c.json(await callAs<{ id: string; secret: string }>(broker, c, 'devices.newSecret', c.req.valid('param')), 200),
  );
  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/devices/{id}',
      tags: ['devices'],
      security: signedIn,
      summary: 'Remove a device (cut off at once)',
      request: { params: IdParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404] },
    }),
    async (c) => c.json(await callAs<{ ok: boolean }>(broker, c, 'devices.remove', c.req.valid('param')), 200),
  );
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/devices/pairing',
      tags: ['devices'],
      security: signedIn,
      summary:
        'Open the pairing window for this many seconds (0 closes it): unknown devices that sign in meanwhile land as pending',
      request: body(z.object({ seconds: z.number().int().min(0).max(3600).default(300) })),
      responses: {
        200: json(z.object({ pairingUntil: z.string().nullable() })),
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) =>
      c.json(await callAs<{ pairingUntil: string | null }>(broker, c, 'devices.pairing', c.req.valid('json')), 200),
  );
}
