// What the MQTT service offers and tells others: sending to one device on its own command
// topic, what devices send to the box's services, and devices going offline.
import { z } from 'zod';
import { CHANNEL } from '../../lib/topics.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

/** A channel under a device's topics: fogedge/devices/<id>/cmd/<channel>. */
const Channel = z.string().regex(CHANNEL);

export const SendToDeviceInput = z.strictObject({
  device: DeviceId,
  channel: Channel,
  payloadBase64: z.string().max(16 * 1024 * 1024),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
  // MQTT 5 properties for the device (3.1.1 devices do without): what the payload is,
  // and where the device answers (its own device's channels to the box only).
  contentType: z.string().max(100).optional(),
  responseChannel: z
    .string()
    .regex(/^(usp|agent\/[a-z0-9-]+)$/)
    .optional(),
});

export interface AgentMessage {
  device: string;
  /** Below fogedge/devices/<id>/: usp, agent/hello, agent/motion, agent/reply. */
  channel: string;
  payloadBase64: string;
  /** The topic the device asked to be answered on (MQTT 5 Response Topic, or a 3.1.1 reply-to). */
  replyTo?: string;
}

declare module '../../lib/bus.ts' {
  interface Actions {
    /** Internal: a service of the box sends to one device, on the device's own command topic. */
    'mqtt.sendToDevice': { input: z.input<typeof SendToDeviceInput>; answer: { ok: true } };
  }
  interface Events {
    /** A device's last connection to the broker closed: the services that talk to it know it is offline. */
    'mqtt.device.disconnected': { device: string };
    /** What a device sent to the box's services (USP records, agent hellos, motion, replies). */
    'agent.message': AgentMessage;
  }
}
