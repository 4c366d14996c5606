// cameras: the registry of the box's cameras (persisted), with each camera's live status
// from the streams service. Credentials stay here: events carry ids only.
import { call, broadcast, callIfRunning, on } from '../../lib/bus.ts';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action, type Ctx } from '../../lib/actions.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors.ts';
import { Store, type Collection } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import {
  CameraId,
  IdInput,
  CameraInput,
  CameraUpdate,
  Detection,
  ReviewRules,
  Recording,
  RtspSource,
  cameraDefaults,
  publicCamera,
  type Camera,
  type CameraStatus,
} from './cameras.schemas.ts';
import { newStreamKey } from '../../lib/secrets.ts';
import type { Mode } from '../modes/modes.schemas.ts';
import { modeChanges, withMode } from './mode-overlay.ts';
import { projectPath } from '../../lib/project-root.ts';

const NoInput = z.strictObject({});

export const DEMO_CLIP = projectPath('appliance', 'demo', 'street-720p15.mp4');

function demoCamera(): Camera {
  return {
    id: 'demo',
    name: 'Demo: street',
    enabled: true,
    source: { kind: 'file', path: DEMO_CLIP },
    subStream: null,
    audio: true,
    recording: { mode: 'continuous', retainDays: 1, eventRetainDays: 7, alertRetainDays: null, motionRetainDays: null },
    detection: Detection.parse({}),
    review: ReviewRules.parse({}),
    notifications: true,
    builtIn: true,
    createdAt: new Date(0).toISOString(),
  };
}

/** An RTSP source sent back with the masked password ("***") keeps the stored one. */
function keepPassword<S extends { url: string }>(next: S, current: { kind: string; url?: string } | null): S {
  const n = new URL(next.url);
  if (n.password !== '***' || !current?.url) return next;
  n.password = new URL(current.url).password;
  return { ...next, url: n.toString() };
}

/** Live status from the streams service; none (null per camera) when it is not running. */
function statusesOf(ctx: Ctx<unknown>, id?: string): Promise<Record<string, CameraStatus>> {
  return call(ctx, 'streams.status', id ? { id } : {}, { timeout: 2000, retries: 0 }).catch((err: Error) => {
    ctx.service?.logger.debug(`cameras: no live status (${err.message})`);
    return {};
  });
}

