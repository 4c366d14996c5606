// One place that turns any error (Moleculer, validation, HTTP) into a status
// and a JSON body: { error: { type, message, data? } }.
import type { ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import moleculer, { type LoggerInstance } from 'moleculer';
import { ZodError, type z } from 'zod';
import { ErrorBody as ErrorSchema } from '../openapi.ts';
import { issuesOf } from '../../../lib/actions.ts';

const E = moleculer.Errors;

type ErrorBody = z.infer<typeof ErrorSchema>;

export function classify(err: Error): { status: number; type: string; message: string; data?: unknown } {
  if (err instanceof HTTPException) {
    const status = err.status;
    if (status === 413) return { status, type: 'PAYLOAD_TOO_LARGE', message: err.message || 'Request body too large' };
    if (status === 400 && /json/i.test(err.message)) return { status, type: 'MALFORMED_JSON', message: err.message };
    return { status, type: `HTTP_${status}`, message: err.message };
  }
  if (err instanceof ZodError) {
    return { status: 422, type: 'VALIDATION_ERROR', message: 'Invalid request', data: issuesOf(err) };
  }
  if (err instanceof E.MoleculerError) {
    const { message, type, data } = err;
    if (err instanceof E.ValidationError) return { status: 422, type: type || 'VALIDATION_ERROR', message, data };
    // No node runs the service, or the node that had the request went away.
    if (
      err instanceof E.ServiceNotFoundError ||
      err instanceof E.ServiceNotAvailableError ||
      err instanceof E.RequestRejectedError
    ) {
      return { status: 503, type: 'SERVICE_UNAVAILABLE', message, data };
    }
    if (err instanceof E.RequestTimeoutError) return { status: 504, type: 'SERVICE_TIMEOUT', message, data };
    if (err.code >= 400 && err.code < 600) return { status: err.code, type: type || `HTTP_${err.code}`, message, data };
  }
  return { status: 500, type: 'INTERNAL_ERROR', message: 'Internal error' };
}

export function errorHandler(logger: LoggerInstance): ErrorHandler {
  return (err, c) => {
    const { status, type, message, data } = classify(err);
    if (status >= 500) logger.error(`${c.req.method} ${c.req.path} -> ${status} ${type}: ${err.message}`);
    const retryAfter = (data as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds;
    if (retryAfter) c.header('Retry-After', String(retryAfter));
    const body: ErrorBody = { error: { type, message, ...(data === undefined ? {} : { data }) } };
    return c.json(body, status as ContentfulStatusCode);
  };
}

export const notFound: NotFoundHandler = (c) =>
  c.json({ error: { type: 'NOT_FOUND', message: `No route ${c.req.method} ${c.req.path}` } } satisfies ErrorBody, 404);
