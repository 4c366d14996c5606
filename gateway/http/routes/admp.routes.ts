// The uplink to the operator (ADMP): its state, and the installer's first-run provisioning.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { ProvisioningInput } from '../../../appliance/provisioning.ts';
import { AdmpStatus } from '../../../services/admp/admp.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { body, errors, json, signedIn } from '../openapi.ts';

const Status = AdmpStatus.openapi('AdmpStatus', {
  description:
    'provisioned (and from where), the endpoint without secrets, connected, last error, the store-and-forward queue with what was dropped, the desired configuration applied',
});
const Provisioning = z.object(ProvisioningInput.shape).openapi('Provisioning');

export function admpRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/admp',
      tags: ['admp'],
      security: signedIn,
      summary: 'The uplink to the operator: provisioned, connected, what waits to go up (any role)',
      responses: { 200: json(Status), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<AdmpStatus>(broker, c, 'admp.status', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/admp/provisioning',
      tags: ['admp'],
      security: signedIn,
      summary:
        "Provision the box: the operator's broker and the box's identity; the uplink (re)connects (admin, installer)",
      request: body(Provisioning),
      responses: { 200: json(Status), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<AdmpStatus>(broker, c, 'admp.provision', c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/admp/provisioning',
      tags: ['admp'],
      security: signedIn,
      summary: 'Forget the provisioning: the box runs local only (admin, installer)',
      responses: { 200: json(Status), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<AdmpStatus>(broker, c, 'admp.unprovision', {}), 200),
  );
}
