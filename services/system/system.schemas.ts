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

/** The box's own update in progress or last done (the release runner's state file). */
export const UpdateState = z.object({
  state: z.enum(['trying', 'confirmed', 'rolled-back']),
  from: z.string(),
  to: z.string(),
  startedAt: z.string(),
  deadline: z.string().describe('not confirmed by then: rolled back'),
  healthySeconds: z.number().describe('health ok for this long confirms the release'),
  boots: z.number().int().describe('starts of the new release so far'),
  by: z.string(),
  reason: z.string().optional(),
  finishedAt: z.string().optional(),
  reported: z.boolean().optional().describe('the outcome was announced (audit, ADMP)'),
});
export type UpdateState = z.output<typeof UpdateState>;

/** How the box updates and where it stands: GET /api/v1/system/update. */
export const UpdateStatus = z.object({
  version: z.string(),
  mode: z.enum(['balena', 'release', 'checkout']),
  update: UpdateState.nullable(),
  current: z.string().nullable().optional().describe('the release running (release mode)'),
  previous: z.string().nullable().optional().describe('the release a rollback goes back to'),
  releases: z.array(z.string()).optional().describe('the releases on disk'),
});
export type UpdateStatus = z.output<typeof UpdateStatus>;

/** An update asked for: balena's supervisor was asked, or the release is installed and the box restarts. */
export const UpdateStarted = z.object({
  mode: z.enum(['balena', 'release']),
  from: z.string(),
  to: z.string(),
  state: z.enum(['requested', 'restarting']),
});

/** One sample of the node's figures (services/system/history.ts). */
export const HistorySample = z.object({
  at: z.string(),
  cpuPercent: z.number().describe('the node and its ffmpegs since the last sample, % of one core'),
  cores: z.number().int(),
  memoryBytes: z.number().describe('the node and its ffmpegs (proportional: shared libraries once)'),
  diskUsedPercent: z.number().nullable().describe("the data root's disk"),
  syncQueue: z.number().nullable().describe('items waiting to go to the cloud; null: sync did not answer'),
  cameras: z.record(
    z.string(),
    z.object({
      cpuPercent: z.number().describe("the camera's ffmpegs and its inferences in this node, % of one core"),
      fps: z.number().nullable().describe('frames the detector read a second; null: no detection'),
      inferenceMs: z.number().nullable(),
    }),
  ),
});
export type HistorySample = z.output<typeof HistorySample>;

export const History = z.object({
  everySeconds: z.number(),
  node: z.string(),
  samples: z.array(HistorySample).describe('oldest first'),
});
export type History = z.output<typeof History>;

declare module '../../lib/bus.ts' {
  interface Actions {
    'system.history': { input: Record<string, never>; answer: History };
    'system.health': { input: Record<string, never>; answer: Health };
    'system.info': { input: Record<string, never>; answer: SystemInfo };
    'system.updateStatus': { input: Record<string, never>; answer: UpdateStatus };
  }
}
