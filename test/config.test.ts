import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, defaultBoxId, loadConfig, redactedConfig } from '../appliance/config.ts';
import { startNode } from './helpers/processes.ts';

let dir = '';
test.before.each(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'fogedge-config-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

test('no file: embedded defaults, data root under the working folder', () => {
  const config = loadConfig({}, dir);
  assert.is(config.transporter, null);
  assert.equal(config.services, [
    'api',
    'accounts',
    'system',
    'cameras',
    'streams',
    'recorder',
    'detector',
    'events',
    'devices',
    'mqtt',
    'sync',
    'admp',
    'usp',
    'modes',
    'automations',
    'webrtc',
    'push',
  ]);
  assert.is(config.http.port, 8080);
  assert.is(config.dataDir, path.join(dir, 'data'));
  assert.is(config.auth.maxFailuresPerAccount, 10);
});

test("the box id: balena's device UUID when it runs on balena (a container's host name changes with each release), else the host name", () => {
  assert.is(
    defaultBoxId({ BALENA_DEVICE_UUID: '7C9A1E0F3B2D4E5F8A6B9C0D1E2F3A4B' }, '0a1b2c3d4e5f'),
    '7c9a1e0f3b2d4e5f8a6b9c0d1e2f3a4b',
  );
  assert.is(defaultBoxId({}, 'Porch-Box.local'), 'porch-box-local');
  assert.is(defaultBoxId({}, '...'), 'fogedge');
});

test("with no fogedge.yaml where it runs, the one in the data root is read: the installer's settings outlive release folders", async () => {
  const data = path.join(dir, 'data');
  const release = path.join(dir, 'releases', '0.2.0');
  await mkdir(data, { recursive: true });
  await mkdir(release, { recursive: true });
  await writeFile(path.join(data, 'fogedge.yaml'), 'http:\n  port: 8443\n');
  const config = loadConfig({ FOGEDGE_DATA_DIR: data }, release);
  assert.is(config.http.port, 8443);
  assert.is(config.dataDir, data);
  assert.is(loadConfig({}, release).http.port, 8080, 'without a data root named, nothing is found there');
});

test('YAML file values, then environment overrides on top', async () => {
  await writeFile(path.join(dir, 'fogedge.yaml'), 'http:\n  port: 9000\n  host: 127.0.0.1\nlogLevel: debug\n');
  const config = loadConfig(
    {
      FOGEDGE__HTTP__PORT: '9100',
      TRANSPORTER: 'nats://127.0.0.1:4222',
      SERVICES: 'api, system',
      DEPLOYMENT: 'api,system,accounts',
      FOGEDGE__AUTH__SESSIONTTLHOURS: '12',
      FOGEDGE_DATA_DIR: '/var/lib/fogedge',
    },
    dir,
  );
  assert.is(config.http.port, 9100);
  assert.is(config.http.host, '127.0.0.1');
  assert.is(config.logLevel, 'debug');
  assert.is(config.transporter, 'nats://127.0.0.1:4222');
  assert.equal(config.services, ['api', 'system']);
  assert.equal(config.deployment.services, ['api', 'system', 'accounts']);
  assert.equal(loadConfig({}, dir).deployment.services.length, 17, 'by default, every service');
  const bad = configError(() => loadConfig({ DEPLOYMENT: 'api,cloud' }, dir));
  assert.is(bad.problems.length, 1);
  assert.match(bad.problems[0]!, /deployment\.services.*DEPLOYMENT/);
  assert.is(config.auth.sessionTtlHours, 12);
  assert.is(config.dataDir, '/var/lib/fogedge');
});

test('a JSON file named by FOGEDGE_CONFIG is read too', async () => {
  const file = path.join(dir, 'box.json');
  await writeFile(file, JSON.stringify({ http: { port: 7000 } }));
  assert.is(loadConfig({ FOGEDGE_CONFIG: file }, dir).http.port, 7000);
});

test('a typo in a key names the key and the keys expected', async () => {
  await writeFile(path.join(dir, 'fogedge.yaml'), 'htpp:\n  port: 80\nhttp:\n  prot: 80\n');
  const err = configError(() => loadConfig({}, dir));
  assert.match(err.message, /htpp: unknown key \(expected one of: .*http/);
  assert.match(err.message, /http\.prot: unknown key \(expected one of: host, port/);
});

test('a wrong value names the key, the value and what was expected', async () => {
  await writeFile(path.join(dir, 'fogedge.yaml'), 'http:\n  port: "80x"\nlogLevel: verbose\nservices: [api, camera]\n');
  const err = configError(() => loadConfig({}, dir));
  assert.match(err.message, /http\.port: got "80x"; .*expected number/);
  assert.match(err.message, /logLevel: got "verbose"; .*"info"/);
  assert.match(err.message, /services\.1: got "camera"; .*"accounts"/);
  assert.match(err.message, /fogedge\.yaml/);
});

test('a bad environment override names the variable', () => {
  const err = configError(() => loadConfig({ PORT: '99999', TRANSPORTER: 'redis://x' }, dir));
  assert.match(err.message, /http\.port: got 99999 \(from PORT\); .*65535/);
  assert.match(err.message, /transporter: got "redis:\/\/x" \(from TRANSPORTER\); a NATS URL/);
});

test('broken YAML and a missing FOGEDGE_CONFIG file are reported, not thrown raw', async () => {
  await writeFile(path.join(dir, 'fogedge.yaml'), 'http:\n  port: [1, 2\n');
  assert.match(configError(() => loadConfig({}, dir)).message, /fogedge\.yaml/);
  assert.match(
    configError(() => loadConfig({ FOGEDGE_CONFIG: path.join(dir, 'nope.yaml') }, dir)).message,
    /does not exist/,
  );
});

test('redactedConfig hides NATS credentials', () => {
  const config = loadConfig({ TRANSPORTER: 'nats://box:s3cret@10.0.0.2:4222' }, dir);
  assert.is(redactedConfig(config).transporter, 'nats://box:***@10.0.0.2:4222');
});

test('the box refuses to start on an invalid file, says why, exits 78', async () => {
  await writeFile(path.join(dir, 'fogedge.yaml'), 'http:\n  port: eighty\n');
  const node = startNode({ FOGEDGE_CONFIG: path.join(dir, 'fogedge.yaml') });
  const { code } = await node.exited;
  assert.is(code, 78);
  const line = node.lines.find((l) => l.includes('http.port'));
  assert.ok(line, node.lines.join('\n'));
  const record = JSON.parse(line!);
  assert.is(record.level, 'fatal');
  assert.match(record.message, /http\.port: got "eighty"; .*expected number/);
});

test.run();
