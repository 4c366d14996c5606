// The README's split deployment, started as the README writes it: each command line of the "Several
// nodes over NATS" example with its own environment, against a real nats-server; the deployment
// is healthy (200, every declared service ok) and does not miss the services it leaves out.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from './helpers/box.ts';
import { freePort, getJson, NatsServer, startedNode, waitUntil, type Proc } from './helpers/processes.ts';

/** The environment of each `... npm start` line of the README's sh block under `heading`. */
async function readmeCommands(heading: string): Promise<Array<Record<string, string>>> {
  const readme = await readFile(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(`## ${heading}`));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block
    .split('\n')
    .filter((line) => /\bnpm start\b/.test(line))
    .map((line) =>
      Object.fromEntries(
        [...line.split('npm start')[0]!.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as [string, string]),
      ),
    );
}

test('the split deployment in the README is healthy as written', async () => {
  const commands = await readmeCommands('Several nodes over NATS');
  assert.ok(commands.length >= 2, `the README's example has ${commands.length} nodes`);
  const nats = new NatsServer(await freePort());
  await nats.start();
  const dataDir = await tempDir();
  const nodes: Proc[] = [];
  let base = '';
  try {
    for (const env of commands) {
      const port = await freePort();
      if (env['SERVICES']!.split(',').includes('api')) base = `http://127.0.0.1:${port}`;
      nodes.push(
        await startedNode({
          ...env,
          // This machine's NATS server, ports and data root; the rest as the README has it.
          TRANSPORTER: nats.url,
          PORT: String(port),
          FOGEDGE__HTTP__HOST: '127.0.0.1',
          FOGEDGE_DATA_DIR: dataDir,
        }),
      );
    }
    const health = await waitUntil(
      'the deployment healthy',
      async () => {
        const h = await getJson(`${base}/api/v1/health`);
        return h.status === 200 ? h.json : undefined;
      },
      30_000,
      250,
    );
    assert.is(health.status, 'ok');
    const declared = commands[0]!['DEPLOYMENT']!.split(',');
    assert.equal(health.services.map((s: { name: string }) => s.name).sort(), [...declared].sort());
    assert.ok(health.services.every((s: { status: string }) => s.status === 'ok'));
    // A declared service whose node goes: degraded, with the service named.
    await nodes.pop()!.kill('SIGTERM');
    const after = await waitUntil(
      'the deployment missing a service',
      async () => {
        const h = await getJson(`${base}/api/v1/health`);
        return h.status === 503 ? h.json : undefined;
      },
      20_000,
      250,
    );
    assert.is(after.status, 'degraded');
    assert.ok(after.services.some((s: { name: string; status: string }) => s.status === 'down'));
  } finally {
    for (const node of nodes) await node.kill('SIGTERM');
    await nats.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
