import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { SERVICE_NAMES } from '../appliance/config.ts';
import net from 'node:net';
import { waitUntil } from './helpers/processes.ts';

const PUBLIC = new Set(['GET /api/v1/health', 'POST /api/v1/auth/login', 'GET /api/v1/setup', 'POST /api/v1/setup']);
let box: TestBox;
let admin: string;

test.before(async () => {
  box = await testBox({ http: { bodyLimitBytes: 4096 }, auth: { maxFailuresPerAccount: 3 } });
  admin = await withAdmin(box);
});
test.after(async () => box.stop());

test('health answers without signing in, per service and per node', async () => {
  const res = await box.request('GET', '/api/v1/health');
  assert.is(res.status, 200);
  assert.is(res.json.status, 'ok');
  assert.equal(
    res.json.services.map((s: { name: string }) => s.name),
    [...SERVICE_NAMES],
  );
  assert.is(res.json.nodes.length, 1);
});

test('health is 503 and names the service when one is not running', async () => {
  const partial = await testBox({ services: ['api', 'system'] });
  const res = await partial.request('GET', '/api/v1/health');
  assert.is(res.status, 503);
  assert.is(res.json.status, 'degraded');
  const accounts = res.json.services.find((s: { name: string }) => s.name === 'accounts');
  assert.equal(accounts, { name: 'accounts', status: 'down', instances: [] });
  // Without the accounts service nothing that needs a sign-in can work: a clear 503, not a hang.
  const login = await partial.request('POST', '/api/v1/auth/login', { body: { username: 'a', password: 'b' } });
  assert.is(login.status, 503);
  assert.is(login.json.error.type, 'SERVICE_UNAVAILABLE');
  await partial.stop();
});

test('an idle keep-alive connection is held longer than 5 s: a second request on it after 6 s is answered', async () => {
  const port = box.broker.getLocalService('api')!.settings['port'];
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  let closed = false;
  socket.on('data', (d) => (received += d));
  socket.on('close', () => (closed = true));
  const ask = async () => {
    const before = received.length;
    socket.write('GET /api/v1/setup HTTP/1.1\r\nHost: box\r\nConnection: keep-alive\r\n\r\n');
    await waitUntil('an answer', () => /\r\n\r\n\{.*\}$/s.test(received.slice(before)), 5000, 10);
    return received.slice(before);
  };
  try {
    assert.match(await ask(), /^HTTP\/1\.1 200/);
    await new Promise((r) => setTimeout(r, 6000)); // past Node's default of 5 s
    assert.not.ok(closed, 'the box closed the idle connection');
    assert.match(await ask(), /^HTTP\/1\.1 200/);
  } finally {
    socket.destroy();
  }
});

test('the OpenAPI document lists the whole API and needs a sign-in', async () => {
  assert.is((await box.request('GET', '/api/v1/openapi.json')).status, 401);
  const res = await box.request('GET', '/api/v1/openapi.json', { auth: admin });
  assert.is(res.status, 200);
  assert.is(res.json.openapi, '3.1.0');
  for (const p of [
    '/api/v1/health',
    '/api/v1/setup',
    '/api/v1/auth/login',
    '/api/v1/users/{username}',
    '/api/v1/tokens/{id}',
    '/api/v1/system/config',
  ]) {
    assert.ok(res.json.paths[p], `missing ${p}`);
  }
  assert.ok(res.json.components.securitySchemes.bearerAuth);
});

test('every documented route but health, login and setup refuses a caller without credentials', async () => {
  const doc = (await box.request('GET', '/api/v1/openapi.json', { auth: admin })).json;
  let checked = 0;
  for (const [p, methods] of Object.entries<Record<string, unknown>>(doc.paths)) {
    for (const method of Object.keys(methods)) {
      const key = `${method.toUpperCase()} ${p}`;
      if (PUBLIC.has(key)) continue;
      const url = p.replace('{username}', 'admin').replace('{id}', '0123456789abcdef');
      const res = await box.request(method.toUpperCase(), url, { body: {} });
      assert.is(res.status, 401, `${key} answered ${res.status}`);
      assert.is(res.json.error.type, 'AUTH_REQUIRED');
      checked++;
    }
  }
  assert.ok(checked >= 10, `only ${checked} routes checked`);
  assert.is(
    (await box.request('GET', '/api/v1/users', { headers: { cookie: 'fogedge_session=fes_0000000000000000_bogus' } }))
      .status,
    401,
  );
});

