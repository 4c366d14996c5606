// streams: one supervised ffmpeg per camera, recording segments to disk.
// Follows the camera registry by its events; publishes status and closed segments.
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import type { Readable } from 'node:stream';
import { ConflictError, NotFoundError, TooManyRequestsError } from '../../lib/errors.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { CameraId, RtspSource, type Camera, type CameraStatus } from '../cameras/cameras.schemas.ts';
import { probeCamera } from './probe.ts';
import { CameraStream, type StreamOptions } from './camera-stream.ts';
import { RtmpIngest } from './rtmp-ingest.ts';

const ViewerId = z
  .string()
  .regex(/^[\w-]{8,64}$/)
  .describe('id of one live viewer, chosen by its gateway');

export function streamsService(config: Config): ServiceSchema {
  const streams = new Map<string, CameraStream>();
  const subStreams = new Map<string, CameraStream>();
  /** Live viewers by the id their gateway gave them, so a gateway on another node can end one. */
  const viewers = new Map<string, { feed: Readable; camera: string; user: string }>();
  const count = (match: (v: { camera: string; user: string }) => boolean) => [...viewers.values()].filter(match).length;
  const paths = dataPaths(config);
  let ingest: RtmpIngest | undefined;
  const options: StreamOptions = { ...config.video, mediaDir: paths.media };

  return {
    name: 'streams',
    dependencies: ['cameras'],

    actions: {
      status: action({
        input: z.strictObject({ id: CameraId.optional() }),
        permission: 'live.view',
        handler: (ctx) => {
          const out: Record<string, CameraStatus> = {};
          for (const [id, s] of streams) {
            if (ctx.params.id && ctx.params.id !== id) continue;
            const sub = subStreams.get(id)?.status;
            out[id] = {
              ...s.status,
              subStream: sub
                ? { state: sub.state, reason: sub.reason, codec: sub.codec, width: sub.width, height: sub.height }
                : null,
            };
          }
          return out;
        },
      }),
      snapshot: action({
        input: z.strictObject({ id: CameraId }),
        permission: 'live.view',
        async handler(ctx) {
          const stream = streams.get(ctx.params.id);
          if (!stream) throw new NotFoundError('Camera', ctx.params.id);
          const { jpeg, frameAt } = await stream.snapshot();
          // Base64 keeps it one JSON value over NATS too (a snapshot is ~100 KB).
          return { jpegBase64: jpeg.toString('base64'), frameAt };
        },
      }),
      live: action({
        input: z.strictObject({ id: CameraId, viewer: ViewerId, stream: z.enum(['main', 'sub']).default('main') }),
        permission: 'live.view',
        handler(ctx) {
          // The sub-stream when asked for and the camera has one; the main stream otherwise.
          const stream =
            (ctx.params.stream === 'sub' ? subStreams.get(ctx.params.id) : undefined) ?? streams.get(ctx.params.id);
          if (!stream) throw new NotFoundError('Camera', ctx.params.id);
          if (stream.status.state === 'disabled') {
            throw new ConflictError(
              `Camera "${ctx.params.id}" is not streaming (${stream.status.reason})`,
              'CAMERA_DISABLED',
            );
          }
          // Caps, so that viewers that never read cannot take the box's memory between them.
          const camera = ctx.params.id;
          const user = ctx.meta.caller?.username ?? '(box)';
          const { maxViewersPerCamera, maxViewersPerUser } = config.video;
          if (count((v) => v.camera === camera) >= maxViewersPerCamera) {
            throw new TooManyRequestsError(
              `Camera "${camera}" has ${maxViewersPerCamera} live viewers, the most it takes (video.maxViewersPerCamera)`,
              5,
              'TOO_MANY_VIEWERS',
            );
          }
          if (count((v) => v.user === user) >= maxViewersPerUser) {
            throw new TooManyRequestsError(
              `"${user}" has ${maxViewersPerUser} live views open, the most one user may (video.maxViewersPerUser)`,
              5,
              'TOO_MANY_VIEWERS',
            );
          }
          // fMP4 bytes: init, the current GOP, then each new fragment; over NATS a Moleculer stream.
          const feed = stream.feed.watch();
          viewers.set(ctx.params.viewer, { feed, camera, user });
          feed.once('close', () => viewers.delete(ctx.params.viewer));
          return feed;
        },
      }),
      // Internal (cameras.test): one look at a URL that is not a camera yet.
      probe: action({
        input: RtspSource.omit({ kind: true }),
        permission: 'cameras.manage',
        timeout: 15_000,
        handler: (ctx) => probeCamera(config.video.ffprobePath, ctx.params.url, ctx.params.transport),
      }),
      liveStop: action({
        input: z.strictObject({ viewer: ViewerId }),
        permission: 'live.view',
        handler(ctx) {
          viewers.get(ctx.params.viewer)?.feed.destroy();
          return { stopped: true };
        },
      }),
    },

    events: {
      'camera.added': {
        handler(ctx: { params: { id: string } }) {
          return this.restart(ctx.params.id);
        },
      },
      'camera.updated': {
        handler(ctx: { params: { id: string } }) {
          return this.restart(ctx.params.id);
        },
      },
      'camera.removed': {
        async handler(ctx: { params: { id: string } }) {
          await Promise.all([streams.get(ctx.params.id)?.stop(), subStreams.get(ctx.params.id)?.stop()]);
          streams.delete(ctx.params.id);
          subStreams.delete(ctx.params.id);
          ingest?.allow(ctx.params.id, undefined);
        },
      },
    },

    methods: {
      run(camera: Camera) {
        ingest?.allow(camera.id, camera.source.kind === 'rtmp' ? camera.source.keyHash : undefined);
        const stream = new CameraStream(camera, options, this.logger);
        stream.on('status', (status) => void this.broker.broadcast('camera.status.changed', { id: camera.id, status }));
        stream.on('segment', (segment) => void this.broker.emit('recording.segment.closed', segment));
        streams.set(camera.id, stream);
        stream.start();
        if (camera.subStream) {
          const sub = new CameraStream(camera, options, this.logger, true);
          subStreams.set(camera.id, sub);
          sub.start();
        }
      },
      async restart(id: string) {
        await Promise.all([streams.get(id)?.stop(), subStreams.get(id)?.stop()]);
        streams.delete(id);
        subStreams.delete(id);
        const [camera] = await this.broker.call<Camera[], object>('cameras.specs', { id });
        if (camera) this.run(camera);
      },
    },

    async started() {
      if (config.video.rtmp) {
        ingest = new RtmpIngest({ ...config.video.rtmp, storeDir: paths.rtmp }, this.logger);
        ingest.on('publish', (id) => streams.get(id)?.onPublish());
        ingest.on('unpublish', (id) => streams.get(id)?.onUnpublish());
        await ingest.start();
        options.ingest = ingest;
      }
      const cameras = await this.broker.call<Camera[], object>('cameras.specs', {});
      for (const camera of cameras) this.run(camera);
    },

    async stopped() {
      for (const viewer of viewers.values()) viewer.feed.destroy();
      await Promise.all([...streams.values(), ...subStreams.values()].map((s) => s.stop()));
      streams.clear();
      subStreams.clear();
      await ingest?.stop();
      ingest = undefined;
    },
  };
}
