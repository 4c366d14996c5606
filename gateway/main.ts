// Process entry of a FogEdge node: read the config, start the services this
// node runs, stop them cleanly on SIGTERM/SIGINT.
import { writeFileSync } from 'node:fs';
import { ConfigError, loadConfig, type Config } from '../appliance/config.ts';
import { createBroker } from './broker.ts';
import { redactUrl } from '../lib/redact.ts';

const SHUTDOWN_GRACE_MS = 8_000;
const ALIVE_EVERY_MS = 10_000;
const EXIT_CONFIG = 78; // EX_CONFIG from sysexits.h: supervisors should not restart in a loop

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(
      JSON.stringify({ time: new Date().toISOString(), level: 'fatal', mod: 'config', message: err.message }) + '\n',
    );
    process.exit(EXIT_CONFIG);
  }
}

const config = readConfig();
const broker = createBroker(config);
const log = broker.getLogger('gateway');

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info(`${signal} received, stopping services`);
  const force = setTimeout(() => {
    log.error(`services did not stop within ${SHUTDOWN_GRACE_MS} ms, exiting`);
    process.exit(1);
  }, SHUTDOWN_GRACE_MS).unref();
  try {
    await broker.stop();
    clearTimeout(force);
    process.exit(0);
  } catch (err) {
    log.error(`stop failed: ${(err as Error).message}`);
    process.exit(1);
  }
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

/**
 * FOGEDGE_ALIVE_FILE: touched every 10 s while this node runs and is on its bus, for a container
 * health check on a node without HTTP (balena's detector): a stale file means a stuck node.
 */
function keepAliveFile(file: string) {
  const touch = () => {
    const onBus =
      !config.transporter || Boolean((broker as unknown as { transit?: { connected: boolean } }).transit?.connected);
    if (!stopping && onBus) writeFileSync(file, `${new Date().toISOString()}\n`);
  };
  touch();
  setInterval(touch, ALIVE_EVERY_MS).unref();
}

const started = Date.now();
broker
  .start()
  .then(() => {
    const mode = config.transporter ? `NATS ${redactUrl(config.transporter)}` : 'embedded (one process)';
    log.info(
      `FogEdge node ${broker.nodeID} ready in ${Date.now() - started} ms: ${config.services.join(', ')} over ${mode}`,
    );
    const aliveFile = process.env['FOGEDGE_ALIVE_FILE'];
    if (aliveFile) keepAliveFile(aliveFile);
  })
  .catch((err: Error) => {
    log.fatal(`start failed: ${err.message}`);
    process.exit(1);
  });
