// Builds the node's ServiceBroker: in-process bus by default, NATS when a
// transporter is set. Retries, timeouts and the circuit breaker are Moleculer's own.
import moleculer, { type BrokerOptions, type Middleware } from 'moleculer';
import type { Config, ServiceName } from '../appliance/config.ts';
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
    dependencyInterval: 25, // ms between checks for a service's dependencies (default 1 s): a chain of them waits one each
    validator: false, // actions are validated by their zod `input` (inputMiddleware)
    middlewares: [inputMiddleware(), busGuard(), lostNodeWatch(config.bus.heartbeatTimeoutS * 1000)],
    // A service stops only after the calls and events it is handling have finished.
    tracking: { enabled: true, shutdownTimeout: 5_000 },
    skipProcessEventRegistration: true, // main.ts owns signals and the exit code
    metadata: { version },
  };
}

/**
 * Marks a node lost once no heartbeat came from it for `timeoutMs`, checked 4 times a second.
 * Moleculer's own check runs only once per heartbeat timeout and counts whole seconds, so a killed
 * node could go unnoticed for twice the timeout (7 s at 3 s); calls waiting on it fail as soon as
 * it is marked (503). A node marked lost by mistake comes back with its next heartbeat.
 */
function lostNodeWatch(timeoutMs: number): Middleware {
  let timer: NodeJS.Timeout | undefined;
  return {
    name: 'LostNodeWatch',
    started(broker: moleculer.ServiceBroker) {
      const { discoverer } = broker.registry as unknown as {
        discoverer?: {
          heartbeatReceived(nodeID: string, payload: unknown): void;
          remoteNodeDisconnected(nodeID: string, unexpected: boolean): void;
        };
      };
      if (!broker.transit || !discoverer) return;
      const lastHeard = new Map<string, number>();
      const heartbeatReceived = discoverer.heartbeatReceived.bind(discoverer);
      discoverer.heartbeatReceived = (nodeID, payload) => {
        lastHeard.set(nodeID, Date.now());
        heartbeatReceived(nodeID, payload);
      };
      timer = setInterval(() => {
        const now = Date.now();
        for (const node of broker.registry.nodes.toArray()) {
          if (node.local || !node.available) continue;
          const heard = lastHeard.get(node.id);
          if (heard === undefined) lastHeard.set(node.id, now);
          else if (now - heard > timeoutMs) {
            lastHeard.delete(node.id);
            discoverer.remoteNodeDisconnected(node.id, true);
          }
        }
      }, 250);
      timer.unref();
    },
    stopped() {
      clearInterval(timer);
    },
  } as unknown as Middleware;
}

/**
 * A call to another node while the bus is down fails at once with a reason (a 503), instead of
 * waiting out the request timeout: the nats client would only buffer it until it reconnects.
 */
function busGuard(): Middleware {
  let busDown = false;
  return {
    name: 'BusGuard',
    started(broker: moleculer.ServiceBroker) {
      const client = (broker.transit?.tx as { client?: { status(): AsyncIterable<{ type: string }> } } | undefined)
        ?.client;
      if (!client?.status) return;
      void (async () => {
        for await (const s of client.status()) {
          if (s.type === 'disconnect') busDown = true;
          else if (s.type === 'reconnect') busDown = false;
        }
      })();
    },
    remoteAction(next: (ctx: moleculer.Context) => Promise<unknown>) {
      return (ctx: moleculer.Context) => {
        if (busDown) {
          return Promise.reject(
            new moleculer.Errors.ServiceNotAvailableError({
              action: ctx.action?.name ?? '?',
              nodeID: `${ctx.nodeID} (the bus is disconnected)`,
            }),
          );
        }
        return next(ctx);
      };
    },
  } as unknown as Middleware;
}

/**
 * The order a node stops in: what makes work first (requests, video, detections, devices), then
 * what stores it, then what hands it on (MQTT, cloud, operator), the registries last. Services of
 * one stage stop together; with tracking on, each finishes the work it holds first.
 */
export const STOP_STAGES: ServiceName[][] = [
  ['api'],
  ['webrtc'],
  ['streams', 'detector', 'usp', 'devices', 'automations'],
  ['events', 'recorder'],
  ['mqtt'],
  // What is told after what tells it (the MQTT service decides who is notified).
  ['push'],
  ['cameras', 'modes', 'system', 'accounts'],
  // The uplinks last: what the others announce as they stop is queued for the cloud and the operator.
  ['sync', 'admp'],
];

class FogEdgeBroker extends moleculer.ServiceBroker {
  override async stop(): Promise<void> {
    for (const stage of STOP_STAGES) {
      const services = this.services.filter((s) => (stage as string[]).includes(s.name));
      await Promise.all(services.map((s) => this.destroyService(s)));
    }
    return super.stop();
  }
}

export function createBroker(config: Config, overrides: Partial<BrokerOptions> = {}): moleculer.ServiceBroker {
  const broker = new FogEdgeBroker({ ...brokerOptions(config), ...overrides });
  for (const name of config.services) broker.createService(SERVICE_FACTORIES[name](config));
  return broker;
}
