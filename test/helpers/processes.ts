// Real processes for integration tests: FogEdge nodes and a nats-server,
// each killed when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function waitUntil<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

/** A process whose output lines are kept, to wait on and to check. */
export class Proc {
  readonly lines: string[] = [];
  /** Once the process has exited and its last output lines are read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(command: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(this.child);
    const collect = (d: Buffer) => this.lines.push(...d.toString().split('\n').filter(Boolean));
    this.child.stdout!.on('data', collect);
    this.child.stderr!.on('data', collect);
    this.child.on('exit', () => children.delete(this.child));
    // 'close', not 'exit': at 'exit' the pipes may still hold the process's last lines.
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal })));
  }

  get pid() {
    return this.child.pid!;
  }

  waitForLine(pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    return waitUntil(`a line matching ${pattern}`, () => this.lines.find((l) => pattern.test(l)), timeoutMs, 50).catch(
      (err: Error) => {
        throw new Error(`${err.message}\n--- output:\n${this.lines.slice(-30).join('\n')}`);
      },
    );
  }

  kill(signal: NodeJS.Signals = 'SIGTERM') {
    this.child.kill(signal);
    return this.exited;
  }
}

/**
 * A FogEdge node configured by environment: its sources through tsx (the tests' default), or the
 * compiled program `npm start` runs (build/, made by `npm run build`).
 */
export function startNode(env: Record<string, string>, program: 'sources' | 'compiled' = 'sources'): Proc {
  // RTMP push off unless asked for: port 1935 may be someone else's on a test machine.
  // Detection off unless asked for: it costs CPU the other tests need.
  const defaults = {
    LOGLEVEL: 'info',
    FOGEDGE__VIDEO__RTMP: 'null',
    FOGEDGE__DETECTOR__ENABLED: 'false',
    FOGEDGE__MQTT: 'null',
  };
  // PROF=<dir>: each node writes a V8 CPU profile there when it exits (for benchmarks).
  const profile = process.env['PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['PROF']}`] : [];
  const entry = program === 'compiled' ? ['build/gateway/main.js'] : ['--import', 'tsx', 'gateway/main.ts'];
  return new Proc(process.execPath, [...profile, ...entry], { ...defaults, ...env });
}

export async function startedNode(env: Record<string, string>): Promise<Proc> {
  const node = startNode(env);
  await node.waitForLine(/FogEdge node .* ready in/);
  return node;
}

/** Debian's nats-server on a loopback port. */
export class NatsServer {
  private proc?: Proc;
  constructor(readonly port: number) {}

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.proc = new Proc('nats-server', ['-a', '127.0.0.1', '-p', String(this.port)]);
    await waitUntil(`nats-server on port ${this.port}`, () => portOpen(this.port), 10_000, 50);
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

export async function getJson(url: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** Requests to a box process's API at `base` with `token`, JSON in and out. */
export function apiAs(base: string, token: string) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  return (method: string, path: string, body?: unknown) =>
    getJson(`${base}${path}`, { method, headers, ...(body ? { body: JSON.stringify(body) } : {}) });
}

/** Waits until every camera the box has is online (asked through `api`, from apiAs). */
export function everyCameraOnline(api: ReturnType<typeof apiAs>, timeoutMs: number): Promise<unknown> {
  return waitUntil(
    'every camera online',
    async () =>
      ((await api('GET', '/api/v1/cameras')).json as Array<{ status: { state: string } | null }>).every(
        (c) => c.status?.state === 'online',
      ),
    timeoutMs,
    300,
  );
}

/** Creates the first admin of a box process (first-run setup) and gives its session token. */
export async function firstAdminSession(base: string, username: string, password: string): Promise<string> {
  const setup = await getJson(`${base}/api/v1/setup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const session = /fogedge_session=([^;]+)/.exec(setup.headers.get('set-cookie') ?? '')?.[1];
  if (!session) throw new Error(`first-run setup failed: ${setup.status} ${setup.text}`);
  return session;
}
