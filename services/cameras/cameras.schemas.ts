// What a camera is, as the API and the bus see it.
import { z } from 'zod';
import { slugId } from '../../lib/ids.ts';
import { redactUrl } from '../../lib/redact.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const CameraId = slugId('camera id');

export const RtspUrl = z
  .string()
  .max(1024)
  .refine((u) => URL.canParse(u) && /^rtsps?:$/.test(new URL(u).protocol) && new URL(u).hostname !== '', {
    message: 'an rtsp:// or rtsps:// URL with a host, e.g. rtsp://user:password@192.168.1.20:554/stream1',
  });

export const RtspSource = z.strictObject({
  kind: z.literal('rtsp'),
  /** May carry user and password; they never appear in answers or logs. */
  url: RtspUrl,
  transport: z.enum(['tcp', 'udp']).default('tcp'),
});

/** A camera that pushes RTMP to the box with its own stream key (made by the box, shown once). */
export const RtmpSource = z.strictObject({ kind: z.literal('rtmp') });
/** As stored: only the key's SHA-256. */
export type StoredRtmpSource = { kind: 'rtmp'; keyHash: string };

export const CameraSource = z.discriminatedUnion('kind', [RtspSource, RtmpSource]);

/** Only from the box's own config (the demo camera): the API cannot point ffmpeg at files. */
export const FileSource = z.strictObject({ kind: z.literal('file'), path: z.string().min(1) });

export const Recording = z.strictObject({
  /** continuous: everything; events: only footage around detected events (pre/post-roll); off. */
  mode: z.enum(['continuous', 'events', 'off']).default('continuous'),
  /** Days footage is kept (continuous mode). */
  retainDays: z.number().min(0.01).max(3650).default(7),
  /** Days footage around detections is kept (either mode), when longer than retainDays; and events themselves. */
  eventRetainDays: z.number().min(0.01).max(3650).default(30),
  /** Days footage around alerts (review items of the alert labels and zones) is kept; null: eventRetainDays. */
  alertRetainDays: z.number().min(0.01).max(3650).nullable().default(null),
  /** Days footage with motion and no object is kept (the detector's motion, the camera's own motion events); null: retainDays. */
  motionRetainDays: z.number().min(0.01).max(3650).nullable().default(null),
});

const RelativePoint = z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]);
/** A polygon in frame-relative coordinates (0..1, from the top left). */
export const Polygon = z.array(RelativePoint).min(3).max(64);

const ZoneName = z.string().regex(/^[\w-]{1,32}$/, 'letters, digits, _ or -');

export const Detection = z.strictObject({
  enabled: z.boolean().default(true),
  /** Frames decoded per second for detection. */
  fps: z.number().min(0.5).max(15).default(5),
  /** Labels of the model that are tracked and make events. */
  labels: z.array(z.string().min(1).max(40)).max(80).default(['person', 'car', 'bicycle', 'motorcycle', 'dog', 'cat']),
  /** Lowest score per label (otherwise detector.minScore). */
  minScores: z.record(z.string(), z.number().min(0.05).max(1)).default({}),
  zones: z
    .array(z.strictObject({ name: ZoneName, points: Polygon }))
    .max(32)
    .default([]),
  /** Where motion is ignored. */
  motionMasks: z.array(Polygon).max(32).default([]),
  /** Where objects are ignored (placed at the bottom centre of their box). */
  objectMasks: z.array(Polygon).max(32).default([]),
  /** Grey-level change that counts as motion (lower: more sensitive). */
  motionThreshold: z.number().int().min(1).max(255).default(25),
});

/**
 * How the camera's activity is sorted for review: objects of the alert labels (in the alert zones,
 * when some are named) make an item an alert, any other object a detection; objects that never
 * enter a required zone are not reviewed at all (their events are still kept).
 */
export const ReviewRules = z.strictObject({
  alertLabels: z.array(z.string().min(1).max(40)).max(80).default(['person', 'car']),
  alertZones: z.array(ZoneName).max(32).default([]),
  requiredZones: z.array(ZoneName).max(32).default([]),
});

export const CameraInput = z.strictObject({
  id: CameraId,
  name: z.string().min(1).max(64),
  enabled: z.boolean().default(true),
  source: CameraSource,
  /** A second, smaller stream of the camera for detection and live thumbnails (not recorded). */
  subStream: RtspSource.nullable().default(null),
  /** Record the camera's sound with its video and play it live (a camera with none works as before). */
  audio: z.boolean().default(true),
  recording: Recording.prefault({}),
  detection: Detection.prefault({}),
  review: ReviewRules.prefault({}),
  /** Whether this camera's events notify the users who asked for them. */
  notifications: z.boolean().default(true),
});

export const CameraUpdate = z.strictObject({
  id: CameraId,
  name: z.string().min(1).max(64).optional(),
  enabled: z.boolean().optional(),
  source: CameraSource.optional(),
  subStream: RtspSource.nullable().optional(),
  audio: z.boolean().optional(),
  recording: Recording.partial().optional(),
  detection: Detection.partial().optional(),
  review: ReviewRules.partial().optional(),
  notifications: z.boolean().optional(),
});

