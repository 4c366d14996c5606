// usp: the box's USP (TR-369) controller for its camera agents, over the MQTT MTP of the box's
// own broker. An agent announces itself with an MQTTConnect record on fogedge/devices/<id>/usp;
// the controller answers on fogedge/devices/<id>/cmd/usp. It keeps each endpoint (id, device,
// model, version), reads their data model, and sends requests and awaits their answers.
// It also takes the agents' hellos (a push camera and its stream key) and their motion events.
import { call, on } from '../../lib/bus.ts';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import pLimit from 'p-limit';
import { z } from 'zod';
import { readHeader } from '../../lib/firmware-image.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { action } from '../../lib/actions.ts';
import { BadRequestError, NotFoundError, UnavailableError } from '../../lib/errors.ts';
import { underAllowedSource } from '../../lib/allowed-source.ts';
import { Store, type Collection } from '../../lib/store.ts';
import { commitFile } from '../../lib/durable-files.ts';
import { unlessRefused } from '../../lib/refusals.ts';
import { CampaignInput, ImageFileInput, type Campaign, type TargetState } from './usp.schemas.ts';
import { UpdateLock } from '../../lib/update-lock.ts';
import {
  decodeRecord,
  encodeRecord,
  errorOf,
  request,
  USP_CONTENT_TYPE,
  UspError,
  type Msg,
} from '../../lib/usp/codec.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
import { CameraId } from '../cameras/cameras.schemas.ts';
import { CameraMotion } from './camera-motion.ts';
import { notificationOf, type UspNotification } from './notifications.ts';
import { boxAddress } from './box-address.ts';

/** Notifications kept per endpoint; the oldest go first. */
const NOTIFICATIONS_KEPT = 500;
/** A path name as the API takes it (the agent checks it against its data model). */
const UspPath = z
  .string()
  .min(1)
  .max(256)
  .regex(/^Device\./, 'a path that starts with "Device."');
/** The objects of a Set or an Add as USP has them: each with its parameters, all required. */
const objectsOf = (objects: Array<{ path: string; params: Record<string, string> }>) =>
  objects.map((o) => ({
    objPath: o.path,
    paramSettings: Object.entries(o.params).map(([param, value]) => ({ param, value, required: true })),
  }));
const Settings = z
  .record(z.string().min(1).max(128), z.string().max(4096))
  .refine((o) => Object.keys(o).length <= 64, 'at most 64 parameters');

/** The box's own USP endpoint id. */
export const controllerId = (config: Config) => `self::fogedge-${config.sync.boxId}`;

const REQUEST_TIMEOUT_MS = 15_000;
/** Actions that wait for an agent: past REQUEST_TIMEOUT_MS, so that their own answer comes first. */
const ACTION_TIMEOUT_MS = REQUEST_TIMEOUT_MS + 5000;
/**
 * A request to an agent is not idempotent (a reboot, a snapshot, a Download()): one that went
 * unanswered is not sent again by the bus's retry policy; the caller decides.
 */
const notRetried = <E extends Error>(err: E): E => Object.assign(err, { retryable: false });

export interface Endpoint {
  endpointId: string;
  device: string;
  manufacturer: string | null;
  model: string | null;
  serialNumber: string | null;
  softwareVersion: string | null;
  connectedAt: string;
  lastSeenAt: string;
  /** Whether its device's MQTT connection is up; false from the moment it goes (or the agent says it leaves). */
  connected?: boolean;
  disconnectedAt?: string | null;
  /** What its last Boot! said (TR-181 Device.Boot!): why it started, and whether on new firmware. */
  lastBoot?: {
    at: string;
    cause: string;
    firmwareUpdated: boolean;
    commandKey: string;
    parameterMap: Record<string, string>;
  } | null;
  /** The channel under the device's cmd/ topic the agent listens on (its subscribed or reply-to topic); absent: usp. */
  replyChannel?: string;
}

