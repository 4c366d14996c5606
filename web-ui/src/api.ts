// Talking to the box: JSON over /api/v1 with the session cookie. Two things every page gets for
// free: a lost session asks to sign in again over the page (the request is then sent again, so a
// half-filled form is not lost), and a box that does not answer shows a banner until it is back.
import { signal } from '@preact/signals';
import type { Permission, Role } from '../../lib/permissions.ts';

export interface Me {
  user: { username: string; role: Role };
  permissions: Permission[];
}

/** One bad field of a 422, as the API names it ("source.url"). */
export interface FieldProblem {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly fields: FieldProblem[] = [],
  ) {
    super(message);
  }
  /** The message for one field, for the form that sent it. */
  field(name: string): string | undefined {
    return this.fields.find((f) => f.field === name || f.field.startsWith(`${name}.`))?.message;
  }
}

export const me = signal<Me | null | undefined>(undefined);
/** false while the box does not answer. */
export const online = signal(true);
/** Set when a request met 401: the sign-in dialog shows over the page. */
export const sessionLost = signal(false);

let resume: Array<() => void> = [];
let probing: ReturnType<typeof setTimeout> | undefined;

/** Called by the sign-in dialog once signed in again: waiting requests go out again. */
export function sessionRestored(who: Me): void {
  me.value = who;
  sessionLost.value = false;
  const waiting = resume;
  resume = [];
  for (const go of waiting) go();
}

function boxLost(): void {
  online.value = false;
  if (probing) return;
  const probe = async () => {
    try {
      await fetch('/api/v1/health', { cache: 'no-store' });
      online.value = true;
      probing = undefined;
    } catch {
      probing = setTimeout(probe, 2000);
    }
  };
  probing = setTimeout(probe, 1000);
}

export function can(permission: Permission): boolean {
  return me.value?.permissions.includes(permission) ?? false;
}

type Query = Record<string, string | number | boolean | undefined | null>;

export function url(path: string, query: Query = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return `/api/v1${path}${s ? `?${s}` : ''}`;
}

interface Options {
  method?: string;
  body?: unknown;
  query?: Query;
  /** Sign-in and setup: a 401 there is an answer, not a lost session. */
  anonymous?: boolean;
}

async function errorOf(res: Response): Promise<ApiError> {
  const body = (await res.json().catch(() => ({}))) as { error?: { type?: string; message?: string; data?: unknown } };
  const data = Array.isArray(body.error?.data) ? (body.error!.data as FieldProblem[]) : [];
  return new ApiError(res.status, body.error?.type ?? String(res.status), body.error?.message ?? res.statusText, data);
}

/** A raw request with the same handling of lost sessions and an unreachable box. */
export async function request(path: string, options: Options = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url(path, options.query), {
      method: options.method ?? 'GET',
      headers: options.body === undefined ? {} : { 'content-type': 'application/json' },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: 'no-store',
    });
  } catch {
    boxLost();
    throw new ApiError(0, 'UNREACHABLE', 'The box does not answer. Check that it is on and on the network.');
  }
  online.value = true;
  if (res.status === 401 && !options.anonymous && me.value) {
    // Wait for the user to sign in again, then send the same request.
    sessionLost.value = true;
    await new Promise<void>((go) => resume.push(go));
    return request(path, options);
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function api<T>(path: string, options: Options = {}): Promise<T> {
  const res = await request(path, options);
  return (res.status === 204 ? undefined : await res.json()) as T;
}

/** Who is signed in, or null. */
export async function loadMe(): Promise<Me | null> {
  try {
    const who = await api<Me>('/auth/me', { anonymous: true });
    me.value = who;
    return who;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      me.value = null;
      return null;
    }
    throw err;
  }
}

export const formatBytes = (n: number): string => {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
};

export const formatTime = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString() : '');
