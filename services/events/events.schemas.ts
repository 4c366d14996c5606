// What an event is, as the API, the bus, cloud sync and the web UI see it.
import { z } from 'zod';
import { CameraId } from '../cameras/cameras.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const EventId = z
  .string()
  .regex(/^[a-z0-9-]{1,80}$/)
  .describe('event id');

/** The label of an event a camera's own motion sensor reports (no object class). */
export const CAMERA_MOTION = 'motion';
/** The label of footage an automation holds (a hold or a clip now): an alert on any camera. */
export const HOLD_LABEL = 'hold';

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

/** An event's own fields, as a record of it carries them: what the store adds (review state, picture) is dropped. */
export const EventFields = z.object(ObjectEvent.shape).omit({ type: true, snapshot: true });

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
  snapshotVersion: z
    .number()
    .int()
    .describe('changes each time the picture does (0: none yet): picture URLs carry it as ?v='),
  updatedAt: z.string(),
});
export type StoredEvent = z.infer<typeof StoredEvent>;

export const Severity = z.enum(['alert', 'detection']);
export type Severity = z.infer<typeof Severity>;

/**
 * One period of activity on a camera: the object events that overlap (or follow within
 * detector.reviewIdleSeconds), an alert when one of them matches the camera's alert rules.
 */
export const ReviewItem = z.object({
  id: z.string(),
  camera: z.string(),
  start: z.string(),
  end: z.string().nullable().describe('null while the activity goes on'),
  severity: Severity,
  labels: z.array(z.string()).describe('labels of its objects'),
  zones: z.array(z.string()).describe('zones its objects entered'),
  objects: z
    .array(
      z.object({
        event: z.string(),
        label: z.string(),
        zones: z.array(z.string()),
        severity: Severity,
        topScore: z.number(),
      }),
    )
    .describe('its object events, in the order they joined'),
  thumbnailEvent: z.string().describe("the event whose picture stands for the item (its surest object's)"),
  topScore: z.number(),
  reviewed: z.boolean(),
  hasPreview: z.boolean().describe('a short low-resolution clip of it, made on the box once it closed'),
  updatedAt: z.string(),
});
export type ReviewItem = z.infer<typeof ReviewItem>;

export const ReviewListInput = z.strictObject({
  camera: CameraId.optional(),
  severity: Severity.optional(),
  reviewed: z.boolean().optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  limit: z.number().int().min(1).max(1000).default(100),
});
export const ReviewIdInput = z.strictObject({ id: EventId });
/** Mark items reviewed (or not): these ones, or every one that started before a time. */
export const MarkReviewedInput = z.union([
  z.strictObject({ ids: z.array(EventId).min(1).max(1000), reviewed: z.boolean().default(true) }),
  z.strictObject({
    before: z.iso.datetime({ offset: true }),
    camera: CameraId.optional(),
    severity: Severity.optional(),
    reviewed: z.boolean().default(true),
  }),
]);

export const ListInput = z.strictObject({
  camera: CameraId.optional(),
  label: z.string().max(40).optional(),
  zone: z.string().max(32).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  reviewed: z.boolean().optional(),
  limit: z.number().int().min(1).max(1000).default(100),
});
export const IdInput = z.strictObject({ id: EventId });
export const SnapshotInput = z.strictObject({
  id: EventId,
  boxes: z.boolean().default(false),
  /** A small picture (THUMBNAIL_WIDTH wide) for lists, made once per picture. */
  thumbnail: z.boolean().default(false),
});
export const THUMBNAIL_WIDTH = 320;

declare module '../../lib/bus.ts' {
  interface Actions {
    /** Internal: ended events in the order they ended, after a cursor (cloud sync reads them so). */
    'events.endedAfter': {
      input: { after: number; limit?: number };
      answer: { last: number; through: number; ended: Array<{ seq: number; event: StoredEvent }> };
    };
    'events.list': { input: z.input<typeof ListInput>; answer: StoredEvent[] };
    'events.get': { input: z.input<typeof IdInput>; answer: StoredEvent };
    /** The event's picture (JPEG, base64), with its box drawn or as a thumbnail when asked; its version. */
    'events.snapshot': { input: z.input<typeof SnapshotInput>; answer: { jpegBase64: string; version: number } };
    /** The recordings an event clip covers: pre- and post-roll around the object. */
    'events.clipRange': { input: z.input<typeof IdInput>; answer: { camera: string; from: string; to: string } };
    /** Internal: a detector's (or a camera's motion sensor's) record of one object. */
    'events.record': { input: EventRecord; answer: { ok: true } };
    'events.reviewItems': { input: z.input<typeof ReviewListInput>; answer: ReviewItem[] };
    'events.reviewItem': { input: z.input<typeof ReviewIdInput>; answer: ReviewItem };
    /** The item's preview clip (MP4, base64). */
    'events.reviewPreview': { input: z.input<typeof ReviewIdInput>; answer: { mp4Base64: string } };
    'events.markReviewed': { input: z.input<typeof MarkReviewedInput>; answer: { marked: number } };
  }
  interface Events {
    /** An event as stored, at its start, at each change, and at its end. */
    'event.started': StoredEvent;
    'event.updated': StoredEvent;
    'event.ended': StoredEvent;
    'event.removed': { id: string; camera: string; by: string };
    /** A review item as stored: when it opens, when it changes (a new object, alert now), when it closes. */
    'review.opened': ReviewItem;
    'review.updated': ReviewItem;
    'review.closed': ReviewItem;
  }
}
