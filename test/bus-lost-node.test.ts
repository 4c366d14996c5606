// A node killed without a goodbye (SIGKILL) is marked lost by its silence: Moleculer's own heartbeat
// check is turned off here, so only the box's lostNodeWatch (gateway/broker.ts) can notice it.
// Real nats-server, a real FogEdge node process for the victim.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm } from 'node:fs/promises';
import moleculer from 'moleculer';
import { ConfigSchema } from '../appliance/config.ts';
import { brokerOptions } from '../gateway/broker.ts';
import { tempDir } from './helpers/box.ts';
import { freePort, NatsServer, startedNode, waitUntil } from './helpers/processes.ts';

test('a killed node is marked lost about bus.heartbeatTimeoutS after its last heartbeat, by the box alone', async () => {
  const nats = new NatsServer(await freePort());
  await nats.start();
  const dataDir = await tempDir();
  const config = ConfigSchema.parse({
    dataDir,
    transporter: nats.url,
    nodeId: 'watcher',
    services: ['system'],
    logLevel: 'warn',
  });
  const options = brokerOptions(config);
  const watcher = new moleculer.ServiceBroker({
    ...options,
    registry: { ...options.registry, discoverer: { type: 'Local', options: { disableHeartbeatChecks: true } } },
  });
  await watcher.start();
  const victim = await startedNode({
    TRANSPORTER: nats.url,
    NODEID: 'victim',
    SERVICES: 'system',
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(await freePort()),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__DEMOCAMERA: 'false',
  });
  try {
    const node = () => watcher.registry.nodes.get('victim');
    await waitUntil('the victim seen', () => node()?.available === true, 20_000, 50);
    await victim.kill('SIGKILL');
    const killedAt = Date.now();
    await waitUntil('the victim marked lost', () => node()?.available === false, 10_000, 25);
    const after = Date.now() - killedAt;
    // Its last heartbeat was up to 1 s before the kill; the timeout is 3 s, checked every 250 ms.
    assert.ok(after <= 4000, `marked lost ${after} ms after the kill`);
  } finally {
    await victim.kill('SIGKILL');
    await watcher.stop();
    await nats.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
