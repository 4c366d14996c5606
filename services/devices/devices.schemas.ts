// The site's MQTT devices as the API, the bus and the operator see them.
import { z } from 'zod';

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

export interface Device {
  id: string;
  name: string;
  state: z.infer<typeof DeviceState>;
  secretHash: string;
  grants: string[];
  createdAt: string;
  /** How it came: added by someone, or paired (it knocked during the pairing window). */
  origin: 'added' | 'paired';
}
