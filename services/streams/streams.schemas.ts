// What the streams service offers others: live status, snapshots, live feeds (fragmented MP4 as a
// stream over the bus) and probes of a camera URL.
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { CameraId, RtspSource, type CameraStatus, type ProbeResult } from '../cameras/cameras.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const ViewerId = z
  .string()
  .regex(/^[\w-]{8,64}$/)
  .describe('id of one live viewer, chosen by its gateway');

export const StatusInput = z.strictObject({ id: CameraId.optional() });
export const SnapshotInput = z.strictObject({ id: CameraId });
export const LiveInput = z.strictObject({
  id: CameraId,
  viewer: ViewerId,
  stream: z.enum(['main', 'sub']).default('main'),
});
export const LiveStopInput = z.strictObject({ viewer: ViewerId });
export const ProbeInput = RtspSource.omit({ kind: true });

declare module '../../lib/bus.ts' {
  interface Events {
    'camera.status.changed': { id: string; status: CameraStatus };
  }
  interface Actions {
    /** Each running camera's live status, by id. */
    'streams.status': { input: z.input<typeof StatusInput>; answer: Record<string, CameraStatus> };
    /** The latest keyframe as JPEG (base64, one JSON value over NATS too) and when it was seen. */
    'streams.snapshot': { input: z.input<typeof SnapshotInput>; answer: { jpegBase64: string; frameAt: string } };
    /** A live feed: init segment, then fragments from the latest keyframe on. */
    'streams.live': { input: z.input<typeof LiveInput>; answer: Readable };
    'streams.liveStop': { input: z.input<typeof LiveStopInput>; answer: { stopped: boolean } };
    /** What ffprobe finds at a camera URL. */
    'streams.probe': { input: z.input<typeof ProbeInput>; answer: ProbeResult };
  }
}