test('setup is usable once', async () => {
  assert.equal((await box.request('GET', '/api/v1/setup')).json, { needed: false });
  const res = await box.request('POST', '/api/v1/setup', {
    body: { username: 'intruder', password: 'long enough pw' },
  });
  assert.is(res.status, 409);
  assert.is(res.json.error.type, 'ALREADY_SET_UP');
});

test('login sets an HttpOnly, SameSite=Strict cookie that works; logout revokes it', async () => {
  const res = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'admin', password: 'admin-password-1' },
  });
  assert.is(res.status, 200);
  const cookie = res.headers.get('set-cookie')!;
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  assert.not.ok(res.text.includes('fes_'), 'session must not be in the body');
  const session = box.sessionOf(res.headers)!;
  const me = await box.request('GET', '/api/v1/auth/me', { headers: { cookie: `fogedge_session=${session}` } });
  assert.is(me.status, 200);
  assert.is(me.json.user.role, 'admin');
  assert.ok(me.json.permissions.includes('users.manage'));
  // As a browser sends it: same-origin, with an Origin header.
  const logout = await box.request('POST', '/api/v1/auth/logout', {
    headers: { cookie: `fogedge_session=${session}`, origin: 'http://localhost' },
  });
  assert.is(logout.status, 200);
  assert.match(logout.headers.get('set-cookie') ?? '', /fogedge_session=;/);
  assert.is(
    (await box.request('GET', '/api/v1/auth/me', { headers: { cookie: `fogedge_session=${session}` } })).status,
    401,
  );
});

test('roles: a family member views but cannot manage users or settings; an installer cannot manage users', async () => {
  for (const [username, role] of [
    ['mum', 'family'],
    ['fitter', 'installer'],
  ]) {
    const res = await box.request('POST', '/api/v1/users', {
      auth: admin,
      body: { username, password: 'family-password', role },
    });
    assert.is(res.status, 201, res.text);
  }
  const login = async (username: string) =>
    box.sessionOf(
      (await box.request('POST', '/api/v1/auth/login', { body: { username, password: 'family-password' } })).headers,
    )!;
  const mum = await login('mum');
  const fitter = await login('fitter');
  assert.is((await box.request('GET', '/api/v1/auth/me', { auth: mum })).json.user.role, 'family');
  assert.is((await box.request('GET', '/api/v1/system/info', { auth: mum })).status, 200);
  const forbidden = await box.request('GET', '/api/v1/users', { auth: mum });
  assert.is(forbidden.status, 403);
  assert.is(forbidden.json.error.type, 'FORBIDDEN');
  assert.is((await box.request('GET', '/api/v1/system/config', { auth: mum })).status, 403);
  assert.is((await box.request('DELETE', '/api/v1/users/admin', { auth: mum })).status, 403);
  assert.is((await box.request('GET', '/api/v1/users', { auth: fitter })).status, 403);
  assert.is((await box.request('GET', '/api/v1/system/config', { auth: fitter })).status, 200);
  // Promote mum: the same session gets the new rights at once.
  assert.is((await box.request('PATCH', '/api/v1/users/mum', { auth: admin, body: { role: 'admin' } })).status, 200);
  assert.is((await box.request('GET', '/api/v1/users', { auth: mum })).status, 200);
});

test('API tokens: created once, used as Bearer, revoked', async () => {
  const created = await box.request('POST', '/api/v1/tokens', {
    auth: admin,
    body: { name: 'backup script', expiresInDays: 30 },
  });
  assert.is(created.status, 201);
  const token: string = created.json.token;
  const me = await box.request('GET', '/api/v1/auth/me', { auth: token });
  assert.is(me.json.via, 'token');
  const list = await box.request('GET', '/api/v1/tokens', { auth: admin });
  assert.ok(list.json.some((t: { name: string }) => t.name === 'backup script'));
  assert.not.ok(list.text.includes(token));
  assert.is((await box.request('DELETE', `/api/v1/tokens/${created.json.info.id}`, { auth: admin })).status, 200);
  const revoked = await box.request('GET', '/api/v1/auth/me', { auth: token });
  assert.is(revoked.status, 401);
  assert.is(revoked.json.error.type, 'INVALID_CREDENTIAL');
});

