// Builds the node's ServiceBroker: in-process bus by default, NATS when a
// transporter is set. Retries, timeouts and the circuit breaker are Moleculer's own.
import moleculer, { type BrokerOptions } from 'moleculer';
import type { Config } from '../appliance/config.ts';
import { version } from '../appliance/version.ts';
import { inputMiddleware } from '../lib/actions.ts';
import { SERVICE_FACTORIES } from './services.ts';

/**
 * One JSON record a line, with the node and service bindings. Like Moleculer's "jsonext", but an
 * Error keeps its message and stack (they are not enumerable, so a plain merge loses them).
 */
function jsonLine(type: string, args: unknown[], bindings: Record<string, unknown>): string[] {
  const record: Record<string, unknown> = { time: new Date().toISOString(), level: type, message: '', ...bindings };
  const words: string[] = [];
  args.forEach((arg, i) => {
    if (arg instanceof Error) {
      words.push(arg.message);
      record['error'] = { name: arg.name, message: arg.message, stack: arg.stack };
    } else if (i === 0 && arg && typeof arg === 'object') Object.assign(record, arg);
    else words.push(typeof arg === 'string' ? arg : JSON.stringify(arg));
  });
  record['message'] = words.join(' ');
  return [JSON.stringify(record)];
}

export function brokerOptions(config: Config): BrokerOptions {
  return {
    namespace: 'fogedge',
    ...(config.nodeId ? { nodeID: config.nodeId } : {}),
    transporter: config.transporter
      ? {
          type: 'NATS',
          // The nats client reconnects for ever; Moleculer re-discovers nodes by heartbeat.
          options: { url: config.transporter, maxReconnectAttempts: -1, reconnectTimeWait: 1000 },
        }
      : null,
    logger: {
      type: 'Console',
      options: { level: config.logLevel, formatter: jsonLine, colors: false, moduleColors: false },
    },
    requestTimeout: config.bus.requestTimeoutMs,
    retryPolicy: {
      enabled: config.bus.retries > 0,
      retries: config.bus.retries,
      delay: 100,
      maxDelay: 2000,
      factor: 2,
      // Only transient errors (MoleculerRetryableError: timeouts, lost nodes) are retried.
      check: (err: Error) => Boolean((err as { retryable?: boolean }).retryable),
    },
    circuitBreaker: {
      enabled: true,
      threshold: 0.5,
      minRequestCount: 20,
      windowTime: 60, // s
      halfOpenTime: 10_000, // ms
      // Client errors (4xx) say nothing about the health of the node that answered.
      check: (err: Error) => ((err as { code?: number }).code ?? 500) >= 500,
    },
    heartbeatInterval: config.bus.heartbeatIntervalS,
    heartbeatTimeout: config.bus.heartbeatTimeoutS,
    registry: { strategy: 'RoundRobin', preferLocal: true },
    dependencyInterval: 100, // ms between checks for a service's dependencies (default 1 s)
    validator: false, // actions are validated by their zod `input` (inputMiddleware)
    middlewares: [inputMiddleware()],
    skipProcessEventRegistration: true, // main.ts owns signals and the exit code
    metadata: { version },
  };
}

export function createBroker(config: Config, overrides: Partial<BrokerOptions> = {}): moleculer.ServiceBroker {
  const broker = new moleculer.ServiceBroker({ ...brokerOptions(config), ...overrides });
  for (const name of config.services) broker.createService(SERVICE_FACTORIES[name](config));
  return broker;
}
