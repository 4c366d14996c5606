// recorder: the index of recorded segments (LevelDB), healed from the disk at start,
// and the timeline of what was recorded and where the gaps are.
import { broadcast, call, on, emit } from '../../lib/bus.ts';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat, statfs } from 'node:fs/promises';
import type { LoggerInstance, ServiceBroker, ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { Store } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { DAY_DIR, SEGMENT_FILE, dataPaths, startOfSegmentFile } from '../../appliance/data-dir.ts';
import { BUSY_MS, SegmentIndex } from './segment-index.ts';
import { MotionIndex } from './motion-index.ts';
import type { MotionSpan } from '../detector/detector.schemas.ts';
import { CLIP_NAME, FileInput, TimeRangeInput, type ArchiveStatus, type Segment } from './recorder.schemas.ts';
import { Retention } from './retention.ts';
import { seenRanges } from './seen-ranges.ts';
import { DiskWatch } from './disk-watch.ts';
import { ArchiveTier } from './archive-tier.ts';
import { ClipCache } from './clips.ts';
import { vodPlaylist } from './playlist.ts';
import { NotFoundError, UnavailableError } from '../../lib/errors.ts';
import { afterNodeStart } from '../../lib/after-start.ts';
import path from 'node:path';
import { CameraId, type Camera } from '../cameras/cameras.schemas.ts';

/** Bytes of the files under `dir`, less the folders named in `skip` (at the top level). */
async function dirBytes(dir: string, skip: string[] = []): Promise<number> {
  let sum = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (skip.includes(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) sum += await dirBytes(full);
    else if (entry.isFile()) sum += (await stat(full).catch(() => null))?.size ?? 0;
  }
  return sum;
}

export function recorderService(config: Config): ServiceSchema {
  let store: Store | undefined;
  let index: SegmentIndex | undefined;
  let motion: MotionIndex | undefined;
  let healTimer: NodeJS.Timeout | undefined;
  let retentionTimer: NodeJS.Timeout | undefined;
  let diskWatch: DiskWatch | undefined;
  let archive: ArchiveTier | undefined;
  const paths = dataPaths(config);
  const freeBytes = async () => {
    const disk = await statfs(paths.media);
    return disk.bavail * disk.bsize;
  };
  const clips = new ClipCache(paths.clips, config.video.ffmpegPath, (s) => locate(s), {
    maxBytes: config.video.clipCacheBytes,
    maxAgeMs: config.video.clipCacheHours * 3_600_000,
    roomOnDisk: async () => (await freeBytes()) - config.video.minFreeBytes,
  });
  /** Index writes of events under way: the store closes only once they are done. */
  const writes = new Set<Promise<void>>();
  const writing = (work: Promise<void>) => {
    writes.add(work);
    return work.finally(() => writes.delete(work));
  };
  /** Set by retention: the disk is under its floor with nothing of ours left to free. */
  let diskFull: { freeBytes: number; since: string } | null = null;

  const readable = (s: Segment) => s.tier !== 'archive' || archive?.reachable === true;
  const archiveUnavailable = (what: string) =>
    new UnavailableError(
      archive
        ? `Recording ${what} is in the archive (${archive.status.path}), which cannot be read now: ${archive.status.reason}`
        : `Recording ${what} is in an archive this box no longer has (video.archive is not set)`,
      'ARCHIVE_UNAVAILABLE',
      { what, archive: archive?.status.state ?? null },
    );

  /** Where a segment's file is: the hot disk, or the archive tier. */
  const locate = (segment: Segment): string =>
    segment.tier === 'archive' && archive ? archive.pathOf(segment) : path.join(paths.media, segment.path);

  /**
   * The file on this node's disks; every part of the name is checked against the data layout.
   * A segment is looked for on the hot disk, then in the archive (a move may be under way).
   */
  const fileOf = async (kind: 'segment' | 'clip', name: string): Promise<string> => {
    if (kind === 'clip') {
      if (!CLIP_NAME.test(name)) throw new NotFoundError('Clip', name);
      return path.join(paths.clips, name);
    }
    const [camera, day, file, ...rest] = name.split('/');
    if (
      rest.length ||
      !CameraId.safeParse(camera).success ||
      !DAY_DIR.test(day ?? '') ||
      !SEGMENT_FILE.test(file ?? '')
    )
      throw new NotFoundError('Recording', name);
    const rel = path.join(camera!, day!, file!);
    const hot = path.join(paths.media, rel);
    if (!archive || (await stat(hot).catch(() => null))) return hot;
    const archived = archive.pathOf({ path: rel });
    // Gone from a reachable archive: it may have gone away since it was last looked at.
    if (archive.reachable && !(await stat(archived).catch(() => null))) await checkArchive();
    if (!archive.reachable && (await index!.has(camera!, startOfSegmentFile(file!)))) throw archiveUnavailable(name);
    return archived;
  };

  /** Looks at the archive (at the first look, its state is told even when unchanged). */
  async function checkArchive(this: void, first = false): Promise<void> {
    if (archive && !(await archive.check()) && first) archiveChanged(archive.status);
  }
  /** A change of the archive's state is logged and broadcast (the System page, health). */
  function archiveChanged(this: void, s: ArchiveStatus): void {
    if (s.state === 'ok') logger?.info(`archive: ${s.path} is ready`);
    else logger?.warn(`archive: ${s.path} is ${s.state} (${s.reason}); recordings stay on the hot disk`);
    if (broker) void broadcast(broker, 'recording.archive.changed', s);
  }
  let logger: LoggerInstance | undefined;
  let broker: ServiceBroker | undefined;

  return {
    name: 'recorder',
    // Retention needs each camera's days from the registry.
    dependencies: ['cameras'],

    actions: {
      // The System page: what recordings take, per camera, and what the disk has left.
      storage: action({
        input: z.strictObject({}),
        permission: 'system.view',
        async handler() {
          const disk = await statfs(paths.media);
          const usage = await index!.usage();
          const cameras = Object.fromEntries(
            Object.entries(usage).map(([id, u]) => [id, { ...u, oldest: new Date(u.oldest).toISOString() }]),
          );
          return {
            recordingsBytes: Object.values(usage).reduce((sum, u) => sum + u.bytes, 0),
            clipsBytes: await clips.bytes(),
            diskTotalBytes: disk.blocks * disk.bsize,
            diskFreeBytes: disk.bavail * disk.bsize,
            diskFull: diskFull !== null,
            quotaBytes: config.video.quotaBytes,
            minFreeBytes: config.video.minFreeBytes,
            cameras,
            archive: archive ? { ...archive.status, recordingsBytes: await index!.totalBytes('archive') } : null,
          };
        },
      }),
      timeline: action({
        input: TimeRangeInput,
        permission: 'recordings.view',
        async handler(ctx) {
          const { camera, from, to } = ctx.params;
          const { ranges, gaps } = await index!.timeline(camera, from.getTime(), to.getTime());
          const moved = await motion!.ranges(camera, from.getTime(), to.getTime());
          const iso = (r: { start: number; end: number }) => ({
            start: new Date(r.start).toISOString(),
            end: new Date(r.end).toISOString(),
          });
          return {
            camera,
            from: from.toISOString(),
            to: to.toISOString(),
            ranges: ranges.map(iso),
            gaps: gaps.map(iso),
            motion: moved.map(iso),
          };
        },
      }),
      // Internal: makes the clip on this node's disk; the gateway streams the file.
      clip: action({
        input: TimeRangeInput,
        permission: 'recordings.view',
        timeout: 130_000,
        async handler(ctx) {
          const { camera, from, to } = ctx.params;
          const request = { camera, from: from.getTime(), to: to.getTime() };
          const segments = await index!.list(camera, request.from, request.to);
          if (segments.length === 0) {
            throw new NotFoundError('Recording', `${camera} ${from.toISOString()}..${to.toISOString()}`);
          }
          if (!segments.every(readable))
            throw archiveUnavailable(`${camera} ${from.toISOString()}..${to.toISOString()}`);
          const clip = await clips.get(request, segments);
          return { name: path.basename(clip.file), bytes: clip.bytes };
        },
      }),
      // The disk under its floor with nothing left to free: health says so (and the operator's telemetry with it).
      // So is an archive that is not there: its footage cannot be played and nothing moves.
      health: action({
        input: z.strictObject({}),
        handler: () =>
          diskFull
            ? {
                status: 'degraded',
                reason: `disk full: ${diskFull.freeBytes} bytes free, under the floor of ${config.video.minFreeBytes} (since ${diskFull.since})`,
              }
            : archive && !archive.reachable
              ? { status: 'degraded', reason: `archive ${archive.status.state}: ${archive.status.reason}` }
              : { status: store?.status === 'open' ? 'ok' : 'down' },
      }),
      // Files go to the gateway as streams over the bus, so the gateway needs no share of this disk.
      fileSize: action({
        input: FileInput,
        permission: 'recordings.view',
        async handler(ctx) {
          const file = await fileOf(ctx.params.kind, ctx.params.name);
          const info = await stat(file).catch(() => undefined);
          if (!info?.isFile())
            throw new NotFoundError(ctx.params.kind === 'clip' ? 'Clip' : 'Recording', ctx.params.name);
          return { bytes: info.size };
        },
      }),
      file: action({
        input: FileInput,
        permission: 'recordings.view',
        async handler(ctx) {
          const { kind, name, start, end } = ctx.params;
          return createReadStream(await fileOf(kind, name), { start, end });
        },
      }),
      playlist: action({
        input: TimeRangeInput,
        permission: 'recordings.view',
        async handler(ctx) {
          const { camera, from, to } = ctx.params;
          const found = await index!.list(camera, from.getTime(), to.getTime());
          if (found.length === 0)
            throw new NotFoundError('Recording', `${camera} ${from.toISOString()}..${to.toISOString()}`);
          // While the archive is away, what is on the hot disk still plays.
          const segments = found.filter(readable);
          if (segments.length === 0) throw archiveUnavailable(`${camera} ${from.toISOString()}..${to.toISOString()}`);
          return vodPlaylist(segments, locate, (s) => `/api/v1/recordings/${s.path.split(path.sep).join('/')}`);
        },
      }),
      segments: action({
        input: TimeRangeInput,
        permission: 'recordings.view',
        async handler(ctx) {
          const { camera, from, to } = ctx.params;
          return (await index!.list(camera, from.getTime(), to.getTime())).map((s) => ({
            ...s,
            start: new Date(s.start).toISOString(),
            end: new Date(s.end).toISOString(),
          }));
        },
      }),
    },

    events: {
      // Where the picture moved: for the timeline, and for the days motion-only footage is kept.
      ...on('detector.motion.spanned', async (span) => {
        if (motion && span.end > span.start) await writing(motion.add(span));
      }),
      ...on('recording.segment.closed', async (segment) => {
        // Closed while the box stops, after this service: the next start's heal indexes it.
        if (!index) return;
        await writing(index.add(segment));
      }),
    },

    async started() {
      logger = this.logger;
      broker = this.broker;
      await mkdir(paths.media, { recursive: true }); // a new box: statfs needs it to exist
      store = await Store.open(paths.db('recorder'));
      index = new SegmentIndex(store.collection<Segment>('segments'), store.collection<Segment>('archived'));
      motion = new MotionIndex(store.collection<MotionSpan>('motion'));
      const tiers = config.video.archive;
      if (tiers) {
        const segments = index;
        archive = new ArchiveTier(
          {
            dir: path.resolve(paths.root, tiers.path),
            requireMount: tiers.requireMount,
            minFreeBytes: tiers.minFreeBytes,
            quotaBytes: tiers.quotaBytes,
            bytesPerSecond: tiers.moveBytesPerSecond,
            afterMs: tiers.afterHours * 3_600_000,
          },
          paths.media,
          index,
          store.collection<Segment>('archive-journal'),
          () => segments.totalBytes('archive'),
          archiveChanged,
        );
        await checkArchive(true);
        const settled = await archive.settle();
        if (settled === 'finished' || settled === 'undone')
          this.logger.info(`archive: the move a stop interrupted was ${settled}`);
      }
      // An archive that is not there now keeps its entries: its footage comes back with it.
      const dropped = await index.dropMissing({
        hot: paths.media,
        ...(archive?.reachable ? { archive: archive.options.dir } : {}),
      });
      if (dropped) this.logger.info(`index healed: ${dropped} segments whose file is gone dropped`);
      // At start every file is looked at; later only those that started since the last look,
      // less what may have been busy then (a cut segment stays busy for BUSY_MS).
      let healedAt = 0;
      const heal = async () => {
        const now = Date.now();
        const since = healedAt && healedAt - BUSY_MS - 2 * config.video.segmentSeconds * 1000;
        const added = await index!.addMissing(paths.media, config.video.ffprobePath, since);
        healedAt = now;
        if (added.length) this.logger.info(`index healed: ${added.length} segments added from disk`);
        // Footage cut by a crash goes on like any other closed segment (cloud sync takes it), once
        // every service of this node is there to hear it.
        afterNodeStart(this.broker, () =>
          added.forEach((segment) => void emit(this.broker, 'recording.segment.healed', segment)),
        );
      };
      await heal();
      // Segments cut short just before this start are still "busy" now: look again now and then.
      const { preRollSeconds, postRollSeconds } = config.detector;
      const retention = new Retention(
        index,
        paths.media,
        {
          retainDays: (camera) =>
            specs ? (specs.get(camera)?.recording.retainDays ?? config.video.removedCameraRetainDays) : Infinity,
          eventRetainDays: (camera) => specs?.get(camera)?.recording.eventRetainDays ?? 0,
          eventsOnly: (camera) => specs?.get(camera)?.recording.mode === 'events',
          // An event may claim footage up to its pre-roll back, and is stored a little after it starts.
          eventClaimMs: (preRollSeconds + config.video.eventClaimSeconds) * 1000,
          eventRanges: async (camera, from, to) => {
            const range = { camera, from: new Date(from).toISOString(), to: new Date(to).toISOString(), limit: 1000 };
            const seen = await Promise.all([
              call(this.broker, 'events.list', range),
              // Items start up to reviewMaxSeconds before their events: look that much further back.
              call(this.broker, 'events.reviewItems', {
                ...range,
                from: new Date(from - config.detector.reviewMaxSeconds * 1000).toISOString(),
              }),
            ]).catch((err: Error) => {
              this.logger.debug(`recorder: no event marks on ${camera}'s timeline (${err.message})`);
              return undefined;
            });
            if (!seen) return undefined;
            const [events, items] = seen;
            return seenRanges({
              events,
              items,
              motion: await motion!.list(camera, from, to),
              recording: specs?.get(camera)?.recording,
              preRollMs: preRollSeconds * 1000,
              postRollMs: postRollSeconds * 1000,
              now: Date.now(),
            });
          },
          // Recordings queued for the cloud (sync.retentionWaitsForUpload); none when no sync service runs.
          pinned: async () =>
            new Set(
              await call(this.broker, 'sync.pinned', {}).catch((err: Error) => {
                this.logger.debug(`retention: nothing pinned for the cloud (${err.message})`);
                return [];
              }),
            ),
          quotaBytes: config.video.quotaBytes,
          minFreeBytes: config.video.minFreeBytes,
          otherBytes: () => dirBytes(paths.root, [path.basename(paths.media)]),
          reclaim: () => clips.trim(0),
          archive,
          // Uploads read their files from the hot disk; none queued when no sync service runs.
          queued: async () =>
            new Set(
              await call(this.broker, 'sync.queuedRecordings', {}).catch((err: Error) => {
                this.logger.debug(`archive: no recordings queued for the cloud (${err.message})`);
                return [];
              }),
            ),
        },
        freeBytes,
      );
      // One run at a time: the regular one and the disk watch's emergency one never overlap.
      let running: Promise<number> = Promise.resolve(0);
      const enforce = () => (running = running.then(enforceNow, enforceNow));
      const enforceNow = async (): Promise<number> => {
        // Without the registry no camera's days are known: delete nothing by age this round.
        const cameras = await call(this.broker, 'cameras.specs', {}).catch((err: Error) => {
          this.logger.warn(
            `retention: the camera registry is not reachable (${err.message}); only the space limits apply this round`,
          );
          return undefined;
        });
        specs = cameras ? new Map(cameras.map((c) => [c.id, c])) : undefined;
        await checkArchive();
        await clips.trim();
        const r = await retention.run();
        // Motion of footage that is gone goes with it.
        for (const camera of await motion!.cameras()) {
          const oldest = await index!.oldest(camera);
          await motion!.dropBefore(camera, oldest?.start ?? Date.now() - 86_400_000);
        }
        if (r.diskFull !== (diskFull !== null)) {
          diskFull = r.diskFull ? { freeBytes: await freeBytes(), since: new Date().toISOString() } : null;
          if (diskFull)
            this.logger.warn(
              `disk full: ${diskFull.freeBytes} bytes free, under the floor of ${config.video.minFreeBytes}, and nothing left to delete`,
            );
          else this.logger.info('disk no longer full');
          this.broker.broadcast('recording.disk.changed', {
            full: r.diskFull,
            freeBytes: await freeBytes(),
            minFreeBytes: config.video.minFreeBytes,
          });
        }
        if (r.byAge || r.bySpace || r.reclaimedBytes || r.moved) {
          this.logger.info(
            `retention: ${r.byAge} segments past their days and ${r.bySpace} for space removed, ${r.bytesFreed} bytes freed; ${r.reclaimedBytes} bytes of cached clips given up; ${r.moved} moved to the archive`,
          );
          this.broker.emit('recording.retention.applied', r);
        }
        return r.bytesFreed + r.reclaimedBytes;
      };
      let specs: Map<string, Camera> | undefined;
      await enforce().catch((err: Error) => this.logger.error(`retention failed: ${err.message}`));
      retentionTimer = setInterval(() => {
        enforce().catch((err: Error) => this.logger.error(`retention failed: ${err.message}`));
      }, config.video.retentionIntervalSeconds * 1000).unref();
      diskWatch = new DiskWatch({
        freeBytes,
        floorBytes: config.video.minFreeBytes,
        regularMs: config.video.retentionIntervalSeconds * 1000,
        runNow: async () => {
          this.logger.debug('disk filling fast or under its floor: retention runs now');
          return enforce().catch((err: Error) => (this.logger.error(`retention failed: ${err.message}`), 0));
        },
      });
      diskWatch.start();
      healTimer = setInterval(() => {
        heal().catch((err: Error) => this.logger.warn(`index heal failed: ${err.message}`));
      }, config.video.healIntervalSeconds * 1000).unref();
    },

    async stopped() {
      diskWatch?.stop();
      archive = undefined;
      clearInterval(healTimer);
      clearInterval(retentionTimer);
      // What comes from now on is left to the next start's heal; what is being written finishes first.
      index = undefined;
      motion = undefined;
      await Promise.allSettled([...writes]);
      await store?.close();
      store = undefined;
    },
  };
}
