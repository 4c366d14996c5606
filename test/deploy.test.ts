// The balena fleet files, checked for coherence since no Docker engine runs here: every service
// builds from files that exist on a Debian base, its environment is a valid box configuration,
// the nodes together run every service once, and volumes, ports and health checks line up.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { ConfigSchema, loadConfig, SERVICE_NAMES } from '../appliance/config.ts';
import { BUILD_ENTRIES } from '../appliance/build.ts';
import { tempDir } from './helpers/box.ts';
import { startedNode } from './helpers/processes.ts';

const root = path.resolve(import.meta.dirname, '..');
const dir = path.join(root, 'deploy/balena');
const compose = YAML.parse(readFileSync(path.join(dir, 'docker-compose.yml'), 'utf8'));
const balena = YAML.parse(readFileSync(path.join(dir, 'balena.yml'), 'utf8'));
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const services: Record<string, any> = compose.services;
const defaults = ConfigSchema.parse({});

/** Dockerfile instructions, continuation lines joined. */
const instructions = (file: string) =>
  readFileSync(file, 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });

test('a compose file balena takes: version 2.x, string labels, known update strategies, no host networking', () => {
  assert.match(String(compose.version), /^2(\.\d+)?$/);
  assert.equal(Object.keys(services).sort(), ['detector', 'gateway', 'nats']);
  for (const [name, s] of Object.entries(services)) {
    for (const [key, value] of Object.entries(s.labels ?? {}))
      assert.type(value, 'string', `${name}: label ${key} is a string`);
    if (s.labels?.['io.balena.update.strategy'])
      assert.ok(
        ['download-then-kill', 'kill-then-download', 'delete-then-download', 'hand-over'].includes(
          s.labels['io.balena.update.strategy'],
        ),
        name,
      );
    assert.is(s.restart, 'always', `${name} restarts`);
    assert.not.ok(s.privileged || s.network_mode === 'host', `${name} runs unprivileged on the service network`);
    for (const dep of s.depends_on ?? []) assert.ok(services[dep], `${name} depends on ${dep}, which exists`);
  }
});

test('every image builds from files in the repository, on Debian 12, with ffmpeg and nats-server from Debian', () => {
  for (const [name, s] of Object.entries(services)) {
    const context = path.resolve(root, s.build.context);
    assert.is(context, root, `${name}: the context is the repository root (push.sh stages it so)`);
    const dockerfile = path.join(context, s.build.dockerfile);
    assert.ok(existsSync(dockerfile), `${name}: ${s.build.dockerfile} exists`);
    const steps = instructions(dockerfile);
    for (const from of steps.filter((i) => i.op === 'FROM'))
      assert.match(
        from.args,
        /^balenalib\/%%BALENA_ARCH%%-debian(-node:20)?[-:]?.*bookworm/,
        `${name}: Debian 12 base, got ${from.args}`,
      );
    for (const copy of steps.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
      const sources = copy.args.split(/\s+/).slice(0, -1);
      for (const src of sources)
        assert.ok(src === '.' || existsSync(path.join(context, src)), `${name}: COPY ${src} exists`);
    }
    const installs = steps
      .filter((i) => i.op === 'RUN' && /install_packages|apt-get install/.test(i.args))
      .map((i) => i.args)
      .join(' ');
    const cmd = steps.filter((i) => i.op === 'CMD').pop()?.args ?? '';
    if (name === 'nats') {
      assert.match(installs, /\bnats-server\b/);
    } else {
      assert.match(installs, /\bffmpeg\b/);
      // The node runs the compiled entry the build makes, and Node in the image is what package.json asks for.
      assert.match(cmd, /"build\/gateway\/main\.js"/);
      assert.ok(BUILD_ENTRIES.includes('gateway/main.ts') && existsSync(path.join(root, 'gateway/main.ts')));
      assert.ok(
        steps.some((i) => i.op === 'RUN' && /npm run build\b/.test(i.args)),
        `${name}: the image compiles the program it runs`,
      );
      const major = Number(/debian-node:(\d+)/.exec(steps.find((i) => i.op === 'FROM')!.args)![1]);
      assert.ok(major >= Number(/>=(\d+)/.exec(pkg.engines.node)![1]), `Node ${major} satisfies ${pkg.engines.node}`);
    }
  }
});

