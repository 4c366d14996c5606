// The site's MQTT devices as the API, the bus and the operator see them.
import { z } from 'zod';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const DeviceId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, '1-64 characters: lower-case letters, digits, _ and -')
  .describe('device id (its MQTT user name)');
export const DeviceState = z.enum(['allowed', 'denied', 'pending']);
/** Extra topic filters a device may subscribe to, e.g. fogedge/cameras/+/status. */
export const Grants = z
  .array(
    z
      .string()
      .min(1)
      .max(200)
      .regex(/^fogedge\//, 'topics under fogedge/'),
  )
  .max(32);

/** What kind of thing a device is: its state is read as one (contact: open or closed). generic: as sent. */
export const DeviceType = z.enum(['generic', 'contact', 'motion', 'switch', 'temperature']);
export type DeviceType = z.infer<typeof DeviceType>;

/** One topic's last message of a device, and its value as the device's type reads it. */
export const StateEntry = z.object({
  payload: z.string().describe('as sent (its first 4 KiB)'),
  value: z
    .union([z.string(), z.number(), z.boolean()])
    .nullable()
    .describe(
      'contact: open|closed; motion: detected|clear; switch: on|off; temperature: a number; generic: the JSON value or the text',
    ),
  problem: z.string().optional().describe("why the payload is not a value of the device's type"),
  retained: z.boolean(),
  at: z.string(),
});
export type StateEntry = z.infer<typeof StateEntry>;
/** A device's states: by topic below fogedge/devices/<id>/ (state, contact, battery). */
export type DeviceStates = Record<string, StateEntry>;

export interface Device {
  id: string;
  name: string;
  state: z.infer<typeof DeviceState>;
  secretHash: string;
  grants: string[];
  createdAt: string;
  /** How it came: added by someone, or paired (it knocked during the pairing window). */
  origin: 'added' | 'paired';
  /** What it is (absent: generic). */
  type?: DeviceType;
}

/** A device without its secret's hash: what leaves the devices service. */
export type PublicDevice = Omit<Device, 'secretHash'>;

export const ListInput = z.strictObject({ state: DeviceState.optional() });
export const AuthenticateInput = z.strictObject({
  id: z.string().max(200),
  secret: z.string().max(1024),
  ip: z.string().max(100).optional(),
  /** Whether an unknown id may land as pending (the broker asks so once it is not a user either). */
  pair: z.boolean().default(false),
});

/** What a device change says on the bus. */
export interface DeviceChanged {
  id: string;
  by: string;
  state?: z.infer<typeof DeviceState>;
  changed?: string[];
}

declare module '../../lib/bus.ts' {
  interface Events {
    /** Devices' messages under their own topics, each as its state on that topic, in order (one
     *  event per device.messages). */
    'device.reported': { reports: { device: string; topic: string; state: StateEntry }[] };
    'device.updated': DeviceChanged;
    'device.removed': DeviceChanged;
  }
  interface Actions {
    'devices.list': {
      input: z.input<typeof ListInput>;
      answer: { devices: PublicDevice[]; pairingUntil: string | null };
    };
    /** Each device's last message per topic, and its value (one device, or all). */
    'devices.states': { input: { id?: string }; answer: Record<string, DeviceStates> };
    /** Internal: the broker signs a device in (or lands it as pending while pairing is open). */
    'devices.authenticate': {
      input: z.input<typeof AuthenticateInput>;
      answer: { id: string; state: z.infer<typeof DeviceState>; grants: string[] };
    };
  }
}
