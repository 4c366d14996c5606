// The uplink to the operator (ADMP): its state, and the installer's first-run provisioning.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { ProvisioningInput } from '../../../appliance/provisioning.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, signedIn } from '../openapi.ts';

const Status = z.record(z.string(), z.unknown()).openapi('AdmpStatus', {
  description: 'provisioned (and from where), the endpoint without secrets, connected, last error, the store-and-forward queue with what was dropped, the desired configuration applied',
});

export function admpRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  const route = (method: 'get' | 'put' | 'delete', path: string, summary: string, request: object, action: string, params: (c: any) => object) =>
    app.openapi(
      createRoute({ method, path, tags: ['admp'], security: signedIn, summary, request, responses: { 200: json(Status), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] } }),
      async (c: any) => c.json(await callAs<Record<string, unknown>>(broker, c, action, params(c)), 200),
    );
  route('get', '/api/v1/admp', 'The uplink to the operator: provisioned, connected, what waits to go up (any role)', {}, 'admp.status', () => ({}));
  route('put', '/api/v1/admp/provisioning', "Provision the box: the operator's broker and the box's identity; the uplink (re)connects (admin, installer)", body(z.object(ProvisioningInput.shape).openapi('Provisioning')), 'admp.provision', (c) => c.req.valid('json'));
  route('delete', '/api/v1/admp/provisioning', 'Forget the provisioning: the box runs local only (admin, installer)', {}, 'admp.unprovision', () => ({}));
}
