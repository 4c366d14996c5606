// The box's HTTP app: /api/v1 (JSON, OpenAPI-documented), the web UI at /.
import { call } from '../../lib/bus.ts';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { OpenAPIHono } from '@hono/zod-openapi';
import { serveStatic } from '@hono/node-server/serve-static';
import { bodyLimit } from 'hono/body-limit';
import { csrf } from 'hono/csrf';
import { HTTPException } from 'hono/http-exception';
import { secureHeaders } from 'hono/secure-headers';
import type { ServiceBroker } from 'moleculer';
import type { Config } from '../../appliance/config.ts';
import { version } from '../../appliance/version.ts';
import { validationError } from '../../lib/actions.ts';
import type { HttpEnv } from './context.ts';
import { authenticate, credentialOf } from './middleware/authenticate.ts';
import { errorHandler, notFound } from './middleware/error-handler.ts';
import { accountsRoutes } from './routes/accounts.routes.ts';
import { systemRoutes } from './routes/system.routes.ts';
import { camerasRoutes } from './routes/cameras.routes.ts';
import { eventsRoutes } from './routes/events.routes.ts';
import { reviewRoutes } from './routes/review.routes.ts';
import { devicesRoutes } from './routes/devices.routes.ts';
import { syncRoutes } from './routes/sync.routes.ts';
import { admpRoutes } from './routes/admp.routes.ts';
import { uspRoutes } from './routes/usp.routes.ts';
import { modesRoutes } from './routes/modes.routes.ts';
import { automationsRoutes } from './routes/automations.routes.ts';
import { webrtcRoutes } from './routes/webrtc.routes.ts';
import { remoteRoutes } from './routes/remote.routes.ts';
import { pushRoutes } from './routes/push.routes.ts';
import { projectPath } from '../../lib/project-root.ts';

const PUBLIC_PATHS = ['/api/v1/health', '/api/v1/auth/login', '/api/v1/setup'];

const WEB_UI = projectPath('web-ui', 'dist');
const NOT_BUILT =
  '<!doctype html><title>FogEdge</title><p>The web UI is not built: run <code>npm run build:ui</code> (npm start does it).</p>';
// The pages load only the box's own scripts; video comes from MediaSource (blob:) and hls.js's worker.
const PAGE_CSP = {
  defaultSrc: ["'self'"],
  imgSrc: ["'self'", 'data:', 'blob:'],
  mediaSrc: ["'self'", 'blob:'],
  workerSrc: ["'self'", 'blob:'],
  connectSrc: ["'self'"],
  styleSrc: ["'self'", "'unsafe-inline'"],
  objectSrc: ["'none'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
};

export function buildApp(broker: ServiceBroker, config: Config): OpenAPIHono<HttpEnv> {
  const app = new OpenAPIHono<HttpEnv>({
    // Bad bodies, params and queries become the same 422 as a bad action call.
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error);
    },
  });

  // No HSTS: a LAN box may serve a self-signed certificate, or plain HTTP after TLS is turned off.
  const apiHeaders = secureHeaders({ strictTransportSecurity: false });
  const pageHeaders = secureHeaders({ strictTransportSecurity: false, contentSecurityPolicy: PAGE_CSP });
  app.use('*', (c, next) => (c.req.path.startsWith('/api/') ? apiHeaders(c, next) : pageHeaders(c, next)));
  // Only a cookie can be ridden by another site; scripts with a Bearer token need no Origin.
  const csrfCheck = csrf();
  app.use('/api/*', (c, next) =>
    credentialOf(c.req.header('authorization'), c.req.header('cookie'))?.from === 'cookie'
      ? csrfCheck(c, next)
      : next(),
  );
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: config.http.bodyLimitBytes,
      onError: () => {
        throw new HTTPException(413, { message: `Request body is larger than ${config.http.bodyLimitBytes} bytes` });
      },
    }),
  );
  app.use('/api/*', authenticate(broker, { publicPaths: PUBLIC_PATHS }));

  systemRoutes(app, broker);
  accountsRoutes(app, broker, { secureCookies: config.http.tls !== null });
  camerasRoutes(app, broker);
  eventsRoutes(app, broker);
  reviewRoutes(app, broker);
  devicesRoutes(app, broker);
  syncRoutes(app, broker);
  admpRoutes(app, broker);
  uspRoutes(app, broker);
  modesRoutes(app, broker);
  automationsRoutes(app, broker);
  webrtcRoutes(app, broker);
  remoteRoutes(app, broker);
  pushRoutes(app, broker);

  app.openAPIRegistry.registerComponent('securitySchemes', 'cookieAuth', {
    type: 'apiKey',
    in: 'cookie',
    name: 'fogedge_session',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', { type: 'http', scheme: 'bearer' });
  app.doc31('/api/v1/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'FogEdge box API',
      version,
      description: 'The local API of a FogEdge box. Sign in (cookie) or send an API token.',
    },
  });

  app.all('/api/*', notFound);
  // Firmware images for the box's cameras: no sign-in (a camera has none); the random token in
  // the name, known only to the cameras being updated, is the capability.
  app.get('/firmware/:file', async (c) => {
    const { path: file } = await call(broker, 'usp.imageFile', { file: c.req.param('file') });
    const size = (await stat(file)).size;
    return new Response(Readable.toWeb(createReadStream(file)) as ReadableStream, {
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(size),
        'cache-control': 'no-store',
      },
    });
  });
  // Hashed assets are immutable; index.html is always asked again so a new version shows at once.
  app.use('/assets/*', async (c, next) => {
    await next();
    if (c.res.ok) c.header('cache-control', 'public, max-age=31536000, immutable');
  });
  app.use('/*', serveStatic({ root: WEB_UI }));
  app.get('/assets/*', notFound); // an old asset name is a 404, not the page
  // Any other page path is a route of the single-page app.
  let indexHtml: string | undefined;
  app.get('*', (c) => {
    indexHtml ??= existsSync(`${WEB_UI}/index.html`) ? readFileSync(`${WEB_UI}/index.html`, 'utf8') : undefined;
    return c.html(indexHtml ?? NOT_BUILT, indexHtml ? 200 : 503, { 'cache-control': 'no-cache' });
  });
  app.notFound(notFound);
  app.onError(errorHandler(broker.getLogger('http')));
  return app;
}
