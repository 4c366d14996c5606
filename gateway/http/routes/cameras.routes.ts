// Cameras (registry and live status) and their recordings timeline.
import { randomUUID } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceBroker } from 'moleculer';
import { DAY_DIR, SEGMENT_FILE } from '../../../appliance/data-dir.ts';
import {
  CameraDefaults,
  CameraId,
  CameraInput,
  CameraStatus,
  CameraUpdate,
  ProbeResult,
  RtspSource,
} from '../../../services/cameras/cameras.schemas.ts';
import { callAs, type HttpEnv } from '../context.ts';
import { binary, body, errors, json, Ok, signedIn } from '../openapi.ts';
import { sendClip, sendRecorderFile, type Clip } from '../recorder-files.ts';
import { httpSink, relayLive } from '../live-relay.ts';
import { NotReadyError } from '../../../lib/errors.ts';

const CameraAnswer = z
  .object({
    id: z.string(),
    name: z.string(),
    enabled: z.boolean(),
    source: z.object({
      kind: z.enum(['rtsp', 'rtmp', 'file']),
      url: z.string().optional().describe('password shown as ***'),
      transport: z.string().optional(),
      pushPath: z.string().optional().describe('push cameras: rtmp://<box>:<pushPort><pushPath>?key=<stream key>'),
      pushPort: z.number().nullable().optional().describe("push cameras: the box's RTMP port (null: RTMP push is off)"),
    }),
    subStream: z
      .object({ kind: z.literal('rtsp'), url: z.string().describe('password shown as ***'), transport: z.string() })
      .nullable(),
    recording: CameraDefaults.shape.recording,
    detection: CameraDefaults.shape.detection,
    builtIn: z.boolean().optional(),
    createdAt: z.string(),
    status: CameraStatus.nullable(),
    modeChanges: z
      .array(z.string())
      .describe(
        "the settings the site's mode changes now (detection.enabled, notifications); the fields above are the camera's own",
      ),
  })
  .openapi('Camera');
type CameraAnswer = z.infer<typeof CameraAnswer>;
const NewCameraAnswer = CameraAnswer.omit({ status: true, modeChanges: true }).extend({
  streamKey: z
    .string()
    .optional()
    .describe('push cameras: the stream key, shown this once (the box keeps only its hash)'),
});
type NewCameraAnswer = z.infer<typeof NewCameraAnswer>;
const IdParam = z.object({ id: CameraId });
const ProbeAnswer = z.object(ProbeResult.shape).openapi('CameraTest');
const SegmentParams = z.object({
  camera: CameraId,
  day: z.string().regex(DAY_DIR, 'YYYY-MM-DD'),
  file: z.string().regex(SEGMENT_FILE, 'a segment file name'),
});
const Range = z.object({ start: z.string(), end: z.string() });
const RangeQuery = z.object({ from: z.string().describe('ISO 8601'), to: z.string().describe('ISO 8601') });

/** {camera, from, to} of a /cameras/{id}/...?from=&to= request, for the recorder's actions. */
const rangeOf = (param: { id: string }, query: { from: string; to: string }) => ({ camera: param.id, ...query });

