// Typed errors in one place. Client errors are never retried; retryable ones are,
// by Moleculer's retry policy (it checks `err.retryable`).
import moleculer from 'moleculer';

const { MoleculerClientError, MoleculerRetryableError } = moleculer.Errors;

export type ErrorData = Record<string, unknown> | undefined;

/** 400: the request is well-formed JSON but asks for something impossible. */
export class BadRequestError extends MoleculerClientError {
  constructor(message: string, type = 'BAD_REQUEST', data?: ErrorData) {
    super(message, 400, type, data);
  }
}

/** 401: no credentials, or credentials that are wrong, expired or revoked. */
export class UnauthorizedError extends MoleculerClientError {
  constructor(message: string, type = 'UNAUTHORIZED', data?: ErrorData) {
    super(message, 401, type, data);
  }
}

/** 403: known caller, not allowed to do this. */
export class ForbiddenError extends MoleculerClientError {
  constructor(message: string, data?: ErrorData) {
    super(message, 403, 'FORBIDDEN', data);
  }
}

export class NotFoundError extends MoleculerClientError {
  constructor(what: string, id: string) {
    super(`${what} "${id}" not found`, 404, `${what.toUpperCase().replace(/\W+/g, '_')}_NOT_FOUND`, { id });
  }
}

export class ConflictError extends MoleculerClientError {
  constructor(message: string, type = 'CONFLICT', data?: ErrorData) {
    super(message, 409, type, data);
  }
}

export class TooManyRequestsError extends MoleculerClientError {
  constructor(message: string, retryAfterSeconds: number, type = 'TOO_MANY_REQUESTS') {
    super(message, 429, type, { retryAfterSeconds });
  }
}

/** 503, not retried: the thing exists but has nothing to give yet (a camera with no frame). */
export class NotReadyError extends MoleculerClientError {
  constructor(message: string, type = 'NOT_READY', data?: ErrorData) {
    super(message, 503, type, data);
  }
}

/** 415: the thing asked for exists, but not in a form this way of asking can carry (H.265 over WebRTC). */
export class UnsupportedMediaError extends MoleculerClientError {
  constructor(message: string, type = 'UNSUPPORTED_MEDIA', data?: ErrorData) {
    super(message, 415, type, data);
  }
}

/** 507: what was asked for needs more room than the box can give it (a clip on a full disk). */
export class InsufficientStorageError extends MoleculerClientError {
  constructor(message: string, type = 'INSUFFICIENT_STORAGE', data?: ErrorData) {
    super(message, 507, type, data);
  }
}

/** 503, retried by the bus: a dependency (disk, device, remote) is briefly unavailable. */
export class UnavailableError extends MoleculerRetryableError {
  constructor(message: string, type = 'UNAVAILABLE', data?: ErrorData) {
    super(message, 503, type, data);
  }
}

const { ServiceNotFoundError, ServiceNotAvailableError, RequestRejectedError, RequestTimeoutError } = moleculer.Errors;

/**
 * The service asked for, or its node, is not there now (not started yet, restarting, its node
 * lost, the bus down): a reason to wait and ask again, never an answer. Moleculer gives "service
 * not found" code 404, which must not be read as "no such thing".
 */
export function isUnreachable(err: unknown): boolean {
  return (
    err instanceof ServiceNotFoundError ||
    err instanceof ServiceNotAvailableError ||
    err instanceof RequestRejectedError ||
    err instanceof RequestTimeoutError
  );
}
