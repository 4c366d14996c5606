// streams: one supervised ffmpeg per camera, recording segments to disk.
// Follows the camera registry by its events; publishes status and closed segments.
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { NotFoundError } from '../../lib/errors.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { CameraId, type Camera, type CameraStatus } from '../cameras/cameras.schemas.ts';
import { CameraStream, type StreamOptions } from './camera-stream.ts';

export function streamsService(config: Config): ServiceSchema {
  const streams = new Map<string, CameraStream>();
  const options: StreamOptions = { ...config.video, mediaDir: dataPaths(config).media };

  return {
    name: 'streams',
    dependencies: ['cameras'],

    actions: {
      status: action({
        input: z.strictObject({ id: CameraId.optional() }),
        permission: 'live.view',
        handler: (ctx) => {
          const out: Record<string, CameraStatus> = {};
          for (const [id, s] of streams) if (!ctx.params.id || ctx.params.id === id) out[id] = s.status;
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
    },

    events: {
      'camera.added': { handler(ctx: { params: { id: string } }) { return this.restart(ctx.params.id); } },
      'camera.updated': { handler(ctx: { params: { id: string } }) { return this.restart(ctx.params.id); } },
      'camera.removed': {
        async handler(ctx: { params: { id: string } }) {
          await streams.get(ctx.params.id)?.stop();
          streams.delete(ctx.params.id);
        },
      },
    },

    methods: {
      run(camera: Camera) {
        const stream = new CameraStream(camera, options, this.logger);
        stream.on('status', (status) => void this.broker.emit('camera.status.changed', { id: camera.id, status }));
        stream.on('segment', (segment) => void this.broker.emit('recording.segment.closed', segment));
        streams.set(camera.id, stream);
        stream.start();
      },
      async restart(id: string) {
        await streams.get(id)?.stop();
        streams.delete(id);
        const [camera] = await this.broker.call<Camera[], object>('cameras.specs', { id });
        if (camera) this.run(camera);
      },
    },

    async started() {
      const cameras = await this.broker.call<Camera[], object>('cameras.specs', {});
      for (const camera of cameras) this.run(camera);
    },

    async stopped() {
      await Promise.all([...streams.values()].map((s) => s.stop()));
      streams.clear();
    },
  };
}