export type Camera = Omit<z.output<typeof CameraInput>, 'source'> & {
  source: z.output<typeof RtspSource> | StoredRtmpSource | z.output<typeof FileSource>;
  /** Defined in the config, not by the API; cannot be changed or removed there. */
  builtIn?: boolean;
  createdAt: string;
};

export const CameraState = z.enum(['starting', 'online', 'offline', 'disabled']);

export const CameraStatus = z.object({
  state: CameraState,
  /** Why it is offline: unreachable, unauthorized, not found, no video track, codec not supported, stalled, exited. */
  reason: z.string().nullable(),
  detail: z.string().nullable(),
  since: z.string(),
  codec: z.string().nullable(),
  width: z.number().nullable(),
  height: z.number().nullable(),
  fps: z.number().nullable(),
  /** The camera's audio codec (pcm_alaw, aac, ...), null when it sends none or audio is off. */
  audio: z.string().nullable().optional(),
  bitrateKbps: z.number().nullable(),
  lastFrameAt: z.string().nullable(),
  restarts: z.number(),
  /** The sub-stream's own state, when the camera has one. */
  subStream: z
    .object({
      state: CameraState,
      reason: z.string().nullable(),
      codec: z.string().nullable(),
      width: z.number().nullable(),
      height: z.number().nullable(),
    })
    .nullable()
    .optional(),
});
export type CameraStatus = z.infer<typeof CameraStatus>;

/** What the Test button finds at a camera URL: the video, or why there is none. */
export const ProbeResult = z.object({
  ok: z.boolean(),
  reason: z
    .string()
    .nullable()
    .describe('unreachable, unauthorized, not found, no video track, not a video stream, codec not supported'),
  detail: z.string().nullable(),
  codec: z.string().nullable(),
  width: z.number().nullable(),
  height: z.number().nullable(),
  fps: z.number().nullable(),
});
export type ProbeResult = z.infer<typeof ProbeResult>;

/** A camera without secrets; a push camera says where it pushes to (the box's RTMP port, null when off). */
export function publicCamera(camera: Camera, rtmpPort: number | null = null) {
  const { source: s } = camera;
  const source =
    s.kind === 'rtsp'
      ? { ...s, url: redactUrl(s.url) }
      : s.kind === 'rtmp'
        ? { kind: s.kind, pushPath: `/live/${camera.id}`, pushPort: rtmpPort }
        : { kind: s.kind };
  const subStream = camera.subStream ? { ...camera.subStream, url: redactUrl(camera.subStream.url) } : null;
  return { ...camera, source, subStream };
}
export type PublicCamera = ReturnType<typeof publicCamera>;

/** cameras.specs: one camera (by id) or all. */
export const SpecsInput = z.strictObject({ id: CameraId.optional() });
export const IdInput = z.strictObject({ id: CameraId });

/** A camera as users see it (no secrets) with its own settings, its live status, and what the site's mode changes. */
export type CameraView = PublicCamera & { status: CameraStatus | null; modeChanges: string[] };

/** What a camera change says on the bus: which camera, what changed, and who did it. */
export interface CameraChanged {
  id: string;
  by: string;
  /** camera.updated: the fields that changed. */
  changed?: string[];
  /** camera.updated: the site's mode that changed it (the camera's own settings did not change). */
  mode?: string;
}

/** What a new camera gets where its input says nothing (the schemas' defaults). */
export const CameraDefaults = z.object({ recording: Recording, detection: Detection, review: ReviewRules });
export type CameraDefaults = z.output<typeof CameraDefaults>;
export const cameraDefaults = (): CameraDefaults => ({
  recording: Recording.parse({}),
  detection: Detection.parse({}),
  review: ReviewRules.parse({}),
});

declare module '../../lib/bus.ts' {
  interface Actions {
    /**
     * Internal: the full camera records, secrets included, for other services (never a user's
     * answer), with the site's mode laid over their settings: what the cameras do now.
     */
    'cameras.specs': { input: z.input<typeof SpecsInput>; answer: Camera[] };
    'cameras.list': { input: Record<string, never>; answer: CameraView[] };
    'cameras.get': { input: z.input<typeof IdInput>; answer: CameraView };
    /** A push camera's stream key is in the answer this once; the box keeps only its hash. */
    'cameras.add': { input: z.input<typeof CameraInput>; answer: PublicCamera & { streamKey?: string } };
    'cameras.update': { input: z.input<typeof CameraUpdate>; answer: PublicCamera & { streamKey?: string } };
    'cameras.newStreamKey': { input: z.input<typeof IdInput>; answer: { id: string; streamKey: string } };
    /** What a new camera gets where its input says nothing: the new-camera form starts from these. */
    'cameras.defaults': { input: Record<string, never>; answer: CameraDefaults };
  }
  interface Events {
    'camera.added': CameraChanged;
    'camera.updated': CameraChanged;
    'camera.removed': CameraChanged;
  }
}
