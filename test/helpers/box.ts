// An in-process box for tests: real broker and LevelDB in a temp folder, HTTP via app.request().
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigSchema, type Config } from '../../appliance/config.ts';
import { createBroker } from '../../gateway/broker.ts';
import { buildApp } from '../../gateway/http/app.ts';

export const tempDir = (prefix = 'fogedge-test-') => mkdtemp(path.join(os.tmpdir(), prefix));

/** `overrides.dataDir` reuses a folder (a restart of the same box); stop({ keepData: true }) leaves it. */
export async function testBox(overrides: Record<string, unknown> = {}) {
  const dataDir = (overrides['dataDir'] as string | undefined) ?? (await tempDir());
  // Every service; `api` listens on a free loopback port, though tests mostly use app.request().
  // No demo camera unless a test asks for one: most tests need no ffmpeg running.
  const config: Config = ConfigSchema.parse({
    dataDir,
    ...overrides,
    http: { host: '127.0.0.1', port: 0, ...(overrides['http'] as object) },
    // minFreeBytes 0: recordings must not depend on how full this machine's disk is.
    // No RTMP port unless a test asks for one (on a free port).
    video: { demoCamera: false, minFreeBytes: 0, rtmp: null, ...(overrides['video'] as object) },
    // No MQTT ports unless a test asks for them (on free ports).
    mqtt: overrides['mqtt'] ?? null,
    // Detection costs CPU: only the tests about it turn it on.
    detector: { enabled: false, ...(overrides['detector'] as object) },
  });
  // TEST_LOG=1 shows the box's log while a test runs.
  const broker = createBroker(config, process.env['TEST_LOG'] ? {} : { logger: false });
  await broker.start();
  const app = buildApp(broker, config);

  /** One HTTP request through the app; `auth` is a session or token credential. */
  async function request(
    method: string,
    url: string,
    options: { body?: unknown; raw?: string; auth?: string; headers?: Record<string, string> } = {},
  ) {
    const headers: Record<string, string> = { ...options.headers };
    const hasBody = !['GET', 'HEAD'].includes(method) && (options.body !== undefined || options.raw !== undefined);
    if (hasBody) headers['content-type'] ??= 'application/json';
    if (options.auth) headers['authorization'] = `Bearer ${options.auth}`;
    const res = await app.request(url, {
      method,
      headers,
      ...(!hasBody ? {} : { body: options.raw ?? JSON.stringify(options.body) }),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  }

  /** The session credential out of a Set-Cookie header. */
  const sessionOf = (headers: Headers) => /fogedge_session=([^;]+)/.exec(headers.get('set-cookie') ?? '')?.[1];

  let stopped = false;
  async function stop(options: { keepData?: boolean } = {}) {
    if (stopped) return;
    stopped = true;
    await broker.stop();
    if (!options.keepData) await rm(dataDir, { recursive: true, force: true });
  }

  return { broker, app, config, dataDir, request, sessionOf, stop };
}

export type TestBox = Awaited<ReturnType<typeof testBox>>;

/** Sets up the admin and returns its session. */
export async function withAdmin(box: TestBox, username = 'admin', password = 'admin-password-1') {
  const res = await box.request('POST', '/api/v1/setup', { body: { username, password } });
  if (res.status !== 201) throw new Error(`setup failed: ${res.status} ${res.text}`);
  return box.sessionOf(res.headers)!;
}

/** The smallest JPEG a snapshot can be (start and end markers). */
export const TINY_JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xd9]).toString('base64');

/** A person a camera sees from now on, as the detector reports one (an event started, with its snapshot). */
export function personSeen(box: TestBox, camera: string, id: string, snapshot = TINY_JPEG) {
  return box.broker.call('events.record', {
    type: 'start',
    id,
    camera,
    label: 'person',
    topScore: 0.9,
    box: [0.1, 0.2, 0.3, 0.9],
    zones: [],
    start: new Date().toISOString(),
    end: null,
    stationary: false,
    snapshot,
  });
}
