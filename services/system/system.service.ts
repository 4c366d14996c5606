// system: the box's health (per service, per node), version and configuration.
import os from 'node:os';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { redactedConfig, SERVICE_NAMES, type Config } from '../../appliance/config.ts';
import { version } from '../../appliance/version.ts';

const NoInput = z.strictObject({});
const HEALTH_CHECK_TIMEOUT_MS = 1500;

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
    },
  };
}