test('malformed JSON is a 400 that says so', async () => {
  const res = await box.request('POST', '/api/v1/users', { auth: admin, raw: '{"username": "x",' });
  assert.is(res.status, 400);
  assert.is(res.json.error.type, 'MALFORMED_JSON');
});

test('missing and wrong-typed fields are a 422 naming each field', async () => {
  const res = await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'Bad Name!', role: 'owner', extra: 1 },
  });
  assert.is(res.status, 422);
  assert.is(res.json.error.type, 'VALIDATION_ERROR');
  const fields = res.json.error.data.map((i: { field: string }) => i.field);
  for (const f of ['username', 'password', 'role']) assert.ok(fields.includes(f), `no issue for ${f}: ${res.text}`);
  assert.ok(
    res.json.error.data.some((i: { message: string }) => /extra/.test(i.message)),
    res.text,
  );
  const typed = await box.request('POST', '/api/v1/tokens', {
    auth: admin,
    body: { name: 'x', expiresInDays: 'soon' },
  });
  assert.is(typed.status, 422);
  assert.equal(typed.json.error.data[0].field, 'expiresInDays');
  assert.is(typed.json.error.data[0].expected, 'number');
});

test('bad path parameters are a 422, unknown users a 404', async () => {
  assert.is((await box.request('DELETE', '/api/v1/tokens/not-an-id', { auth: admin })).status, 422);
  const res = await box.request('PATCH', '/api/v1/users/nobody', { auth: admin, body: { role: 'family' } });
  assert.is(res.status, 404);
  assert.is(res.json.error.type, 'USER_NOT_FOUND');
});

test('unknown routes are a JSON 404', async () => {
  const res = await box.request('GET', '/api/v1/nope', { auth: admin });
  assert.is(res.status, 404);
  assert.is(res.json.error.type, 'NOT_FOUND');
  assert.is((await box.request('GET', '/api/v2/users', { auth: admin })).status, 404);
});

test('oversized bodies are refused with 413 before they are read whole', async () => {
  const res = await box.request('POST', '/api/v1/tokens', {
    auth: admin,
    raw: JSON.stringify({ name: 'x'.repeat(10_000) }),
  });
  assert.is(res.status, 413);
  assert.is(res.json.error.type, 'PAYLOAD_TOO_LARGE');
});

test('wrong passwords: 401, then 429 with Retry-After, and the box keeps serving', async () => {
  for (let i = 0; i < 3; i++) {
    const res = await box.request('POST', '/api/v1/auth/login', {
      body: { username: 'fitter', password: 'wrong-password' },
    });
    assert.is(res.status, 401);
    assert.is(res.json.error.type, 'INVALID_CREDENTIALS');
  }
  const limited = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'fitter', password: 'family-password' },
  });
  assert.is(limited.status, 429);
  assert.is(limited.json.error.type, 'LOGIN_RATE_LIMITED');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  assert.is((await box.request('GET', '/api/v1/auth/me', { auth: admin })).status, 200);
});

test('changing your own password needs the current one and keeps this session', async () => {
  const wrong = await box.request('POST', '/api/v1/auth/password', {
    auth: admin,
    body: { currentPassword: 'nope', newPassword: 'another-passphrase' },
  });
  assert.is(wrong.status, 403);
  const ok = await box.request('POST', '/api/v1/auth/password', {
    auth: admin,
    body: { currentPassword: 'admin-password-1', newPassword: 'another-passphrase' },
  });
  assert.is(ok.status, 200);
  assert.is((await box.request('GET', '/api/v1/auth/me', { auth: admin })).status, 200);
  const relogin = await box.request('POST', '/api/v1/auth/login', {
    body: { username: 'admin', password: 'another-passphrase' },
  });
  assert.is(relogin.status, 200);
});

