// What the operator sends down (commands, desired configuration) and what the box may be
// told to run. Everything is checked here first, then again by the actions it lands on.
import { z } from 'zod';
import { CameraId, CameraUpdate } from '../cameras/cameras.schemas.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
import { Policy } from '../sync/sync.schemas.ts';

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
