// What an event is, as the API, the bus, cloud sync and the web UI see it.
import { z } from 'zod';

export const EventId = z.string().regex(/^[a-z0-9-]{1,80}$/).describe('event id');

export const StoredEvent = z.object({
  id: z.string(),
  camera: z.string(),
  label: z.string(),
  topScore: z.number(),
  box: z.tuple([z.number(), z.number(), z.number(), z.number()]).describe('[x1, y1, x2, y2] of the best frame, relative to the frame (0..1)'),
  zones: z.array(z.string()).describe('zones the object entered (its feet: the bottom centre of its box)'),
  start: z.string(),
  end: z.string().nullable().describe('null while the object is still there'),
  stationary: z.boolean(),
  reviewed: z.boolean(),
  hasSnapshot: z.boolean(),
  updatedAt: z.string(),
});
export type StoredEvent = z.infer<typeof StoredEvent>;
