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

/** A command to a device on its command topic (a siren, a light): what an automation or a user sends. */
export const CommandInput = z.strictObject({
  device: DeviceId,
  channel: Channel,
  payload: z.string().max(64 * 1024),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
});

/** A notification to users on their own topic (fogedge/users/<name>/notifications). */
export const NotifyUsersInput = z.strictObject({
  users: z.array(z.string().max(64)).min(1).max(100),
  title: z.string().min(1).max(200),
  message: z.string().max(2000).default(''),
  camera: z.string().max(64).optional(),
  /** The event whose picture goes with it, when there is one. */
  event: z.string().max(80).optional(),
  /** A picture of the camera now (JPEG), when no event's picture goes with it. */
  snapshotBase64: z
    .string()
    .max(4 * 1024 * 1024)
    .optional(),
  /** Who sent it: automation:<id>. */
  from: z.string().max(100).optional(),
});

/** What a device published under its own topics (not to the box's services): its states, its buttons. */
export interface DeviceMessage {
  device: string;
  /** Below fogedge/devices/<id>/, e.g. state or contact. */
  topic: string;
  /** As text (at most DEVICE_MESSAGE_BYTES of it). */
  payload: string;
  retain: boolean;
  at: string;
}
/** How much of a device's message goes on the bus. */
export const DEVICE_MESSAGE_BYTES = 4096;

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
    /** A command to a device (devices.command): its command topic, as text. */
    'mqtt.command': { input: z.input<typeof CommandInput>; answer: { ok: true } };
    /** Internal: a notification to these users (those whose role may see events). */
    'mqtt.notifyUsers': { input: z.input<typeof NotifyUsersInput>; answer: { sent: string[] } };
  }
  interface Events {
    /** A device's last connection to the broker closed: the services that talk to it know it is offline. */
    'mqtt.device.disconnected': { device: string };
    /** A device's first connection to the broker opened. */
    'mqtt.device.connected': { device: string };
    /** What devices published under their own topics (at most mqtt.deviceMessagesPerSecond per device),
     *  in order, those of one turn of the broker's event loop together: one bus event, not one each. */
    'device.messages': { messages: DeviceMessage[] };
    /** What a device sent to the box's services (USP records, agent hellos, motion, replies). */
    'agent.message': AgentMessage;
  }
}
