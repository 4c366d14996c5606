// Small helpers so every route documents its body, answers and security the same way.
import { z } from '@hono/zod-openapi';
import type { ZodType } from 'zod';

export const ErrorBody = z
  .object({ error: z.object({ type: z.string(), message: z.string(), data: z.unknown().optional() }) })
  .openapi('Error');

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorBody } },
});

export const errors = {
  400: errorResponse('Malformed request (bad JSON)'),
  401: errorResponse('Not signed in, or the session or token is expired or revoked'),
  403: errorResponse('Signed in, but the role may not do this'),
  404: errorResponse('Not found'),
  409: errorResponse('Conflicts with the current state'),
  413: errorResponse('Body larger than http.bodyLimitBytes'),
  422: errorResponse('A field is missing or has a wrong value; data lists each field'),
  429: errorResponse('Too many failed attempts; see Retry-After'),
  503: errorResponse('The service that answers this is not running on any node'),
};

export const json = <S extends ZodType>(schema: S, description = '') => ({
  description,
  content: { 'application/json': { schema } },
});

/** A non-JSON answer (an image, a video file). */
export const binary = (contentType: string, description: string) => ({
  description,
  content: { [contentType]: { schema: z.string().openapi({ format: 'binary' }) } },
});

export const body = <S extends ZodType>(schema: S) => ({
  body: { content: { 'application/json': { schema } }, required: true as const },
});

export const signedIn: Array<Record<string, string[]>> = [{ cookieAuth: [] }, { bearerAuth: [] }];
export const Ok = z.object({ ok: z.boolean() });