export function camerasRoutes(app: OpenAPIHono<HttpEnv>, broker: ServiceBroker): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/camera-defaults',
      tags: ['cameras'],
      security: signedIn,
      summary: "What a new camera gets where its settings say nothing (recording, detection): the box's own defaults",
      responses: { 200: json(CameraDefaults), 401: errors[401], 403: errors[403] },
    }),
    async (c) => c.json(await callAs(broker, c, 'cameras.defaults', {}), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras',
      tags: ['cameras'],
      security: signedIn,
      summary: 'All cameras with their live status',
      responses: { 200: json(z.array(CameraAnswer)), 401: errors[401] },
    }),
    async (c) => c.json(await callAs<CameraAnswer[]>(broker, c, 'cameras.list'), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/cameras',
      tags: ['cameras'],
      security: signedIn,
      summary:
        'Add a camera (admin, installer): an RTSP URL the box pulls, or a push camera that sends RTMP with the stream key in the answer',
      request: body(CameraInput),
      responses: { 201: json(NewCameraAnswer), 401: errors[401], 403: errors[403], 409: errors[409], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<NewCameraAnswer>(broker, c, 'cameras.add', c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/cameras/test',
      tags: ['cameras'],
      security: signedIn,
      summary:
        'Test an RTSP URL before saving it (admin, installer): codec, size and fps, or what is wrong (unreachable, unauthorized, not found, no video track, codec not supported). With the id of a camera, a password sent as *** is the stored one',
      request: body(z.object({ source: RtspSource, id: CameraId.optional() })),
      responses: { 200: json(ProbeAnswer), 401: errors[401], 403: errors[403], 422: errors[422] },
    }),
    async (c) => c.json(await callAs<ProbeResult>(broker, c, 'cameras.test', c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/cameras/{id}/stream-key',
      tags: ['cameras'],
      security: signedIn,
      summary: 'A new stream key for a push camera (admin, installer); the old key stops working at once',
      request: { params: IdParam },
      responses: {
        200: json(z.object({ id: z.string(), streamKey: z.string() })),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        409: errors[409],
      },
    }),
    async (c) =>
      c.json(
        await callAs<{ id: string; streamKey: string }>(broker, c, 'cameras.newStreamKey', c.req.valid('param')),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}',
      tags: ['cameras'],
      security: signedIn,
      summary: 'One camera with its status: online or offline with the reason, codec, size, fps, bitrate, last frame',
      request: { params: IdParam },
      responses: { 200: json(CameraAnswer), 401: errors[401], 404: errors[404] },
    }),
    async (c) => c.json(await callAs<CameraAnswer>(broker, c, 'cameras.get', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/api/v1/cameras/{id}',
      tags: ['cameras'],
      security: signedIn,
      summary: 'Change a camera (admin, installer); a URL with the password as *** keeps the stored one',
      request: { params: IdParam, ...body(CameraUpdate.omit({ id: true })) },
      responses: {
        200: json(NewCameraAnswer),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        409: errors[409],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = { ...c.req.valid('json'), id: c.req.valid('param').id };
      return c.json(await callAs<NewCameraAnswer>(broker, c, 'cameras.update', params), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/cameras/{id}',
      tags: ['cameras'],
      security: signedIn,
      summary: 'Remove a camera (admin, installer); its stream stops, its recordings stay until retention',
      request: { params: IdParam },
      responses: { 200: json(Ok), 401: errors[401], 403: errors[403], 404: errors[404], 409: errors[409] },
    }),
    async (c) => c.json(await callAs<{ ok: boolean }>(broker, c, 'cameras.remove', c.req.valid('param')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/snapshot.jpg',
      tags: ['cameras'],
      security: signedIn,
      summary: 'The latest keyframe of the running stream as JPEG (no new connection to the camera)',
      request: { params: IdParam },
      responses: {
        200: binary('image/jpeg', 'JPEG; X-Frame-Time says when the frame arrived'),
        401: errors[401],
        404: errors[404],
        503: errors[503],
      },
    }),
    async (c) => {
      const shot = await callAs<{ jpegBase64: string; frameAt: string }>(
        broker,
        c,
        'streams.snapshot',
        c.req.valid('param'),
      );
      return c.body(Buffer.from(shot.jpegBase64, 'base64'), 200, {
        'content-type': 'image/jpeg',
        'cache-control': 'no-store',
        'x-frame-time': shot.frameAt,
      });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/live.mp4',
      tags: ['live'],
      security: signedIn,
      summary:
        'Live view as one fragmented MP4 stream (MSE, or any player that reads HTTP): from the newest keyframe on, a slow reader skips ahead by whole GOPs; the app uses it away from home, through the tunnel',
      request: { params: IdParam, query: z.object({ stream: z.enum(['main', 'sub']).default('main') }) },
      responses: {
        200: binary('video/mp4', 'fMP4; Content-Type names the codecs (for MediaSource.isTypeSupported)'),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        429: errors[429],
        503: errors[503],
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const viewer = randomUUID();
      const feed = await callAs(broker, c, 'streams.live', { id, viewer, stream: c.req.valid('query').stream });
      const { sink, body, mime } = httpSink();
      relayLive(sink, feed, () => void callAs(broker, c, 'streams.liveStop', { viewer }).catch(() => undefined));
      const type = await mime;
      if (!type) throw new NotReadyError(`Camera "${id}" sent no picture`, 'NO_PICTURE');
      return c.body(body, 200, { 'content-type': type, 'cache-control': 'no-store' });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/timeline',
      tags: ['recordings'],
      security: signedIn,
      summary: 'Recorded ranges and gaps of a camera between two times',
      request: { params: IdParam, query: RangeQuery },
      responses: {
        200: json(
          z.object({
            camera: z.string(),
            from: z.string(),
            to: z.string(),
            ranges: z.array(Range),
            gaps: z.array(Range),
            motion: z.array(Range).describe('where the picture moved (the detector looked), whatever moved in it'),
          }),
        ),
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = rangeOf(c.req.valid('param'), c.req.valid('query'));
      return c.json(
        await callAs<{
          camera: string;
          from: string;
          to: string;
          ranges: z.infer<typeof Range>[];
          gaps: z.infer<typeof Range>[];
          motion: z.infer<typeof Range>[];
        }>(broker, c, 'recorder.timeline', params),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/clip.mp4',
      tags: ['recordings'],
      security: signedIn,
      summary: 'A time range of recordings as one MP4 (stream copy, cut at keyframes), downloadable',
      request: { params: IdParam, query: RangeQuery },
      responses: {
        200: binary('video/mp4', 'MP4'),
        401: errors[401],
        403: errors[403],
        404: errors[404],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = rangeOf(c.req.valid('param'), c.req.valid('query'));
      return sendClip(c, broker, await callAs<Clip>(broker, c, 'recorder.clip', params));
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/playback.m3u8',
      tags: ['recordings'],
      security: signedIn,
      summary: 'HLS VOD playlist of a time range of recordings, seekable, for a browser (hls.js) or any HLS player',
      request: { params: IdParam, query: RangeQuery },
      responses: {
        200: { description: 'HLS playlist', content: { 'application/vnd.apple.mpegurl': { schema: z.string() } } },
        401: errors[401],
        403: errors[403],
        404: errors[404],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = rangeOf(c.req.valid('param'), c.req.valid('query'));
      const playlist = await callAs<string>(broker, c, 'recorder.playlist', params);
      return c.body(playlist, 200, { 'content-type': 'application/vnd.apple.mpegurl', 'cache-control': 'no-store' });
    },
  );

  // A recorded segment, with HTTP ranges (HLS asks for byte ranges). The recorder checks every
  // part of the path against the data layout, so nothing outside the media folder can be named.
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/recordings/{camera}/{day}/{file}',
      tags: ['recordings'],
      security: signedIn,
      summary: 'One recorded segment file (fMP4), with Range support',
      request: { params: SegmentParams },
      responses: {
        200: binary('video/mp4', 'fMP4 segment'),
        206: { description: 'the byte range asked for' },
        401: errors[401],
        403: errors[403],
        404: errors[404],
        416: { description: 'the range is outside the file' },
        422: errors[422],
      },
    }),
    async (c) => {
      const { camera, day, file } = c.req.valid('param');
      return sendRecorderFile(c, broker, 'segment', `${camera}/${day}/${file}`, {
        'content-type': 'video/mp4',
        'cache-control': 'private, max-age=3600',
      }) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/cameras/{id}/segments',
      tags: ['recordings'],
      security: signedIn,
      summary: 'The recorded segment files of a camera between two times',
      request: { params: IdParam, query: RangeQuery },
      responses: {
        200: json(
          z.array(
            z.object({
              camera: z.string(),
              path: z.string(),
              start: z.string(),
              end: z.string(),
              bytes: z.number(),
              tier: z.literal('archive').optional().describe('in the archive tier; absent: on the hot disk'),
            }),
          ),
        ),
        401: errors[401],
        403: errors[403],
        422: errors[422],
      },
    }),
    async (c) => {
      const params = rangeOf(c.req.valid('param'), c.req.valid('query'));
      return c.json(
        await callAs<Array<{ camera: string; path: string; start: string; end: string; bytes: number }>>(
          broker,
          c,
          'recorder.segments',
          params,
        ),
        200,
      );
    },
  );
}