test('a cookie-signed request from another site is refused (CSRF); same-origin is fine', async () => {
  const session = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'another-passphrase' } }))
      .headers,
  )!;
  const headers = { cookie: `fogedge_session=${session}`, 'content-type': 'text/plain' };
  const evil = await box.request('POST', 'http://box.local/api/v1/tokens', {
    raw: '{"name":"x"}',
    headers: { ...headers, origin: 'http://evil.example' },
  });
  assert.is(evil.status, 403);
  const same = await box.request('POST', 'http://box.local/api/v1/tokens', {
    raw: '{"name":"x"}',
    headers: { ...headers, 'content-type': 'application/json', origin: 'http://box.local' },
  });
  assert.is(same.status, 201, same.text);
});

test('config is shown without secrets; the web UI is served at /', async () => {
  const res = await box.request('GET', '/api/v1/system/config', { auth: admin });
  assert.is(res.status, 200);
  assert.is(res.json.http.bodyLimitBytes, 4096);
  const page = await box.request('GET', '/');
  assert.is(page.status, 200);
  assert.match(page.text, /<title>FogEdge<\/title>/);
  // The app's own routes are the same page; the browser may run only the box's own scripts.
  const route = await box.request('GET', '/recordings?camera=x');
  assert.is(route.status, 200);
  assert.is(route.text, page.text);
  assert.match(route.headers.get('content-security-policy') ?? '', /default-src 'self'.*frame-ancestors 'none'/);
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(page.text)![1]!;
  const js = await box.request('GET', asset);
  assert.is(js.status, 200);
  assert.match(js.headers.get('cache-control') ?? '', /immutable/);
  // An asset of an older build is a 404, not the page in its place.
  assert.is((await box.request('GET', '/assets/index-gone.js')).status, 404);
  // An unknown API path is still a JSON error, never the page.
  assert.is((await box.request('GET', '/api/v1/nothing-here', { auth: admin })).json.error.type, 'NOT_FOUND');
});

test('storage: disk size and free space, and what recordings take', async () => {
  const res = await box.request('GET', '/api/v1/system/storage', { auth: admin });
  assert.is(res.status, 200, res.text);
  assert.ok(res.json.diskTotalBytes > res.json.diskFreeBytes && res.json.diskFreeBytes > 0);
  assert.is(res.json.recordingsBytes, 0);
  assert.equal(res.json.cameras, {});
});

test('actions validate their own input on the bus, with no HTTP layer in front', async () => {
  try {
    await box.broker.call('accounts.createUser', { username: 'Bad Name', password: 'short', role: 'boss' });
    assert.unreachable('invalid params must be refused');
  } catch (err) {
    const e = err as { code: number; type: string; data: Array<{ field: string }> };
    assert.is(e.code, 422);
    assert.is(e.type, 'VALIDATION_ERROR');
    assert.equal(e.data.map((i) => i.field).sort(), ['password', 'role', 'username']);
  }
  assert.equal(await box.broker.call('accounts.listUsers').then((u) => (u as unknown[]).length > 0), true);
});

test('actions refuse outside callers that lack the permission, even on the bus', async () => {
  const caller = { username: 'mum2', role: 'family', via: 'admp' };
  try {
    await box.broker.call('accounts.listUsers', {}, { meta: { caller } });
    assert.unreachable();
  } catch (err) {
    assert.is((err as { code: number }).code, 403);
  }
  try {
    await box.broker.call(
      'accounts.authenticate',
      { credential: 'x' },
      { meta: { caller: { ...caller, role: 'admin' } } },
    );
    assert.unreachable();
  } catch (err) {
    assert.is((err as { code: number }).code, 403, 'internal actions are closed to outside callers');
  }
});

test('a time that is not one is refused naming the field and what a time looks like', async () => {
  const res = await box.request('GET', '/api/v1/cameras/porch/segments?from=yesterday&to=2026-11-29T00:00:00Z', {
    auth: admin,
  });
  assert.is(res.status, 422, res.text);
  const issue = res.json.error.data.find((i: { field: string }) => i.field === 'from');
  assert.match(issue.message, /expected an ISO 8601 time, such as/);
  assert.not.match(res.text, /received Date/);
});

test.run();
