// system: the box's health (per service, per node), version and configuration.
import { call } from '../../lib/bus.ts';
import os from 'node:os';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { redactedConfig, SERVICE_NAMES, type Config, type ServiceName } from '../../appliance/config.ts';
import { BadRequestError, ConflictError, NotFoundError, UnavailableError } from '../../lib/errors.ts';
import { underAllowedSource } from '../../lib/allowed-source.ts';
import {
  confirmRelease,
  installRelease,
  readUpdateState,
  releasesOnDisk,
  releasesRoot,
  releaseSignedBy,
  writeUpdateState,
} from '../../appliance/releases.ts';
import type { HealthStatus, History as HistoryAnswer, SystemInfo, UpdateStatus } from './system.schemas.ts';
import { cameraProcesses } from '../../lib/media/supervised-process.ts';
import { History } from './history.ts';
import { version } from '../../appliance/version.ts';

const NoInput = z.strictObject({});
/** The bus-facing services (system answers the call, api carries it, admp may have sent it) stay up. */
const RESTARTABLE = SERVICE_NAMES.filter(
  (n): n is Exclude<ServiceName, 'system' | 'api' | 'admp'> => !['system', 'api', 'admp'].includes(n),
);
const HEALTH_CHECK_TIMEOUT_MS = 1500;
const RESTART_TIMEOUT_MS = 30_000;
const CONFIRM_CHECK_MS = 1000;
/** Time for the answer to leave before the box stops to restart into the new release. */
const RESTART_DELAY_MS = 500;

const UpdateInput = z.strictObject({
  version: z.string().regex(/^\d+\.\d+\.\d+([-+][\w.-]+)?$/, 'a version such as 1.4.2'),
  /** Where the release archive (.tgz) is; the operator's platform hosts it. Ignored on balena. */
  url: z.url({ protocol: /^https?$/ }).optional(),
  sha256: z
    .string()
    .regex(/^[a-fA-F0-9]{64}$/, '64 hex digits')
    .optional(),
  /** Ed25519 signature (base64) of the release by one of update.releaseKeys: `npm run release:pack` prints it. */
  signature: z.string().max(200).optional(),
  /** The new release must be healthy within this long, or it is rolled back, s. */
  deadlineSeconds: z.number().int().min(10).max(86_400).default(300),
  /** Healthy for this long confirms it, s. */
  healthySeconds: z.number().int().min(1).max(3600).default(30),
});

type Status = HealthStatus;

interface RegistryService {
  name: string;
  nodeID: string;
  available: boolean;
  actions?: Record<string, unknown>;
}
interface RegistryNode {
  id: string;
  available: boolean;
  local: boolean;
  hostname?: string;
  lastHeartbeatTime?: number;
  cpu?: number | null;
  services?: Array<{ name: string }>;
}

