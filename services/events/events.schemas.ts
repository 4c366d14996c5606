// What an event is, as the API, the bus, cloud sync and the web UI see it.
import { z } from 'zod';
import { CameraId } from '../cameras/cameras.schemas.ts';

export const EventId = z
  .string()
  .regex(/^[a-z0-9-]{1,80}$/)
  .describe('event id');

/** The label of an event a camera's own motion sensor reports (no object class). */
export const CAMERA_MOTION = 'motion';

const Box = z
  .tuple([z.number(), z.number(), z.number(), z.number()])
  .describe('[x1, y1, x2, y2] of the best frame, relative to the frame (0..1)');

/** What a detector (or a camera's motion sensor) reports of one object: events.record's input. */
export const ObjectEvent = z.strictObject({
  type: z.enum(['start', 'update', 'end']),
  id: EventId,
  camera: CameraId,
  label: z.string().min(1).max(64),
  topScore: z.number().min(0).max(1),
  box: Box,
  zones: z.array(z.string()),
  start: z.string(),
  end: z.string().nullable(),
  stationary: z.boolean(),
  /** Clean JPEG of the best frame, base64 (start, and updates with a better frame). */
  snapshot: z.string().optional(),
});
export type ObjectEvent = z.infer<typeof ObjectEvent>;

/** events.record's input: a start or an end says everything; an update only what changed. */
export const EventRecord = z.discriminatedUnion('type', [
  ObjectEvent.extend({ type: z.enum(['start', 'end']) }),
  ObjectEvent.partial().extend({ type: z.literal('update'), id: EventId, camera: CameraId }),
]);
export type EventRecord = z.infer<typeof EventRecord>;

export const StoredEvent = z.object({
  id: z.string(),
  camera: z.string(),
  label: z.string(),
  topScore: z.number(),
  box: Box,
  zones: z.array(z.string()).describe('zones the object entered (its feet: the bottom centre of its box)'),
  start: z.string(),
  end: z.string().nullable().describe('null while the object is still there'),
  stationary: z.boolean(),
  reviewed: z.boolean(),
  hasSnapshot: z.boolean(),
  updatedAt: z.string(),
});
export type StoredEvent = z.infer<typeof StoredEvent>;
