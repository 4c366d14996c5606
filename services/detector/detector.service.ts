// detector: object detection for every camera that has it on. Frames come from the
// camera's live stream (the streams service, here or over NATS: compressed video on the
// bus, never raw frames), decoded on this node. With several detector nodes each camera
// goes to one of them (rendezvous hashing over the live detector nodes), so losing a
// node moves its cameras to the others.
import { broadcast, call, on } from '../../lib/bus.ts';
import { createHash } from 'node:crypto';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import type { Config } from '../../appliance/config.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import { CameraDetector } from './camera-detector.ts';
import type { DetectorStats, DetectorStatus } from './detector.schemas.ts';
import type { ObjectEvent } from '../events/events.schemas.ts';
import { YoloxModel } from '../../lib/vision/yolox.ts';
import { chooseDecoder, type DecoderChoice } from './hardware-decoding.ts';
import { InferenceQueue } from './inference-queue.ts';
import os from 'node:os';

const score = (node: string, camera: string) => createHash('sha1').update(`${node}/${camera}`).digest().readUInt32BE(0);

/** What a camera's detector is made from: a change elsewhere does not restart it. */
const detectionOf = (c: Camera) => JSON.stringify([c.enabled, c.source, c.subStream, c.detection]);

export function detectorService(config: Config): ServiceSchema {
  let model: YoloxModel | undefined;
  let modelError: string | null = null;
  let decoding: DecoderChoice = { decoder: 'software', inputArgs: [], notUsed: [] };
  const running = new Map<string, CameraDetector>();
  /** The last camera list seen: kept when the cameras service cannot be reached. */
  let cameras: Camera[] = [];
  let lostEvents = 0;
  /** Inference workers: one a core unless set. */
  const workers = config.detector.concurrentInferences ?? os.availableParallelism();
  const inferences = new InferenceQueue(workers);

  return {
    name: 'detector',
    dependencies: ['cameras', 'streams', 'events'],

    actions: {
      status: action({
        input: z.strictObject({}),
        permission: 'system.view',
        handler(ctx): DetectorStatus {
          const perCamera: Record<string, DetectorStats> = {};
          for (const [id, d] of running) perCamera[id] = d.stats;
          return {
            node: ctx.broker.nodeID,
            model: model
              ? { path: config.detector.modelPath, inputSize: model.size, labels: model.labels.length }
              : null,
            accelerators: {
              inference: model?.provider ?? null,
              decoding: decoding.decoder,
              notUsed: [...(model?.providersNotUsed ?? []), ...decoding.notUsed],
            },
            error: modelError,
            lostEvents,
            inferences: { concurrency: inferences.concurrency, waiting: inferences.depth },
            cameras: perCamera,
          };
        },
      }),
    },

    events: {
      // Broadcast: every detector instance hears them, each takes its share.
      ...on('camera.added', function () {
        return this.reconcile();
      }),
      ...on('camera.updated', function ({ id }) {
        return this.reconcile(id);
      }),
      ...on('camera.removed', function () {
        return this.reconcile();
      }),
      // A detector node came or went: cameras move. (A lost node is only $node.disconnected.)
      '$services.changed': {
        handler() {
          return this.reconcile();
        },
      },
      '$node.disconnected': {
        handler() {
          return this.reconcile();
        },
      },
    },

    methods: {
      /** This node's share of the cameras: each goes to the detector node with the highest hash. */
      mine(camera: string): boolean {
        const nodes = this.broker.registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .filter((s) => s.name === 'detector')
          .map((s) => (s as unknown as { nodeID: string }).nodeID);
        if (!nodes.includes(this.broker.nodeID)) nodes.push(this.broker.nodeID);
        return (
          nodes.reduce((best: string, n: string) => (score(n, camera) > score(best, camera) ? n : best), nodes[0]!) ===
          this.broker.nodeID
        );
      },

      async reconcile(changed?: string) {
        if (!model) return;
        cameras = await call(this.broker, 'cameras.specs', {}).catch((err: Error) => {
          this.logger.warn(
            `detector: the camera registry is not reachable (${err.message}); the cameras known stay as they are`,
          );
          return cameras;
        });
        const wanted = new Map(
          cameras.filter((c) => c.enabled && c.detection?.enabled && this.mine(c.id)).map((c) => [c.id, c]),
        );
        for (const [id, d] of running) {
          // A camera changed in what detection does not use (its notifications, its recording) keeps its tracks.
          const next = wanted.get(id);
          if (!next || (id === changed && detectionOf(next) !== detectionOf(d.camera))) {
            d.stop();
            running.delete(id);
            if (!next) inferences.forget(id);
          }
        }
        for (const [id, camera] of wanted) if (!running.has(id)) this.run(camera);
      },

      run(camera: Camera) {
        const viewer = `det-${this.broker.nodeID}-${camera.id}`.replace(/[^\w-]/g, '-').slice(0, 64);
        // The sub-stream when the camera has one: smaller frames to decode.
        const openFeed = () => call(this.broker, 'streams.live', { id: camera.id, viewer, stream: 'sub' });
        const d = new CameraDetector(
          camera,
          model!,
          inferences,
          {
            ffmpegPath: config.video.ffmpegPath,
            decoderInputArgs: decoding.inputArgs,
            snapshotWidth: config.detector.snapshotWidth,
            minScore: config.detector.minScore,
            stationaryCheckMs: config.detector.stationaryCheckSeconds * 1000,
            stationaryEndMs: config.detector.stationaryEndSeconds * 1000,
          },
          openFeed,
          this.logger,
        );
        d.on('event', (e: ObjectEvent) => {
          call(this.broker, 'events.record', e, { retries: 3 }).catch((err: Error) => {
            lostEvents++;
            this.logger.warn(`${camera.id}: event ${e.id} (${e.type}) not stored: ${err.message}`);
          });
        });
        // Heard by the recorder: motion on the recordings timeline, and what motion-only footage is kept for.
        d.on('motion', (span) => void broadcast(this.broker, 'detector.motion.spanned', span));
        running.set(camera.id, d);
        d.start();
        this.logger.info(
          `${camera.id}: detection on (${camera.detection.fps} fps, ${camera.detection.labels.join(', ')})`,
        );
      },
    },

    async started() {
      if (!config.detector.enabled) {
        modelError = 'detection is turned off on this box (detector.enabled: false)';
        this.logger.info(modelError);
        return;
      }
      try {
        model = await YoloxModel.load(config.detector.modelPath, config.detector.labelsPath ?? undefined, {
          threads: config.detector.threads,
          providers: config.detector.executionProviders,
          workers,
        });
        // Enough frames in flight for each worker to find a batch waiting, when the model takes one.
        inferences.concurrency = workers * model.batch;
        decoding = await chooseDecoder(config.video.ffmpegPath, config.detector.hwaccel, config.detector.hwaccelDevice);
        const notUsed = [...model.providersNotUsed, ...decoding.notUsed];
        this.logger.info(
          `model ${config.detector.modelPath}: ${model.size}x${model.size}, ${model.labels.length} labels, on ${model.provider}${model.batch > 1 ? `, up to ${model.batch} frames a run` : ''}; decoding in ${decoding.decoder}` +
            (notUsed.length ? ` (not used: ${notUsed.map((n) => `${n.name}: ${n.why}`).join('; ')})` : ''),
        );
      } catch (err) {
        // Recording goes on without detection; health and detector.status say why.
        modelError = (err as Error).message;
        this.logger.error(`detection off: ${modelError}`);
        return;
      }
      await this.reconcile();
    },

    async stopped() {
      for (const d of running.values()) d.stop();
      running.clear();
      await model?.close();
      model = undefined;
    },
  };
}