test("each node's environment is a valid box configuration, and together they run every service once over NATS", () => {
  const running: string[] = [];
  for (const name of ['gateway', 'detector']) {
    const env = services[name].environment as Record<string, string>;
    const config = loadConfig({ ...env }, root); // throws a ConfigError that names the key
    assert.ok(config.transporter, `${name} talks over NATS`);
    const host = new URL(config.transporter!.replace(/^nats:/, 'http:'));
    assert.ok(services[host.hostname], `${name}: the transporter host "${host.hostname}" is a service`);
    assert.ok(
      (services[host.hostname].expose ?? []).map(String).includes(host.port),
      `${host.hostname} exposes ${host.port}`,
    );
    assert.is(config.dataDir, '/data');
    running.push(...config.services);
  }
  assert.equal([...running].sort(), [...SERVICE_NAMES].sort(), 'every service exactly once');
  assert.is(new Set(running).size, running.length);
});

test('the data root is a declared volume on both nodes; the ports are the ones the box listens on', () => {
  for (const name of ['gateway', 'detector']) {
    const mounts = (services[name].volumes as string[]).map((v) => v.split(':'));
    const data = mounts.find(([, target]) => target === services[name].environment.FOGEDGE_DATA_DIR);
    assert.ok(data, `${name} mounts its data root`);
    assert.ok(data![0]! in compose.volumes, `${name}: volume ${data![0]} is declared`);
  }
  const published = (services['gateway'].ports as string[]).map((p) => Number(p.split(':')[1]));
  assert.equal(
    published.sort(),
    [defaults.http.port, defaults.mqtt!.port, defaults.mqtt!.tlsPort!, defaults.video.rtmp!.port].sort(),
  );
});

test('health checks: every service has one, the gateway asks the API it serves', () => {
  for (const [name, s] of Object.entries(services)) {
    assert.ok(Array.isArray(s.healthcheck?.test) && s.healthcheck.test.length > 1, `${name} has a health check`);
    assert.match(String(s.healthcheck.interval), /^\d+s$/);
  }
  assert.match(
    services['gateway'].healthcheck.test.join(' '),
    new RegExp(`127\\.0\\.0\\.1:${defaults.http.port}/api/v1/health`),
  );
  assert.match(services['nats'].healthcheck.test.join(' '), /:8222\/healthz/);
  const nats = instructions(path.join(root, services['nats'].build.dockerfile));
  assert.match(nats.find((i) => i.op === 'CMD')!.args, /--http_port", "8222"/);
});

test("the detector's health check checks something: its node's alive file is fresh while it runs, stale after it stops", async () => {
  const detector = services['detector'];
  const file = detector.environment.FOGEDGE_ALIVE_FILE as string;
  const check = (detector.healthcheck.test as string[]).slice(1).join(' ');
  assert.ok(check.includes(file), 'the check reads the file the node is told to touch');
  // The same command against a node started here, with the file in a temp folder.
  const dataDir = await tempDir();
  const alive = path.join(dataDir, 'alive');
  const run = () => spawnSync('sh', ['-c', check.replaceAll(file, alive)]).status;
  assert.is(run(), 1, 'no node, no file: unhealthy');
  const node = await startedNode({
    FOGEDGE_DATA_DIR: dataDir,
    PORT: '0',
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__DEMOCAMERA: 'false',
    FOGEDGE_ALIVE_FILE: alive,
  });
  try {
    assert.is(run(), 0, 'running: healthy');
  } finally {
    await node.kill('SIGTERM');
  }
  utimesSync(alive, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000)); // as two minutes later
  assert.is(run(), 1, 'stopped (or stuck) for two minutes: unhealthy');
  await rm(dataDir, { recursive: true, force: true });
});

test('balena.yml names the same version as package.json; push.sh is valid bash', () => {
  assert.is(balena.type, 'sw.application');
  assert.is(balena.version, pkg.version);
  assert.ok(balena.data.supportedDeviceTypes.includes(balena.data.defaultDeviceType));
  assert.ok(statSync(path.join(dir, 'push.sh')).mode & 0o100, 'push.sh is executable');
  execFileSync('bash', ['-n', path.join(dir, 'push.sh')]);
});

test.run();
