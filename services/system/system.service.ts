// system: the box's health (per service, per node), version and configuration.
import os from 'node:os';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { redactedConfig, SERVICE_NAMES, type Config, type ServiceName } from '../../appliance/config.ts';
import { NotFoundError } from '../../lib/errors.ts';
import { version } from '../../appliance/version.ts';

const NoInput = z.strictObject({});
/** The bus-facing services (system answers the call, api carries it, admp may have sent it) stay up. */
const RESTARTABLE = SERVICE_NAMES.filter((n): n is Exclude<ServiceName, 'system' | 'api' | 'admp'> => !['system', 'api', 'admp'].includes(n));
const HEALTH_CHECK_TIMEOUT_MS = 1500;
const RESTART_TIMEOUT_MS = 30_000;

type Status = 'ok' | 'degraded' | 'down';

interface RegistryService {
  name: string;
  nodeID: string;
  available: boolean;
  actions?: Record<string, unknown>;
}
interface RegistryNode {
  id: string;
  available: boolean;
  local: boolean;
  hostname?: string;
  lastHeartbeatTime?: number;
  cpu?: number | null;
  services?: Array<{ name: string }>;
}

export function systemService(config: Config): ServiceSchema {
  return {
    name: 'system',

    actions: {
      health: action({
        input: NoInput,
        permission: 'public',
        async handler(ctx) {
          const broker = ctx.broker;
          const registry = broker.registry as unknown as {
            getServiceList(o: object): RegistryService[];
            getNodeList(o: object): RegistryNode[];
          };
          const instances = registry
            .getServiceList({ onlyLocal: false, onlyAvailable: true, skipInternal: true, withActions: true })
            .filter((s) => (SERVICE_NAMES as readonly string[]).includes(s.name));

          const services = await Promise.all(
            SERVICE_NAMES.map(async (name) => {
              const here = instances.filter((s) => s.name === name);
              const checks = await Promise.all(
                here.map(async (s) => {
                  // system answers this very call; asking it again would recurse.
                  if (name === 'system' || !s.actions?.[`${name}.health`]) return { node: s.nodeID, status: 'ok' as Status };
                  try {
                    const res = await broker.call<{ status: Status }, object>(`${name}.health`, {}, {
                      nodeID: s.nodeID,
                      timeout: HEALTH_CHECK_TIMEOUT_MS,
                      retries: 0,
                    });
                    return { node: s.nodeID, status: res.status };
                  } catch (err) {
                    return { node: s.nodeID, status: 'down' as Status, error: (err as Error).message };
                  }
                }),
              );
              const status: Status = checks.some((c) => c.status === 'ok')
                ? checks.every((c) => c.status === 'ok') ? 'ok' : 'degraded'
                : 'down';
              return { name, status, instances: checks };
            }),
          );

          const nodes = registry.getNodeList({ onlyAvailable: false, withServices: true }).map((n) => ({
            id: n.id,
            available: n.available,
            local: n.local,
            hostname: n.hostname ?? null,
            cpu: n.cpu ?? null,
            services: (n.services ?? []).map((s) => s.name).filter((s) => !s.startsWith('$')),
          }));
          const status: Status = services.every((s) => s.status === 'ok') ? 'ok' : 'degraded';
          return { status, version, node: broker.nodeID, time: new Date().toISOString(), services, nodes };
        },
      }),

      info: action({
        input: NoInput,
        permission: 'system.view',
        handler: (ctx) => ({
          version,
          node: ctx.broker.nodeID,
          hostname: os.hostname(),
          uptimeSeconds: Math.round(process.uptime()),
          transporter: config.transporter ? 'nats' : 'embedded',
          memoryRssBytes: process.memoryUsage.rss(),
          services: config.services,
        }),
      }),

      config: action({
        input: NoInput,
        permission: 'settings.manage',
        handler: () => redactedConfig(config),
      }),

      /** What support needs to see what is wrong, in one answer: no secrets, no video, no events. */
      diagnostics: action({
        input: NoInput,
        permission: 'settings.manage',
        async handler(ctx) {
          const ask = (name: string, params: object = {}) =>
            ctx.call(name, params, { timeout: HEALTH_CHECK_TIMEOUT_MS, retries: 0 }).catch((err: Error) => ({ unavailable: err.message }));
          const [health, cameras, storage, detector, sync, syncQueue, uplink] = await Promise.all([
            ask('system.health'), ask('cameras.list'), ask('recorder.storage'), ask('detector.status'), ask('sync.status'), ask('sync.queue', { limit: 20 }), ask('admp.status'),
          ]);
          return {
            at: new Date().toISOString(),
            version,
            node: ctx.broker.nodeID,
            runtime: { node: process.version, platform: `${os.platform()} ${os.release()} ${os.arch()}`, uptimeSeconds: Math.round(os.uptime()), processUptimeSeconds: Math.round(process.uptime()), loadAverage: os.loadavg(), memory: { totalBytes: os.totalmem(), freeBytes: os.freemem(), rssBytes: process.memoryUsage.rss() } },
            config: redactedConfig(config),
            health, cameras, storage, detector, sync, syncQueue, uplink,
          };
        },
      }),

      /** Stops and starts services of this node (a stuck camera pipeline, a wedged broker) without a reboot. */
      restartServices: action({
        input: z.strictObject({ services: z.array(z.enum(RESTARTABLE)).min(1).max(RESTARTABLE.length) }),
        permission: 'settings.manage',
        async handler(ctx) {
          // Imported here: the service list imports this service.
          const { SERVICE_FACTORIES } = await import('../../gateway/services.ts');
          const missing = ctx.params.services.filter((name) => !ctx.broker.getLocalService(name));
          if (missing.length) throw new NotFoundError('Service on this node', missing.join(', '));
          const started = Date.now();
          for (const name of ctx.params.services) {
            await ctx.broker.destroyService(ctx.broker.getLocalService(name)!);
            ctx.broker.createService(SERVICE_FACTORIES[name](config)); // started by the broker, as it is running
            await ctx.broker.waitForServices([name], RESTART_TIMEOUT_MS);
          }
          ctx.broadcast('system.services.restarted', { services: ctx.params.services, by: ctx.meta.caller?.username ?? 'box' });
          return { restarted: ctx.params.services, tookMs: Date.now() - started };
        },
      }),
    },
  };
}