const DOWNLOAD_TIMEOUT_MS = 15 * 60_000;
const MAX_IMAGE_BYTES = 512 * 1024 * 1024;

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export function uspService(config: Config): ServiceSchema {
  const self = controllerId(config);
  let store: Store | undefined;
  let endpoints: Collection<Endpoint>;
  let campaigns: Collection<Campaign>;
  let notifications!: Collection<UspNotification>;
  let notificationSeq = 0;
  const updateLock = new UpdateLock(config.update.lockFile);
  let motion: CameraMotion | undefined;
  /** Requests waiting for their answer, by endpoint and msg id: only the endpoint asked may answer. */
  const pending = new Map<string, Pending>();
  const pendingKey = (endpointId: string, msgId: string) => `${endpointId} ${msgId}`;
  /** Warnings about what devices send, a few a minute per device: garbage must not flood the log. */
  const warned = new Map<string, { at: number; count: number; quiet: number }>();
  const warnOf = (device: string, log: { warn(m: string): void }, message: string) => {
    const now = Date.now();
    const w = warned.get(device) ?? { at: now, count: 0, quiet: 0 };
    if (now - w.at > 60_000) Object.assign(w, { at: now, count: 0 });
    warned.set(device, w);
    if (++w.count > 5) return void w.quiet++;
    log.warn(w.quiet ? `${message} (${w.quiet} more like it from device ${device} not logged)` : message);
    w.quiet = 0;
  };
  const imagesDir = dataPaths(config).uspImages;
  /** Replies to agent commands, by `<device>/<id>`. */
  const agentReplies = new Map<string, (reply: Record<string, unknown>) => void>();
  /** Waiters for notifications (an OperationComplete, a Boot!) of one endpoint. */
  const waiters = new Set<{
    endpointId: string;
    match: (n: Record<string, any>) => boolean;
    resolve: (n: Record<string, any>) => void;
  }>();
  const waitForNotify = (
    endpointId: string,
    match: (n: Record<string, any>) => boolean,
    timeoutMs: number,
    what: string,
  ) =>
    new Promise<Record<string, any>>((resolve, reject) => {
      const w = {
        endpointId,
        match,
        resolve: (n: Record<string, any>) => (clearTimeout(timer), waiters.delete(w), resolve(n)),
      };
      // Unref'd: a waiter left behind (the race it was in is decided) does not hold the process.
      const timer = setTimeout(
        () => (waiters.delete(w), reject(new Error(`no ${what} within ${Math.round(timeoutMs / 1000)} s`))),
        timeoutMs,
      ).unref();
      waiters.add(w);
    });

  // To an MQTT 5 agent a record says what it is and where the controller is answered (R-MQTT:
  // Content Type usp.msg, Response Topic); a 3.1.1 agent has the controller's topic configured.
  const send = (broker: ServiceBroker, e: Endpoint, msg: Msg) =>
    broker.call('mqtt.sendToDevice', {
      device: e.device,
      channel: e.replyChannel ?? 'usp',
      payloadBase64: Buffer.from(encodeRecord(self, e.endpointId, { msg })).toString('base64'),
      contentType: USP_CONTENT_TYPE,
      responseChannel: 'usp',
    });

  /**
   * The channel of a topic an agent gave to be answered on (MQTTConnect's subscribed_topic, or a
   * reply-to): only its own device's command topics, which it may read; anything else is refused.
   */
  const replyChannelOf = (device: string, topic: string): string | undefined => {
    const prefix = `fogedge/devices/${device}/cmd/`;
    const channel = topic.startsWith(prefix) ? topic.slice(prefix.length) : '';
    return /^[a-z0-9-]+(\/[a-z0-9-]+)*$/.test(channel) ? channel : undefined;
  };

  /** Sends a request and resolves with its response; an Error message rejects as a UspError. */
  const ask = async (
    broker: ServiceBroker,
    e: Endpoint,
    msgType: string,
    req: Record<string, unknown>,
  ): Promise<Msg> => {
    const msg = request(msgType, req);
    const answer = new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(pendingKey(e.endpointId, msg.header.msgId));
        reject(
          notRetried(
            new UnavailableError(
              `Camera agent ${e.endpointId} did not answer ${msgType} within ${REQUEST_TIMEOUT_MS / 1000} s`,
              'USP_TIMEOUT',
            ),
          ),
        );
      }, REQUEST_TIMEOUT_MS);
      pending.set(pendingKey(e.endpointId, msg.header.msgId), { resolve, reject, timer });
    });
    await send(broker, e, msg);
    const reply = await answer;
    const err = errorOf(reply);
    if (err) throw err;
    return reply;
  };

  const find = async (device: string) => {
    for (const e of await endpoints.values()) {
      if (e.device !== device) continue;
      if (e.connected === false)
        throw notRetried(
          new UnavailableError(
            `The camera agent of ${device} is offline (since ${e.disconnectedAt ?? 'its device disconnected'})`,
            'AGENT_OFFLINE',
          ),
        );
      return e;
    }
    throw new NotFoundError('USP endpoint of device', device);
  };

  /** A request the caller made to an agent's data model, audited (usp.request.done). */
  const askAs = async (
    ctx: {
      broker: ServiceBroker;
      meta: { caller?: { username?: string } };
      broadcast: (name: string, payload: object) => unknown;
    },
    device: string,
    msgType: string,
    req: Record<string, unknown>,
    paths: string[],
  ) => {
    const e = await find(device);
    const reply = await ask(ctx.broker, e, msgType, req).catch((err: unknown) => {
      throw apiError(err);
    });
    void ctx.broadcast('usp.request.done', {
      device,
      endpointId: e.endpointId,
      request: msgType,
      paths,
      by: ctx.meta.caller?.username ?? 'box',
    });
    return { e, reply };
  };

  /** Keeps a notification (the newest NOTIFICATIONS_KEPT per endpoint) and tells the bus. */
  const keepNotification = async (broker: ServiceBroker, n: UspNotification) => {
    const prefix = `${n.endpointId}\u0000`;
    const key = `${prefix}${Date.now().toString(16).padStart(12, '0')}${(notificationSeq++ % 0xffff).toString(16).padStart(4, '0')}`;
    await notifications.put(key, n, { sync: false });
    const old: string[] = [];
    for await (const [k] of notifications.entries({ gte: prefix, lt: `${n.endpointId}\u0001`, reverse: true }))
      old.push(k);
    await notifications.delMany(old.slice(NOTIFICATIONS_KEPT), { sync: false });
    broker.broadcast('usp.notification.received', n);
  };

  /** A USP error as the API gives it: the spec's code and message. */
  const apiError = (err: unknown) =>
    err instanceof UspError
      ? Object.assign(
          new UnavailableError(`USP error ${err.code}: ${err.message}`, 'USP_ERROR', {
            code: err.code,
            paramErrs: err.paramErrs,
          }),
          { retryable: false },
        )
      : err;

  /** The image, fetched once (from an allowed source only), checked by SHA-256, kept under data/usp/images, with a capability token. */
  const fetchImage = async (url: string, sha256: string): Promise<Campaign['image']> => {
    await mkdir(imagesDir, { recursive: true });
    const file = path.join(imagesDir, `${sha256}.img`);
    let data = await readFile(file).catch(() => null);
    if (!data) {
      if (!underAllowedSource(url, config.usp.firmwareSources)) {
        throw new BadRequestError(
          `Firmware may be fetched only from the sources the installer allowed (usp.firmwareSources: ${config.usp.firmwareSources.join(', ') || 'none yet'})`,
          'SOURCE_NOT_ALLOWED',
        );
      }
      // No redirects: an allowed server must not send the box somewhere else.
      const res = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS), redirect: 'error' }).catch(
        (err: Error) => {
          throw new BadRequestError(
            `Cannot fetch the image from ${new URL(url).origin}: ${(err.cause as Error | undefined)?.message ?? err.message}`,
            'IMAGE_FETCH_FAILED',
          );
        },
      );
      if (!res.ok || !res.body)
        throw new BadRequestError(`Fetching the image answered HTTP ${res.status}`, 'IMAGE_FETCH_FAILED');
      const length = Number(res.headers.get('content-length') ?? 0);
      if (length > MAX_IMAGE_BYTES)
        throw new BadRequestError(`The image is larger than ${MAX_IMAGE_BYTES} bytes`, 'IMAGE_TOO_LARGE');
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        createWriteStream(`${file}.part`),
      );
      data = await readFile(`${file}.part`);
      const got = createHash('sha256').update(data).digest('hex');
      if (got !== sha256) {
        await rm(`${file}.part`, { force: true });
        // The hash of what was fetched is not told: the answer must not reveal what a URL holds.
        throw new BadRequestError(`The image's SHA-256 is not ${sha256}`, 'CHECKSUM_MISMATCH');
      }
      await commitFile(`${file}.part`, file);
    }
    let manifest;
    try {
      manifest = readHeader(data).manifest;
    } catch (err) {
      throw new BadRequestError(`Not a camera firmware image: ${(err as Error).message}`, 'NOT_AN_IMAGE');
    }
    const tokens = store!.collection<string>('imageTokens');
    if (!(await tokens.get(sha256))) await tokens.put(sha256, randomBytes(16).toString('hex'));
    return { sha256, version: manifest.version, model: manifest.model, bytes: data.length };
  };

  const imageUrl = async (sha256: string) => {
    const token = await store!.collection<string>('imageTokens').get(sha256);
    const base = config.usp.imageBaseUrl ?? `http://${await boxAddress()}:${config.http.port}`;
    return `${base}/firmware/${sha256}-${token}.img`;
  };

  /**
   * The campaign's trial time for the camera, as the vendor argument FogEdge's agents take;
   * another vendor's agent would refuse an argument it does not know (7027), so it gets none.
   */
  const activateArgs = (e: Endpoint, c: Campaign): Record<string, string> =>
    e.manufacturer === 'FogEdge' ? { X_FOGEDGE_TrialSeconds: String(c.trialSeconds) } : {};

  /** One camera through Download(), Activate(), the reboot and the new version's confirmation. */
  const updateOne = async (
    broker: ServiceBroker,
    c: Campaign,
    t: TargetState,
    set: (s: Partial<TargetState>) => Promise<void>,
  ) => {
    const e = await endpoints.get(t.endpointId);
    if (!e) throw new Error('the camera agent is not known any more');
    const key = `${c.id}:${e.device}`;
    const params = (
      await ask(broker, e, 'GET', {
        get: { paramPaths: ['Device.DeviceInfo.ActiveFirmwareImage', 'Device.DeviceInfo.SoftwareVersion'] },
      })
    ).body.response!['getResp'].reqPathResults;
    const active = params[0]?.resolvedPathResults?.[0]?.resultParams?.ActiveFirmwareImage as string | undefined;
    if (params[1]?.resolvedPathResults?.[0]?.resultParams?.SoftwareVersion === c.image.version)
      return set({ state: 'succeeded', reason: 'already running this version' });
    const inactive = active?.endsWith('.1') ? 2 : 1;
    const image = `Device.DeviceInfo.FirmwareImage.${inactive}.`;
    const completion = (command: string, timeoutMs: number) =>
      waitForNotify(
        e.endpointId,
        (n) => n['operComplete']?.commandKey === key && n['operComplete']?.commandName === command,
        timeoutMs,
        `${command} completion`,
      ).then((n) => {
        const failure = n['operComplete'].cmdFailure;
        if (failure) throw new Error(`${command} failed: ${failure.errCode} ${failure.errMsg}`);
      });

    await set({ state: 'downloading' });
    // A camera that restarts before the download completes (power cut, crash) says so with a Boot!.
    const restarted = waitForNotify(
      e.endpointId,
      (n) => n['event']?.eventName === 'Boot!' && n['event']?.params?.CommandKey !== key,
      DOWNLOAD_TIMEOUT_MS,
      'a restart',
    ).then(() => {
      throw new Error('the camera restarted during Download(); it runs its old image');
    });
    restarted.catch(() => undefined);
    const downloaded = completion('Download()', DOWNLOAD_TIMEOUT_MS);
    downloaded.catch(() => undefined); // awaited below; may settle while the request is still out
    const url = await imageUrl(c.image.sha256);
    await Promise.race([
      ask(broker, e, 'OPERATE', {
        operate: {
          command: `${image}Download()`,
          commandKey: key,
          sendResp: true,
          inputArgs: {
            URL: url,
            FileSize: String(c.image.bytes),
            CheckSumAlgorithm: 'SHA-256',
            CheckSum: c.image.sha256,
            AutoActivate: 'false',
          },
        },
      }).then(() => downloaded),
      restarted,
    ]);

    await set({ state: 'activating' });
    const trialMs = (c.trialSeconds + 60) * 1000;
    // The next Boot! tells: with this campaign's key it booted the new image; without, it restarted before Activate() took.
    const booted = waitForNotify(
      e.endpointId,
      (n) => n['event']?.eventName === 'Boot!',
      trialMs,
      'Boot! after Activate()',
    );
    booted.catch(() => undefined);
    await Promise.race([
      ask(broker, e, 'OPERATE', {
        operate: { command: `${image}Activate()`, commandKey: key, sendResp: true, inputArgs: activateArgs(e, c) },
      }),
      booted,
    ]);
    await set({ state: 'rebooting' });
    // Booted into the new image, then on trial: done when the camera confirms it (BootFirmwareImage
    // becomes the new one), failed when it boots back into the old one.
    const deadline = Date.now() + trialMs;
    let boot = await booted;
    if (boot['event'].params.CommandKey !== key)
      throw new Error('the camera restarted before Activate() took; it runs its old image');
    for (;;) {
      const map = JSON.parse(boot['event'].params.ParameterMap || '{}') as Record<string, string>;
      if (
        boot['event'].params.FirmwareUpdated !== 'true' ||
        map['Device.DeviceInfo.SoftwareVersion'] !== c.image.version
      ) {
        throw new Error(
          `rolled back to ${map['Device.DeviceInfo.SoftwareVersion'] ?? 'the old image'}: ${map['Device.DeviceInfo.FirmwareImage.1.BootFailureLog'] || 'no reason given'}`,
        );
      }
      const next = waitForNotify(
        e.endpointId,
        (n) => n['event']?.eventName === 'Boot!',
        Math.max(1, deadline - Date.now()),
        'the new image confirmed',
      );
      const confirmed = (async () => {
        while (Date.now() < deadline) {
          const e2 = (await endpoints.get(e.endpointId)) ?? e;
          const r = await ask(broker, e2, 'GET', {
            get: { paramPaths: ['Device.DeviceInfo.BootFirmwareImage'] },
          }).catch(() => null);
          if (
            r?.body.response!['getResp'].reqPathResults[0]?.resolvedPathResults?.[0]?.resultParams
              ?.BootFirmwareImage === `Device.DeviceInfo.FirmwareImage.${inactive}`
          )
            return true;
          await new Promise((r2) => setTimeout(r2, 1000));
        }
        return false;
      })();
      const first = await Promise.race([
        confirmed.then((ok) => ({ ok })),
        next.then(
          (n) => ({ boot: n }),
          () => ({ ok: false }),
        ),
      ]);
      if ('boot' in first) {
        boot = first.boot; // it rebooted again: judged by that boot
        continue;
      }
      if (!first.ok)
        throw new Error(`version ${c.image.version} was not confirmed healthy within ${c.trialSeconds + 60} s`);
      return set({ state: 'succeeded', reason: null });
    }
  };

  const runCampaign = async (broker: ServiceBroker, c: Campaign) => {
    // A fleet release must not restart the box in the middle of a campaign (balena's update lock).
    const release = await updateLock.hold(`firmware campaign ${c.id}`);
    try {
      await runTargets(broker, c);
    } finally {
      await release();
    }
  };

  const runTargets = async (broker: ServiceBroker, c: Campaign) => {
    let failures = 0;
    const save = async () => {
      await campaigns.put(c.id, c);
      broker.broadcast('usp.campaign.changed', c);
    };
    const limit = pLimit(c.concurrency);
    await Promise.all(
      Object.values(c.targets).map((t) =>
        limit(async () => {
          const set = async (s: Partial<TargetState>) => {
            Object.assign(t, s, { updatedAt: new Date().toISOString() });
            await save();
          };
          if (failures > c.maxFailures)
            return set({ state: 'skipped', reason: `the campaign stopped after ${failures} failures` });
          try {
            await updateOne(broker, c, t, set);
          } catch (err) {
            failures++;
            await set({ state: 'failed', reason: (err as Error).message });
          }
        }),
      ),
    );
    const skipped = Object.values(c.targets).some((t) => t.state === 'skipped');
    c.state = failures === 0 ? 'succeeded' : skipped ? 'stopped' : 'failed';
    c.finishedAt = new Date().toISOString();
    await save();
    broker.broadcast('usp.campaign.finished', {
      id: c.id,
      state: c.state,
      version: c.image.version,
      outcomes: Object.values(c.targets).map((t) => ({ device: t.device, state: t.state, reason: t.reason })),
      by: c.by,
    });
  };

  return {
    name: 'usp',

    actions: {
      endpoints: action({ input: z.strictObject({}), permission: 'devices.manage', handler: () => endpoints.values() }),

      /** Get on a camera agent's data model: the resolved objects and their parameters. */
      get: action({
        input: z.strictObject({ device: DeviceId, paths: z.array(z.string().min(1).max(256)).min(1).max(64) }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const reply = await ask(ctx.broker, await find(ctx.params.device), 'GET', {
            get: { paramPaths: ctx.params.paths },
          }).catch((err: unknown) => {
            throw apiError(err);
          });
          return reply.body.response!['getResp'].reqPathResults;
        },
      }),

      /**
       * A firmware campaign: the signed image fetched once and hosted by the box, then each camera
       * updated (Download(), Activate(), the reboot, the new version confirmed) a few at a time;
       * more failures than maxFailures stops it. Answers at once with the campaign; progress on
       * the bus (usp.campaign.changed) and by usp.campaign.
       */
      firmwareUpdate: action({
        input: CampaignInput,
        permission: 'devices.manage',
        async handler(ctx) {
          const p = ctx.params;
          const image = await fetchImage(p.url, p.sha256.toLowerCase());
          const all = await endpoints.values();
          const chosen = p.devices
            ? all.filter((e) => p.devices!.includes(e.device))
            : all.filter((e) => !p.model || e.model === p.model);
          if (p.devices) {
            const missing = p.devices.filter((d) => !all.some((e) => e.device === d));
            if (missing.length) throw new NotFoundError('USP endpoint of device', missing.join(', '));
          }
          if (!chosen.length)
            throw new BadRequestError(
              `No camera agent${p.model ? ` of model "${p.model}"` : ''} to update`,
              'NO_TARGETS',
            );
          const wrongModel = chosen.filter((e) => e.model && e.model !== image.model);
          if (wrongModel.length)
            throw new BadRequestError(
              `The image is for model "${image.model}"; not for ${wrongModel.map((e) => `${e.device} (${e.model})`).join(', ')}`,
              'WRONG_MODEL',
            );
          const now = new Date().toISOString();
          const campaign: Campaign = {
            id: `fw-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
            image,
            concurrency: p.concurrency,
            maxFailures: p.maxFailures,
            trialSeconds: p.trialSeconds,
            state: 'running',
            targets: Object.fromEntries(
              chosen.map((e) => [
                e.endpointId,
                {
                  endpointId: e.endpointId,
                  device: e.device,
                  state: 'pending',
                  fromVersion: e.softwareVersion,
                  reason: null,
                  updatedAt: now,
                },
              ]),
            ),
            createdAt: now,
            finishedAt: null,
            by: ctx.meta.caller?.username ?? 'box',
          };
          await campaigns.put(campaign.id, campaign);
          ctx.broadcast('usp.campaign.started', {
            id: campaign.id,
            version: image.version,
            targets: chosen.map((e) => e.device),
            by: campaign.by,
          });
          void runCampaign(ctx.broker, campaign).catch((err: Error) =>
            ctx.broker.logger.error(`usp: campaign ${campaign.id}: ${err.message}`),
          );
          return campaign;
        },
      }),

      campaign: action({
        input: z.strictObject({ id: z.string().max(64) }),
        permission: 'devices.manage',
        handler: (ctx) => campaigns.require(ctx.params.id, 'Campaign'),
      }),

      campaigns: action({
        input: z.strictObject({}),
        permission: 'devices.manage',
        handler: () => campaigns.values({ reverse: true, limit: 100 }),
      }),

      /** Set on an agent's data model: parameters of one or more objects; allowPartial lets each object succeed alone. */
      set: action({
        input: z.strictObject({
          device: DeviceId,
          objects: z
            .array(z.strictObject({ path: UspPath, params: Settings }))
            .min(1)
            .max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await askAs(
            ctx,
            p.device,
            'SET',
            { set: { allowPartial: p.allowPartial, updateObjs: objectsOf(p.objects) } },
            p.objects.map((o) => o.path),
          );
          return reply.body.response!['setResp'].updatedObjResults;
        },
      }),

      /** Add: a new instance in a table of the agent (e.g. Device.LocalAgent.Subscription.) with its parameters. */
      add: action({
        input: z.strictObject({
          device: DeviceId,
          objects: z
            .array(z.strictObject({ path: UspPath, params: Settings.default({}) }))
            .min(1)
            .max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await askAs(
            ctx,
            p.device,
            'ADD',
            { add: { allowPartial: p.allowPartial, createObjs: objectsOf(p.objects) } },
            p.objects.map((o) => o.path),
          );
          return reply.body.response!['addResp'].createdObjResults;
        },
      }),

      /** Delete: instances of the agent's tables. */
      delete: action({
        input: z.strictObject({
          device: DeviceId,
          paths: z.array(UspPath).min(1).max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await askAs(
            ctx,
            p.device,
            'DELETE',
            { delete: { allowPartial: p.allowPartial, objPaths: p.paths } },
            p.paths,
          );
          return reply.body.response!['deleteResp'].deletedObjResults;
        },
      }),

      /**
       * Operate: a command of the agent's data model (Device.Reboot(), ...Download()). A
       * synchronous one answers with its output; an asynchronous one with the Request object it
       * runs as, and, with wait, its OperationComplete (up to waitSeconds).
       */
      operate: action({
        input: z.strictObject({
          device: DeviceId,
          command: z
            .string()
            .min(3)
            .max(256)
            .regex(/^Device\..*\(\)$/, 'a command path that starts with "Device." and ends with "()"'),
          args: Settings.default({}),
          wait: z.boolean().default(false),
          waitSeconds: z.number().int().min(1).max(300).default(60),
        }),
        permission: 'devices.manage',
        // The bus must not give up (or retry) before the wait is over.
        timeout: 310_000 + ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const commandKey = `op-${randomBytes(6).toString('hex')}`;
          const e = await find(p.device);
          const done = p.wait
            ? waitForNotify(
                e.endpointId,
                (n) => n['operComplete']?.commandKey === commandKey,
                p.waitSeconds * 1000,
                `the end of ${p.command}`,
              )
            : undefined;
          done?.catch(() => undefined); // awaited below, once the command is accepted
          const { reply } = await askAs(
            ctx,
            p.device,
            'OPERATE',
            { operate: { command: p.command, commandKey, sendResp: true, inputArgs: p.args } },
            [p.command],
          );
          const result = reply.body.response!['operateResp'].operationResults[0] ?? {};
          if (result.cmdFailure)
            return {
              command: p.command,
              commandKey,
              state: 'failed',
              failure: { code: result.cmdFailure.errCode, message: result.cmdFailure.errMsg },
            };
          if (!result.reqObjPath)
            return { command: p.command, commandKey, state: 'done', output: result.reqOutputArgs?.outputArgs ?? {} };
          if (!done) return { command: p.command, commandKey, state: 'running', request: result.reqObjPath };
          const completion = notificationOf(
            e.endpointId,
            e.device,
            await done.catch((err: Error) => {
              throw notRetried(
                new UnavailableError(
                  `${p.command} on ${p.device}: ${err.message}; it may still finish (see its notifications)`,
                  'OPERATION_PENDING',
                ),
              );
            }),
          )!;
          return {
            command: p.command,
            commandKey,
            request: result.reqObjPath,
            ...(completion.failure
              ? { state: 'failed', failure: completion.failure }
              : { state: 'done', output: completion.params }),
          };
        },
      }),

      /** What the agents told the controller (Boot!, OperationComplete, value changes), newest first. */
      notifications: action({
        input: z.strictObject({
          device: DeviceId.optional(),
          limit: z.number().int().min(1).max(NOTIFICATIONS_KEPT).default(100),
        }),
        permission: 'devices.manage',
        async handler(ctx) {
          const all = await endpoints.values();
          const chosen = ctx.params.device ? all.filter((e) => e.device === ctx.params.device) : all;
          if (ctx.params.device && !chosen.length) throw new NotFoundError('USP endpoint of device', ctx.params.device);
          const out: UspNotification[] = [];
          for (const e of chosen)
            out.push(
              ...(await notifications.values({
                gte: `${e.endpointId}\u0000`,
                lt: `${e.endpointId}\u0001`,
                reverse: true,
                limit: ctx.params.limit,
              })),
            );
          return out.sort((a, b) => b.at.localeCompare(a.at)).slice(0, ctx.params.limit);
        },
      }),

      /** A command to a camera agent (snapshot, restart-stream, set-video, reboot) and its answer. */
      agentCommand: action({
        input: z.strictObject({
          device: DeviceId,
          command: z.enum(['snapshot', 'restart-stream', 'set-video', 'reboot']),
          width: z.number().int().min(160).max(3840).optional(),
          height: z.number().int().min(120).max(2160).optional(),
          bitrateKbps: z.number().int().min(64).max(20_000).optional(),
        }),
        permission: 'devices.manage',
        // Longer than the wait for the agent: the caller gets the action's own 503, not the bus's timeout.
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const { device, ...command } = ctx.params;
          const id = randomBytes(6).toString('hex');
          const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
            const timer = setTimeout(
              () => (
                agentReplies.delete(`${device}/${id}`),
                reject(
                  notRetried(
                    new UnavailableError(
                      `Camera agent ${device} did not answer ${command.command} within ${REQUEST_TIMEOUT_MS / 1000} s`,
                      'AGENT_TIMEOUT',
                    ),
                  ),
                )
              ),
              REQUEST_TIMEOUT_MS,
            );
            agentReplies.set(
              `${device}/${id}`,
              (reply) => (clearTimeout(timer), agentReplies.delete(`${device}/${id}`), resolve(reply)),
            );
          });
          answer.catch(() => undefined); // awaited below, after the send
          await ctx.broker.call('mqtt.sendToDevice', {
            device,
            channel: 'agent/command',
            payloadBase64: Buffer.from(JSON.stringify({ id, ...command })).toString('base64'),
          });
          const reply = await answer;
          if (!reply['ok'])
            throw new BadRequestError(`Camera agent ${device}: ${String(reply['error'])}`, 'AGENT_REFUSED');
          return reply['result'];
        },
      }),

      /** Internal: the hosted image's file, for the gateway to serve (the token in its name is the capability). */
      imageFile: action({
        input: ImageFileInput,
        async handler(ctx) {
          const sha = ctx.params.file.slice(0, 64);
          const token = (await store!.collection<string>('imageTokens').get(sha)) ?? null;
          if (!token || `${sha}-${token}.img` !== ctx.params.file)
            throw new NotFoundError('Firmware image', ctx.params.file);
          return { path: path.join(imagesDir, `${sha}.img`) };
        },
      }),
    },

    events: {
      ...on('mqtt.device.disconnected', function ({ device }) {
        if (store) return this.markOffline(device, 'its MQTT connection closed');
      }),

      async 'agent.message'(ctx: {
        params: { device: string; channel: string; payloadBase64: string; replyTo?: string };
      }) {
        if (ctx.params.channel === 'agent/hello' && store)
          return this.onHello(ctx.params.device, ctx.params.payloadBase64);
        if (ctx.params.channel === 'agent/motion')
          return motion?.receive(ctx.params.device, Buffer.from(ctx.params.payloadBase64, 'base64'));
        if (ctx.params.channel === 'agent/reply') {
          const reply = JSON.parse(Buffer.from(ctx.params.payloadBase64, 'base64').toString('utf8')) as { id?: string };
          const waiting = reply.id ? agentReplies.get(`${ctx.params.device}/${reply.id}`) : undefined;
          waiting?.(reply);
          return;
        }
        if (ctx.params.channel !== 'usp' || !store) return;
        const broker = this.broker;
        let env;
        try {
          env = decodeRecord(Buffer.from(ctx.params.payloadBase64, 'base64'));
        } catch (err) {
          return warnOf(
            ctx.params.device,
            this.logger,
            `usp: a record from device ${ctx.params.device} cannot be read: ${(err as Error).message}`,
          );
        }
        if (env.toId !== self)
          return warnOf(
            ctx.params.device,
            this.logger,
            `usp: device ${ctx.params.device} sent a record for ${env.toId}, not this controller`,
          );
        const now = new Date().toISOString();
        if (env.mqttConnect) {
          // Endpoint ids are claimed per device: one device cannot speak for another's endpoint.
          const known = (await endpoints.values()).find((e) => e.endpointId === env.fromId);
          if (known && known.device !== ctx.params.device)
            return this.logger.warn(
              `usp: device ${ctx.params.device} claims endpoint ${env.fromId} of device ${known.device}`,
            );
          // Answers go to the topic the agent subscribed to (TR-369 MQTTConnectRecord.subscribed_topic).
          const replyChannel = replyChannelOf(ctx.params.device, env.mqttConnect.subscribedTopic);
          if (!replyChannel)
            return warnOf(
              ctx.params.device,
              this.logger,
              `usp: agent ${env.fromId} (device ${ctx.params.device}) subscribed to "${env.mqttConnect.subscribedTopic}", which is not one of its device's command topics; not connected`,
            );
          const e: Endpoint = {
            endpointId: env.fromId,
            device: ctx.params.device,
            manufacturer: null,
            model: null,
            serialNumber: null,
            softwareVersion: null,
            ...known,
            connectedAt: now,
            lastSeenAt: now,
            replyChannel,
            connected: true,
            disconnectedAt: null,
          };
          await endpoints.put(e.endpointId, e);
          this.logger.info(`usp: agent ${e.endpointId} connected (device ${e.device})`);
          // What it is and runs: read once it is known.
          void ask(broker, e, 'GET', { get: { paramPaths: ['Device.DeviceInfo.'] } })
            .then(async (reply) => {
              const info =
                reply.body.response!['getResp'].reqPathResults[0]?.resolvedPathResults?.find(
                  (r: { resolvedPath: string }) => r.resolvedPath === 'Device.DeviceInfo.',
                )?.resultParams ?? {};
              const next = {
                ...((await endpoints.get(e.endpointId)) ?? e),
                manufacturer: info.Manufacturer ?? null,
                model: info.ModelName ?? null,
                serialNumber: info.SerialNumber ?? null,
                softwareVersion: info.SoftwareVersion ?? null,
              };
              await endpoints.put(e.endpointId, next);
              broker.broadcast('usp.endpoint.connected', next);
            })
            .catch((err: Error) => this.logger.warn(`usp: reading ${e.endpointId} failed: ${err.message}`));
          return;
        }
        const e = await endpoints.get(env.fromId);
        if (!e || e.device !== ctx.params.device)
          return warnOf(
            ctx.params.device,
            this.logger,
            `usp: a record from unknown endpoint ${env.fromId} (device ${ctx.params.device})`,
          );
        // A DisconnectRecord: the agent says it leaves (TR-369); it is offline until its next MQTTConnect.
        if (env.disconnect)
          return this.markOffline(
            e.device,
            `the agent disconnected: ${env.disconnect.reason || env.disconnect.reasonCode}`,
          );
        // A reply-to with the record (R-MQTT.25) says where this agent is answered from now on.
        const replyChannel = ctx.params.replyTo
          ? replyChannelOf(ctx.params.device, ctx.params.replyTo)
          : e.replyChannel;
        if (ctx.params.replyTo && !replyChannel)
          return warnOf(
            ctx.params.device,
            this.logger,
            `usp: agent ${e.endpointId} asked for replies on "${ctx.params.replyTo}", not one of its device's command topics`,
          );
        // A record from it says it is there, whatever was heard of its connection before.
        await endpoints.put(
          e.endpointId,
          { ...e, lastSeenAt: now, connected: true, disconnectedAt: null, ...(replyChannel ? { replyChannel } : {}) },
          { sync: false },
        );
        if (!env.msg) return;
        const key = pendingKey(e.endpointId, env.msg.header.msgId);
        const waiting = pending.get(key);
        if (waiting) {
          pending.delete(key);
          clearTimeout(waiting.timer);
          waiting.resolve(env.msg);
          return;
        }
        if (env.msg.header.msgType === 'NOTIFY') {
          const notify = env.msg.body?.request?.['notify'];
          if (!notify)
            return warnOf(
              ctx.params.device,
              this.logger,
              `usp: a NOTIFY from ${e.endpointId} without a Notify request`,
            );
          // Asked for: the NotifyResp, with the same msg id (TR-369 Notify, send_resp).
          if (notify.sendResp)
            void send(broker, e, {
              header: { msgId: env.msg.header.msgId, msgType: 'NOTIFY_RESP' },
              body: { response: { notifyResp: { subscriptionId: notify.subscriptionId ?? '' } } },
            }).catch(() => undefined);
          for (const w of [...waiters]) if (w.endpointId === e.endpointId && w.match(notify)) w.resolve(notify);
          const n = notificationOf(e.endpointId, e.device, notify);
          if (!n)
            return warnOf(
              ctx.params.device,
              this.logger,
              `usp: a Notify from ${e.endpointId} of a kind this controller does not keep`,
            );
          await keepNotification(broker, n);
          if (n.type === 'event' && n.name === 'Boot!' && n.path === 'Device.') await this.onBoot(e, n);
        }
      },
    },

    methods: {
      /** A Boot!: kept with the endpoint (why it started, on which firmware) and audited. */
      async onBoot(e: Endpoint, n: UspNotification) {
        let parameterMap: Record<string, string> = {};
        try {
          const parsed = JSON.parse(n.params['ParameterMap'] ?? '{}') as unknown;
          if (parsed && typeof parsed === 'object')
            parameterMap = Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
        } catch {
          // A ParameterMap that is not JSON: kept as sent in the notification, not here.
        }
        const lastBoot = {
          at: n.at,
          cause: n.params['Cause'] ?? '',
          firmwareUpdated: n.params['FirmwareUpdated'] === 'true',
          commandKey: n.params['CommandKey'] ?? '',
          parameterMap,
        };
        const current = (await endpoints.get(e.endpointId)) ?? e;
        await endpoints.put(e.endpointId, { ...current, lastBoot });
        this.broker.broadcast('usp.endpoint.booted', { endpointId: e.endpointId, device: e.device, ...lastBoot });
      },

      /** The device's MQTT connection went: its agents are offline until they announce themselves again. */
      async markOffline(device: string, why: string) {
        const now = new Date().toISOString();
        for (const e of await endpoints.values()) {
          if (e.device !== device || e.connected === false) continue;
          await endpoints.put(e.endpointId, { ...e, connected: false, disconnectedAt: now });
          this.logger.info(`usp: agent ${e.endpointId} offline (${why})`);
          this.broker.broadcast('usp.endpoint.disconnected', {
            endpointId: e.endpointId,
            device,
            at: now,
            reason: why,
          });
        }
      },

      /**
       * A camera agent says hello when it connects: it is welcomed with the controller's endpoint
       * id, and on first contact (or when it asks) with a stream key for its push camera (same id
       * as the device), sent to it alone, on its cmd topic.
       */
      async onHello(device: string, payloadBase64: string) {
        let hello: { needStreamKey?: boolean; name?: string };
        try {
          hello = JSON.parse(Buffer.from(payloadBase64, 'base64').toString('utf8'));
        } catch {
          return this.logger.warn(`usp: device ${device} sent a hello that is not JSON`);
        }
        if (!CameraId.safeParse(device).success)
          return this.logger.warn(`usp: device id "${device}" cannot name a camera`);
        let key: string | undefined;
        const existing = await unlessRefused(call(this.broker, 'cameras.get', { id: device }));
        if (!existing) {
          const name = typeof hello.name === 'string' && hello.name.trim() ? hello.name.trim().slice(0, 64) : device;
          key = (
            await call(this.broker, 'cameras.add', {
              id: device,
              name,
              source: { kind: 'rtmp' },
            })
          ).streamKey;
          this.logger.info(`usp: camera agent ${device} got its push camera`);
        } else if (hello.needStreamKey) {
          if (existing.source.kind !== 'rtmp')
            return this.logger.warn(`usp: camera ${device} is not a push camera; its agent gets no stream key`);
          key = (await call(this.broker, 'cameras.newStreamKey', { id: device })).streamKey;
        }
        const welcome = {
          controllerId: self,
          ...(key ? { stream: { path: `/live/${device}`, key, port: config.video.rtmp?.port ?? null } } : {}),
        };
        await this.broker.call('mqtt.sendToDevice', {
          device,
          channel: 'agent/welcome',
          payloadBase64: Buffer.from(JSON.stringify(welcome)).toString('base64'),
        });
      },
    },

    async started() {
      store = await Store.open(dataPaths(config).db('usp'));
      endpoints = store.collection<Endpoint>('endpoints');
      campaigns = store.collection<Campaign>('campaigns');
      notifications = store.collection<UspNotification>('notifications');
      motion = new CameraMotion(this.broker, this.logger);
      // A campaign cut by a restart of the box is not resumed blindly: its cameras are re-read.
      for (const c of await campaigns.values()) {
        if (c.state !== 'running') continue;
        for (const t of Object.values(c.targets))
          if (!['succeeded', 'failed', 'skipped'].includes(t.state))
            Object.assign(t, {
              state: 'failed',
              reason: 'the box restarted during the update; check the camera and start again',
            });
        await campaigns.put(c.id, { ...c, state: 'failed', finishedAt: new Date().toISOString() });
      }
    },

    async stopped() {
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(new UnavailableError('The USP controller stopped', 'USP_STOPPED'));
      }
      pending.clear();
      await store?.close();
      store = undefined;
    },
  };
}