export function camerasService(config: Config): ServiceSchema {
  const rtmpPort = config.video.rtmp?.port ?? null;
  let store: Store | undefined;
  let cameras: Collection<Camera> | undefined;
  const builtIn = new Map<string, Camera>(config.video.demoCamera ? [['demo', demoCamera()]] : []);
  /** The site's mode in force (none while the modes service has not said). */
  let mode: Mode | undefined;

  // A camera stored by an older version gets the defaults of settings added since.
  const withDefaults = (c: Camera): Camera => ({
    ...c,
    subStream: c.subStream ?? null,
    audio: c.audio ?? true,
    recording: Recording.parse(c.recording ?? {}),
    detection: Detection.parse(c.detection ?? {}),
    review: ReviewRules.parse(c.review ?? {}),
  });
  const all = async (): Promise<Camera[]> => [...builtIn.values(), ...(await cameras!.values()).map(withDefaults)];
  const find = async (id: string): Promise<Camera> => {
    const camera = builtIn.get(id) ?? (await cameras!.get(id));
    if (!camera) throw new NotFoundError('Camera', id);
    return withDefaults(camera);
  };
  /** Review rules may only name zones the camera has. */
  const checkReviewZones = (camera: Pick<Camera, 'id' | 'detection' | 'review'>) => {
    const zones = camera.detection.zones.map((z) => z.name);
    for (const field of ['alertZones', 'requiredZones'] as const) {
      const unknown = camera.review[field].find((name) => !zones.includes(name));
      if (unknown !== undefined)
        throw new BadRequestError(
          `review.${field} names zone "${unknown}", which camera "${camera.id}" does not have (its zones: ${zones.join(', ') || 'none'})`,
          'UNKNOWN_ZONE',
          { field: `review.${field}`, zone: unknown },
        );
    }
  };

  const editable = async (id: string): Promise<Camera> => {
    const camera = await find(id);
    if (camera.builtIn)
      throw new ConflictError(
        `Camera "${id}" comes from the box's config (video.demoCamera); change it there`,
        'CAMERA_BUILT_IN',
      );
    return camera;
  };

  return {
    name: 'cameras',

    actions: {
      defaults: action({ input: NoInput, permission: 'live.view', handler: () => cameraDefaults() }),

      list: action({
        input: NoInput,
        permission: 'live.view',
        async handler(ctx) {
          const statuses = await statusesOf(ctx);
          return (await all()).map((c) => ({
            ...publicCamera(c, rtmpPort),
            status: statuses[c.id] ?? null,
            modeChanges: modeChanges(c, mode),
          }));
        },
      }),
      get: action({
        input: IdInput,
        permission: 'live.view',
        async handler(ctx) {
          const camera = await find(ctx.params.id);
          const statuses = await statusesOf(ctx, camera.id);
          return {
            ...publicCamera(camera, rtmpPort),
            status: statuses[camera.id] ?? null,
            modeChanges: modeChanges(camera, mode),
          };
        },
      }),
      add: action({
        input: CameraInput,
        permission: 'cameras.manage',
        async handler(ctx) {
          const { id } = ctx.params;
          if (builtIn.has(id) || (await cameras!.get(id)))
            throw new ConflictError(`Camera "${id}" already exists`, 'CAMERA_EXISTS');
          checkReviewZones(ctx.params);
          const push = ctx.params.source.kind === 'rtmp' ? newStreamKey() : undefined;
          const source: Camera['source'] =
            ctx.params.source.kind === 'rtsp' ? ctx.params.source : { kind: 'rtmp', keyHash: push!.keyHash };
          const camera: Camera = { ...ctx.params, source, createdAt: new Date().toISOString() };
          await cameras!.put(id, camera);
          broadcast(ctx, 'camera.added', { id, by: ctx.meta.caller?.username ?? 'box' });
          // The only time the key is shown: the box keeps its hash.
          return { ...publicCamera(camera, rtmpPort), ...(push ? { streamKey: push.key } : {}) };
        },
      }),
      update: action({
        input: CameraUpdate,
        permission: 'cameras.manage',
        async handler(ctx) {
          const current = await editable(ctx.params.id);
          const { source, recording, detection, review, subStream, ...rest } = ctx.params;
          // A camera that becomes a push camera gets a key; one that stays one keeps its key.
          const push = source?.kind === 'rtmp' && current.source.kind !== 'rtmp' ? newStreamKey() : undefined;
          let nextSource: Camera['source'] = current.source;
          if (source?.kind === 'rtsp')
            nextSource = keepPassword(source, current.source.kind === 'rtsp' ? current.source : null);
          else if (push) nextSource = { kind: 'rtmp', keyHash: push.keyHash };
          const next: Camera = {
            ...current,
            ...rest,
            recording: { ...current.recording, ...recording },
            detection: { ...current.detection, ...detection },
            review: { ...current.review, ...review },
            source: nextSource,
            subStream:
              subStream === undefined ? current.subStream : subStream && keepPassword(subStream, current.subStream),
          };
          checkReviewZones(next);
          await cameras!.put(next.id, next);
          broadcast(ctx, 'camera.updated', {
            id: next.id,
            changed: Object.keys(ctx.params).filter((k) => k !== 'id'),
            by: ctx.meta.caller?.username ?? 'box',
          });
          return { ...publicCamera(next, rtmpPort), ...(push ? { streamKey: push.key } : {}) };
        },
      }),
      // The installer's "Test" button: what ffprobe finds at the URL, before (or without) saving.
      test: action({
        input: z.strictObject({ source: RtspSource, id: CameraId.optional() }),
        permission: 'cameras.manage',
        timeout: 15_000,
        async handler(ctx) {
          // The masked password of a camera being edited stands for the stored one.
          const current = ctx.params.id
            ? (builtIn.get(ctx.params.id) ?? (await cameras!.get(ctx.params.id)))
            : undefined;
          const { url, transport } = keepPassword(
            ctx.params.source,
            current?.source.kind === 'rtsp' ? current.source : null,
          );
          return call(ctx, 'streams.probe', { url, transport }, { timeout: 15_000, retries: 0 });
        },
      }),
      newStreamKey: action({
        input: IdInput,
        permission: 'cameras.manage',
        async handler(ctx) {
          const current = await editable(ctx.params.id);
          if (current.source.kind !== 'rtmp') {
            throw new ConflictError(
              `Camera "${current.id}" is not a push camera (its source is ${current.source.kind})`,
              'NOT_A_PUSH_CAMERA',
            );
          }
          const push = newStreamKey();
          await cameras!.put(current.id, { ...current, source: { kind: 'rtmp', keyHash: push.keyHash } });
          // The old key stops working now: a camera pushing with it is cut off.
          broadcast(ctx, 'camera.updated', {
            id: current.id,
            changed: ['source'],
            by: ctx.meta.caller?.username ?? 'box',
          });
          return { id: current.id, streamKey: push.key };
        },
      }),
      remove: action({
        input: IdInput,
        permission: 'cameras.manage',
        async handler(ctx) {
          await editable(ctx.params.id);
          await cameras!.del(ctx.params.id);
          broadcast(ctx, 'camera.removed', { id: ctx.params.id, by: ctx.meta.caller?.username ?? 'box' });
          return { ok: true };
        },
      }),
      // Internal: the full spec, credentials included, as the mode makes it, for the other services.
      specs: action({
        input: z.strictObject({ id: CameraId.optional() }),
        handler: async (ctx) =>
          (ctx.params.id ? [await find(ctx.params.id)] : await all()).map((c) => withMode(c, mode)),
      }),
    },

    events: {
      // A new mode, or the active one edited: each camera whose settings it changes is told so.
      ...on('mode.applied', async function (applied) {
        const before = mode;
        mode = applied.mode;
        if (!cameras) return;
        for (const camera of await all()) {
          const [was, now] = [withMode(camera, before), withMode(camera, mode)];
          const changed = (['detection', 'recording', 'review', 'notifications'] as const).filter(
            (k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]),
          );
          if (changed.length)
            void broadcast(this.broker, 'camera.updated', {
              id: camera.id,
              changed,
              by: applied.active.by,
              mode: applied.mode.id,
            });
        }
      }),
    },

    async started() {
      store = await Store.open(dataPaths(config).db('cameras'));
      cameras = store.collection<Camera>('cameras');
      // The mode in force, when the modes service is up already; otherwise it says so when it starts.
      const active = await callIfRunning(this.broker, 'modes.active', {});
      mode ??= active?.mode;
    },

    async stopped() {
      await store?.close();
      store = undefined;
    },
  };
}