/** `schemaOf` makes a service's schema again for restartServices: the node's service list, given by the gateway. */
export function systemService(config: Config, schemaOf: (name: ServiceName) => ServiceSchema): ServiceSchema {
  let confirmTimer: NodeJS.Timeout | undefined;
  let historyTimer: NodeJS.Timeout | undefined;
  let history: History | undefined;
  return {
    name: 'system',

    actions: {
      /** The box's own update: on balena, the supervisor applies the release the fleet pins; otherwise a release archive. */
      update: action({
        input: UpdateInput,
        permission: 'settings.manage',
        async handler(ctx) {
          const by = ctx.meta.caller?.username ?? 'box';
          // A restart now would cut a camera firmware campaign in the middle (on balena the update lock holds the supervisor back).
          const campaigns = await call(ctx.broker, 'usp.campaigns', {}).catch((err: Error) => {
            ctx.broker.logger.info(`update: no campaign to wait for (${err.message})`);
            return [];
          });
          const running = campaigns.filter((c) => c.state === 'running').map((c) => c.id);
          if (running.length)
            throw new ConflictError(
              `A camera firmware campaign is under way (${running.join(', ')}); update the box when it has finished`,
              'CAMPAIGN_RUNNING',
            );
          const supervisor = process.env['BALENA_SUPERVISOR_ADDRESS'];
          if (supervisor) {
            const res = await fetch(
              `${supervisor}/v1/update?apikey=${process.env['BALENA_SUPERVISOR_API_KEY'] ?? ''}`,
              {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ force: false }),
                signal: AbortSignal.timeout(10_000),
              },
            ).catch((err: Error) => {
              throw new UnavailableError(
                `The balena supervisor does not answer: ${err.message}`,
                'SUPERVISOR_UNREACHABLE',
              );
            });
            if (!res.ok)
              throw new UnavailableError(
                `The balena supervisor refused the update: HTTP ${res.status}`,
                'SUPERVISOR_REFUSED',
              );
            ctx.broadcast('box.update.started', { from: version, to: ctx.params.version, via: 'balena', by });
            return { mode: 'balena', from: version, to: ctx.params.version, state: 'requested' };
          }
          const root = releasesRoot();
          if (!root)
            throw new ConflictError(
              'This box runs from a checkout (npm start), not from a releases folder under release-runner.mjs: it cannot update itself',
              'UPDATES_NOT_MANAGED',
            );
          const { url, sha256, signature } = ctx.params;
          if (!url || !sha256)
            throw new ConflictError('A release archive needs its url and sha256', 'RELEASE_NEEDS_URL_AND_SHA256');
          // Signed, as camera firmware is: a checksum in the same command proves nothing about who made the release.
          if (!signature)
            throw new BadRequestError(
              'The release is not signed; the box installs only releases signed by a key in update.releaseKeys',
              'RELEASE_NOT_SIGNED',
            );
          if (!releaseSignedBy(ctx.params.version, sha256, signature, config.update.releaseKeys)) {
            throw new BadRequestError(
              `The release's signature is not by a key this box trusts (update.releaseKeys: ${config.update.releaseKeys.length} keys)`,
              'BAD_SIGNATURE',
            );
          }
          if (!underAllowedSource(url, config.update.releaseSources)) {
            throw new BadRequestError(
              `Releases may be fetched only from the sources allowed (update.releaseSources: ${config.update.releaseSources.join(', ') || 'none yet'})`,
              'SOURCE_NOT_ALLOWED',
            );
          }
          const state = await installRelease(root, version, { ...ctx.params, url, sha256, by });
          ctx.broadcast('box.update.started', { from: state.from, to: state.to, via: 'release', by });
          ctx.broker.logger.info(`update to ${state.to} installed; restarting into it`);
          setTimeout(() => process.kill(process.pid, 'SIGTERM'), RESTART_DELAY_MS);
          return { mode: 'release', from: state.from, to: state.to, state: 'restarting' };
        },
      }),

      updateStatus: action({
        input: NoInput,
        permission: 'system.view',
        async handler(): Promise<UpdateStatus> {
          const root = releasesRoot();
          const mode = process.env['BALENA_SUPERVISOR_ADDRESS'] ? 'balena' : root ? 'release' : 'checkout';
          return {
            version,
            mode,
            update: root ? await readUpdateState(root) : null,
            ...(root ? await releasesOnDisk(root) : {}),
          };
        },
      }),

      health: action({
        input: NoInput,
        permission: 'public',
        async handler(ctx) {
          const broker = ctx.broker;
          const registry = broker.registry as unknown as {
            getServiceList(o: object): RegistryService[];
            getNodeList(o: object): RegistryNode[];
          };
          const instances = registry
            .getServiceList({ onlyLocal: false, onlyAvailable: true, skipInternal: true, withActions: true })
            .filter((s) => (SERVICE_NAMES as readonly string[]).includes(s.name));

          // What the deployment declares, and whatever else runs: a declared one with no instance is down.
          const judged = SERVICE_NAMES.filter(
            (name) => config.deployment.services.includes(name) || instances.some((s) => s.name === name),
          );
          const services = await Promise.all(
            judged.map(async (name) => {
              const here = instances.filter((s) => s.name === name);
              const checks = await Promise.all(
                here.map(async (s) => {
                  // system answers this very call; asking it again would recurse.
                  if (name === 'system' || !s.actions?.[`${name}.health`])
                    return { node: s.nodeID, status: 'ok' as Status };
                  try {
                    const res = await broker.call<{ status: Status; reason?: string }, object>(
                      `${name}.health`,
                      {},
                      {
                        nodeID: s.nodeID,
                        timeout: HEALTH_CHECK_TIMEOUT_MS,
                        retries: 0,
                      },
                    );
                    return { node: s.nodeID, status: res.status, ...(res.reason ? { error: res.reason } : {}) };
                  } catch (err) {
                    return { node: s.nodeID, status: 'down' as Status, error: (err as Error).message };
                  }
                }),
              );
              const status: Status =
                checks.every((c) => c.status === 'ok') && checks.length
                  ? 'ok'
                  : checks.some((c) => c.status !== 'down')
                    ? 'degraded'
                    : 'down';
              return { name, status, instances: checks };
            }),
          );

          const nodes = registry.getNodeList({ onlyAvailable: false, withServices: true }).map((n) => ({
            id: n.id,
            available: n.available,
            local: n.local,
            hostname: n.hostname ?? null,
            cpu: n.cpu ?? null,
            services: (n.services ?? []).map((s) => s.name).filter((s) => !s.startsWith('$')),
          }));
          const status: Status = services.every((s) => s.status === 'ok') ? 'ok' : 'degraded';
          return { status, version, node: broker.nodeID, time: new Date().toISOString(), services, nodes };
        },
      }),

      history: action({
        input: NoInput,
        permission: 'system.view',
        handler: (ctx): HistoryAnswer => ({
          everySeconds: config.history.everySeconds,
          node: ctx.broker.nodeID,
          samples: history?.all ?? [],
        }),
      }),

      info: action({
        input: NoInput,
        permission: 'system.view',
        handler: (ctx): SystemInfo => ({
          version,
          node: ctx.broker.nodeID,
          hostname: os.hostname(),
          uptimeSeconds: Math.round(process.uptime()),
          transporter: config.transporter ? ('nats' as const) : ('embedded' as const),
          memoryRssBytes: process.memoryUsage.rss(),
          services: config.services,
        }),
      }),

      config: action({
        input: NoInput,
        permission: 'settings.manage',
        handler: () => redactedConfig(config),
      }),

      /** What support needs to see what is wrong, in one answer: no secrets, no video, no events. */
      diagnostics: action({
        input: NoInput,
        permission: 'settings.manage',
        async handler(ctx) {
          const ask = (name: string, params: object = {}) =>
            ctx
              .call(name, params, { timeout: HEALTH_CHECK_TIMEOUT_MS, retries: 0 })
              .catch((err: Error) => ({ unavailable: err.message }));
          const [health, cameras, storage, detector, sync, syncQueue, uplink] = await Promise.all([
            ask('system.health'),
            ask('cameras.list'),
            ask('recorder.storage'),
            ask('detector.status'),
            ask('sync.status'),
            ask('sync.queue', { limit: 20 }),
            ask('admp.status'),
          ]);
          return {
            at: new Date().toISOString(),
            version,
            node: ctx.broker.nodeID,
            runtime: {
              node: process.version,
              platform: `${os.platform()} ${os.release()} ${os.arch()}`,
              uptimeSeconds: Math.round(os.uptime()),
              processUptimeSeconds: Math.round(process.uptime()),
              loadAverage: os.loadavg(),
              memory: { totalBytes: os.totalmem(), freeBytes: os.freemem(), rssBytes: process.memoryUsage.rss() },
            },
            config: redactedConfig(config),
            health,
            cameras,
            storage,
            detector,
            sync,
            syncQueue,
            uplink,
          };
        },
      }),

      /** Stops and starts services of this node (a stuck camera pipeline, a wedged broker) without a reboot. */
      restartServices: action({
        input: z.strictObject({ services: z.array(z.enum(RESTARTABLE)).min(1).max(RESTARTABLE.length) }),
        permission: 'settings.manage',
        // Each service has its own stop grace (ffmpeg, open clients) and start.
        timeout: RESTART_TIMEOUT_MS * 2,
        async handler(ctx) {
          const missing = ctx.params.services.filter((name) => !ctx.broker.getLocalService(name));
          if (missing.length) throw new NotFoundError('Service on this node', missing.join(', '));
          const started = Date.now();
          for (const name of ctx.params.services) {
            await ctx.broker.destroyService(ctx.broker.getLocalService(name)!);
            ctx.broker.createService(schemaOf(name)); // started by the broker, as it is running
            await ctx.broker.waitForServices([name], RESTART_TIMEOUT_MS);
          }
          ctx.broadcast('system.services.restarted', {
            services: ctx.params.services,
            by: ctx.meta.caller?.username ?? 'box',
          });
          return { restarted: ctx.params.services, tookMs: Date.now() - started };
        },
      }),
    },

    async started() {
      const broker = this.broker;
      // Each service that answers is asked; one not on this deployment or not in reach is left out.
      history = new History(config.history.everySeconds, config.history.samples, {
        dataDir: config.dataDir,
        syncQueue: async () => (await call(broker, 'sync.status', {}, { timeout: 5000, retries: 0 })).queue.items,
        detector: async () => {
          const status = await call(broker, 'detector.status', {}, { timeout: 5000, retries: 0 });
          return { here: status.node === broker.nodeID, cameras: status.cameras };
        },
        cameraProcesses,
      });
      void history.sample(); // the first reading: rates start from it
      historyTimer = setInterval(() => {
        history!.sample().catch((err: Error) => this.logger.debug(`history: ${err.message}`));
      }, config.history.everySeconds * 1000);
      const root = releasesRoot();
      if (!root) return;
      const log = this.logger;
      // The outcome of an update is told once the node's services are up (the uplink among them).
      const announce = (state: Awaited<ReturnType<typeof readUpdateState>> & object, ok: boolean) =>
        broker
          .waitForServices(
            config.services.filter((n) => n !== 'system'),
            RESTART_TIMEOUT_MS,
          )
          .catch(() => undefined)
          .then(async () => {
            broker.broadcast('box.update.finished', {
              ok,
              from: state.from,
              to: state.to,
              ...(state.reason ? { reason: state.reason } : {}),
              by: state.by,
            });
            await writeUpdateState(root, { ...(await readUpdateState(root))!, reported: true });
          });
      const state = await readUpdateState(root);
      if (state?.state === 'rolled-back' && !state.reported && state.from === version) {
        log.error(`update to ${state.to} was rolled back: ${state.reason}`);
        void announce(state, false);
      }
      if (state?.state !== 'trying' || state.to !== version) return;
      // This is the new release on trial: healthy for healthySeconds in a row confirms it.
      let healthySince: number | null = null;
      confirmTimer = setInterval(async () => {
        const health = await call(broker, 'system.health', {}, { timeout: 5000 }).catch((err: Error) => {
          broker.logger.debug(`update: health not known yet (${err.message})`);
          return null;
        });
        healthySince = health?.status === 'ok' ? (healthySince ?? Date.now()) : null;
        if (healthySince === null || Date.now() - healthySince < state.healthySeconds * 1000) return;
        clearInterval(confirmTimer);
        const done = await confirmRelease(root, state);
        log.info(`update to ${done.to} confirmed: healthy for ${state.healthySeconds} s`);
        void announce(done, true);
      }, CONFIRM_CHECK_MS);
    },

    stopped() {
      clearInterval(confirmTimer);
      clearInterval(historyTimer);
    },
  };
}
