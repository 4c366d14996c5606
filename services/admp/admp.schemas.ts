// What the operator sends down (commands, desired configuration) and what the box may be
// told to run. Everything is checked here first, then again by the actions it lands on.
import { z } from 'zod';
import { CameraId, CameraUpdate } from '../cameras/cameras.schemas.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
import { Policy } from '../sync/sync.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

/** A command: the box answers on commands/res with the same id, once, however often it is delivered. */
export const Command = z.strictObject({
  id: z.string().regex(/^[\w.:-]{1,64}$/, '1-64 letters, digits, _ . : -'),
  action: z.string().min(1).max(64),
  params: z.record(z.string(), z.unknown()).default({}),
  /**
   * When the operator sent it: required. Older than admp.commandMaxAgeSeconds, or more than
   * admp.commandMaxSkewSeconds ahead of the box's clock, it is refused.
   */
  sentAt: z.iso.datetime({ offset: true }),
});
export type Command = z.output<typeof Command>;

/**
 * The actions the operator may run: what an installer may do through the local API, and the
 * uplink's own. Nothing here runs a program or reads a file the operator names; each call
 * still goes through the action's own schema and permission check, as the ADMP's caller.
 */
export const REMOTE_ACTIONS = [
  'system.health',
  'system.info',
  'system.config',
  'system.diagnostics',
  'system.restartServices',
  'system.update',
  'system.updateStatus',
  'cameras.list',
  'cameras.get',
  'cameras.update',
  'devices.list',
  'devices.update',
  'devices.pairing',
  'recorder.storage',
  'detector.status',
  'sync.status',
  'sync.policy',
  'sync.setPolicy',
  'admp.status',
  // The site's mode: the operator may see it and switch it (remote support); what modes do is the household's.
  'modes.list',
  'modes.set',
  'usp.endpoints',
  'usp.firmwareUpdate',
  'usp.campaign',
  'usp.campaigns',
  // The camera agents' data models: read, set, add, delete, run commands (Device.Reboot()), and
  // what they notified. Not agentCommand: its snapshot is a picture, which the operator never sees.
  'usp.get',
  'usp.set',
  'usp.add',
  'usp.delete',
  'usp.operate',
  'usp.notifications',
] as const;

/** The uplink's own settings, which the operator sets in the desired configuration. */
export const UplinkSettings = z.strictObject({
  /** Health and telemetry every so often, s. */
  telemetrySeconds: z.number().min(1).max(86_400).optional(),
  /** Detection events (start and end, as JSON, no pictures) go up. */
  events: z.boolean().default(true),
  /** Only events with these labels; empty: all. */
  eventLabels: z.array(z.string().min(1).max(40)).max(80).default([]),
  /** The audit log goes up. */
  audit: z.boolean().default(true),
});
export type UplinkSettings = z.output<typeof UplinkSettings>;

/** What of a camera the operator may set: not its URL or password, which stay with the household. */
export const RemoteCameraSettings = CameraUpdate.pick({
  enabled: true,
  recording: true,
  detection: true,
  notifications: true,
});

/** The desired half of the device twin: every part optional, absent parts are left as they are. */
export const DesiredConfig = z.strictObject({
  uplink: UplinkSettings.optional(),
  syncPolicy: Policy.optional(),
  cameras: z.record(CameraId, RemoteCameraSettings).optional(),
  devices: z.record(DeviceId, z.strictObject({ state: z.enum(['allowed', 'denied']) })).optional(),
});
export type DesiredConfig = z.output<typeof DesiredConfig>;

export const Desired = z.strictObject({
  /** Increases with every change; a version the box has applied already is only reported again. */
  version: z.number().int().min(0),
  config: DesiredConfig,
});

const Counts = z
  .record(z.string(), z.number().int())
  .describe('per kind of message: health, event, reported, reply, audit');

/** The uplink as the installer sees it (GET /api/v1/admp): provisioning, the connection, the queue, the twin. */
export const AdmpStatus = z.object({
  provisioned: z.boolean(),
  source: z.string().nullable().describe("where the provisioning came from: 'environment', or its file"),
  provisioningError: z.string().nullable(),
  endpoint: z
    .object({
      url: z.string().describe('password removed'),
      boxId: z.string(),
      username: z.string().nullable(),
      topicRoot: z.string(),
      clientCertificate: z.boolean(),
      customCa: z.boolean(),
      remoteAccess: z
        .object({ browserUrl: z.string(), turn: z.boolean() })
        .nullable()
        .describe('what the operator runs for remote access; null: none'),
    })
    .nullable(),
  connected: z.boolean(),
  lastConnectedAt: z.string().nullable(),
  lastDisconnectedAt: z.string().nullable(),
  lastError: z.string().nullable(),
  lastErrorAt: z.string().nullable(),
  retryInMs: z.number().nullable().describe('how long until the next try, while not connected'),
  queue: z.object({
    items: z.number().int(),
    bytes: z.number().int(),
    byKind: Counts,
    oldestSeq: z.number().int().nullable(),
    inFlight: z.number().int(),
    maxItems: z.number().int(),
    maxBytes: z.number().int(),
    dropped: Counts.describe('dropped to make room, per kind'),
    notQueued: Counts.describe('could not be stored, per kind'),
  }),
  desired: z.object({
    appliedVersion: z.number().int().nullable(),
    appliedAt: z.string().nullable(),
    lastRejected: z
      .object({
        version: z.number().int().nullable(),
        error: z
          .object({ type: z.string(), code: z.number().optional(), message: z.string(), data: z.unknown().optional() })
          .optional(),
        at: z.string(),
      })
      .nullable(),
  }),
  settings: UplinkSettings.extend({ telemetrySeconds: z.number() }),
});
export type AdmpStatus = z.output<typeof AdmpStatus>;

/** Where a browser away from home finds the box: the operator's broker and the box's topics. */
export const RemoteEndpoint = z.object({
  boxId: z.string(),
  topicRoot: z.string(),
  browserUrl: z.string(),
  appUrl: z.string().nullable(),
  /** STUN servers for the browser's own side ("stun:host:3478"). */
  stun: z.array(z.string()),
});
export type RemoteEndpoint = z.infer<typeof RemoteEndpoint>;

declare module '../../lib/bus.ts' {
  interface Actions {
    /** Where browsers away from home reach the box; 409 when the operator gives no remote access. */
    'admp.remoteEndpoint': { input: Record<string, never>; answer: RemoteEndpoint };
  }
}
