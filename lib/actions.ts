// Typed Moleculer actions whose `input` is a zod schema: validated (422) before
// the handler runs, the same schema documents the HTTP API. External callers
// (HTTP, ADMP) carry `meta.caller`; the action's `permission` is checked for them.
import moleculer, { type ActionSchema, type Context, type Middleware } from 'moleculer';
import { z } from 'zod';
import { can, type Permission, type Role } from './permissions.ts';
import { ForbiddenError, UnauthorizedError } from './errors.ts';

const { ValidationError } = moleculer.Errors;

export interface Caller {
  /** Absent for anonymous callers of public actions. */
  username?: string;
  role?: Role;
  /** Remote address, for rate limits and the audit log. */
  ip?: string;
  via: 'http' | 'mqtt' | 'admp' | 'cli' | 'automation' | 'remote';
  /** The token or session the caller signed in with (its id, never its value): what a revoke ends. */
  credential?: string;
}

export interface Meta {
  caller?: Caller;
}

export type Ctx<P> = Context<P, Meta>;

export interface ActionDef<S extends z.ZodType, R> {
  input: S;
  /** Omit for internal actions: callers from outside the box may not call them. */
  permission?: Permission;
  visibility?: ActionSchema['visibility'];
  timeout?: number;
  handler: (ctx: Ctx<z.output<S>>) => Promise<R> | R;
}

export function action<S extends z.ZodType, R>(def: ActionDef<S, R>): ActionSchema {
  const { input, ...rest } = def;
  // Moleculer deep-clones action definitions, which breaks a zod schema; a function is kept as is.
  return { ...rest, inputSchema: () => input, handler: def.handler as ActionSchema['handler'] };
}

export interface ValidationIssue {
  field: string;
  message: string;
  expected?: string;
}

export function issuesOf(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((issue) => ({
    field: issue.path.join('.') || '(root)',
    message: issue.message,
    ...('expected' in issue && typeof issue.expected === 'string' ? { expected: issue.expected } : {}),
  }));
}

export function validationError(error: z.ZodError): InstanceType<typeof ValidationError> {
  const issues = issuesOf(error);
  const summary = issues.map((i) => `${i.field}: ${i.message}`).join('; ');
  return new ValidationError(`Invalid parameters: ${summary}`, 'VALIDATION_ERROR', issues);
}

export function inputMiddleware(): Middleware {
  return {
    name: 'ZodInput',
    localAction(handler: (ctx: Context) => Promise<unknown>, schema: ActionSchema) {
      const input: unknown = typeof schema['inputSchema'] === 'function' ? schema['inputSchema']() : undefined;
      const permission: Permission | undefined = schema['permission'];
      return function checkCallerAndInput(ctx: Context<unknown, Meta>) {
        const caller = ctx.meta.caller;
        if (caller && permission !== 'public') {
          if (!caller.role) throw new UnauthorizedError('Sign in first', 'AUTH_REQUIRED');
          // Actions without a declared permission are internal to the box.
          if (!permission || !can(caller.role, permission)) {
            throw new ForbiddenError(`Role "${caller.role}" may not call ${schema.name}`, {
              action: schema.name,
              needs: permission ?? 'internal',
            });
          }
        }
        if (input instanceof z.ZodType) {
          const parsed = input.safeParse(ctx.params ?? {});
          if (!parsed.success) throw validationError(parsed.error);
          ctx.params = parsed.data;
        }
        return handler(ctx);
      };
    },
  } as unknown as Middleware;
}
