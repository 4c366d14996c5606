// What the system service tells others: the box's health (every service on every node).
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

declare module '../../lib/bus.ts' {
  interface Actions {
    'system.health': { input: Record<string, never>; answer: Health };
  }
}
