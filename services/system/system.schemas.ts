// What the system service tells others: the box's health (every service on every node), and
// what the node that answers runs.
import { z } from 'zod';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export type HealthStatus = 'ok' | 'degraded' | 'down';

export interface Health {
  status: HealthStatus;
  version: string;
  node: string;
  time: string;
  services: Array<{
    name: string;
    status: HealthStatus;
    instances: Array<{ node: string; status: HealthStatus; error?: string }>;
  }>;
  nodes: unknown[];
}

/** The node that answers: its version, uptime and memory. */
export const SystemInfo = z.object({
  version: z.string(),
  node: z.string(),
  hostname: z.string(),
  uptimeSeconds: z.number().int(),
  transporter: z.enum(['nats', 'embedded']),
  memoryRssBytes: z.number().int(),
  services: z.array(z.string()).describe('the services this node runs'),
});
export type SystemInfo = z.output<typeof SystemInfo>;

declare module '../../lib/bus.ts' {
  interface Actions {
    'system.health': { input: Record<string, never>; answer: Health };
    'system.info': { input: Record<string, never>; answer: SystemInfo };
  }
}
