// streams: one supervised ffmpeg per camera, recording segments to disk.
// Follows the camera registry by its events; publishes status and closed segments.
import { call, on, broadcast, emit } from '../../lib/bus.ts';
import type { ServiceSchema } from 'moleculer';
import { action } from '../../lib/actions.ts';
import type { Readable } from 'node:stream';
import { ConflictError, NotFoundError, TooManyRequestsError } from '../../lib/errors.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import type { Camera, CameraStatus } from '../cameras/cameras.schemas.ts';
import { probeCamera } from './probe.ts';
import { LiveInput, LiveStopInput, ProbeInput, SnapshotInput, StatusInput } from './streams.schemas.ts';
import { CameraStream, type StreamOptions } from './camera-stream.ts';
import { RtmpIngest } from './rtmp-ingest.ts';

/** What a camera's ffmpeg is made from. */
const streamOf = (c: Camera) => JSON.stringify([c.enabled, c.source, c.subStream, c.audio, c.recording.mode === 'off']);

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
        input: StatusInput,
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
        input: SnapshotInput,
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
        input: LiveInput,
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
        input: ProbeInput,
        permission: 'cameras.manage',
        timeout: 15_000,
        handler: (ctx) => probeCamera(config.video.ffprobePath, ctx.params.url, ctx.params.transport),
      }),
      liveStop: action({
        input: LiveStopInput,
        permission: 'live.view',
        handler(ctx) {
          viewers.get(ctx.params.viewer)?.feed.destroy();
          return { stopped: true };
        },
      }),
    },

    events: {
      ...on('camera.added', function ({ id }) {
        return this.restart(id);
      }),
      ...on('camera.updated', async function ({ id }) {
        // A change the camera's ffmpeg does not use (detection, notifications, a mode's alerts) leaves it running: no gap in the recording.
        const running = streams.get(id);
        const [next] = running ? await call(this.broker, 'cameras.specs', { id }).catch(() => []) : [];
        if (running && next && streamOf(next) === streamOf(running.camera)) return;
        return this.restart(id);
      }),
      ...on('camera.removed', async ({ id }) => {
        await Promise.all([streams.get(id)?.stop(), subStreams.get(id)?.stop()]);
        streams.delete(id);
        subStreams.delete(id);
        ingest?.allow(id, undefined);
      }),
    },

    methods: {
      run(camera: Camera) {
        ingest?.allow(camera.id, camera.source.kind === 'rtmp' ? camera.source.keyHash : undefined);
        const stream = new CameraStream(camera, options, this.logger);
        stream.on(
          'status',
          (status) => void broadcast(this.broker, 'camera.status.changed', { id: camera.id, status }),
        );
        stream.on('segment', (segment) => void emit(this.broker, 'recording.segment.closed', segment));
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
        const [camera] = await call(this.broker, 'cameras.specs', { id });
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
      const cameras = await call(this.broker, 'cameras.specs', {});
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
