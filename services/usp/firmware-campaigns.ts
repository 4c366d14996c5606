// Firmware campaigns: the signed image fetched once (from an allowed source only), checked and
// hosted by the box behind a capability token; then each camera taken through Download(),
// Activate(), the reboot and the new version's confirmation, a few at a time, under the update
// lock so that a release of the box does not restart it half way.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ServiceBroker } from 'moleculer';
import pLimit from 'p-limit';
import type { z } from 'zod';
import { underAllowedSource } from '../../lib/allowed-source.ts';
import { commitFile } from '../../lib/durable-files.ts';
import { BadRequestError, NotFoundError } from '../../lib/errors.ts';
import { readHeader } from '../../lib/firmware-image.ts';
import type { Collection, Store } from '../../lib/store.ts';
import { UpdateLock } from '../../lib/update-lock.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { boxAddress } from './box-address.ts';
import type { Endpoint, UspController } from './controller.ts';
import type { Campaign, CampaignInput, TargetState } from './usp.schemas.ts';

const DOWNLOAD_TIMEOUT_MS = 15 * 60_000;
const MAX_IMAGE_BYTES = 512 * 1024 * 1024;

export class FirmwareCampaigns {
  private readonly campaigns: Collection<Campaign>;
  /** The capability token in each hosted image's URL, by SHA-256. */
  private readonly tokens: Collection<string>;
  private readonly imagesDir: string;
  private readonly updateLock: UpdateLock;

  constructor(
    private readonly config: Config,
    store: Store,
    private readonly usp: UspController,
    private readonly broker: ServiceBroker,
  ) {
    this.campaigns = store.collection<Campaign>('campaigns');
    this.tokens = store.collection<string>('imageTokens');
    this.imagesDir = dataPaths(config).uspImages;
    this.updateLock = new UpdateLock(config.update.lockFile);
  }

  /** A campaign cut by a restart of the box is not resumed blindly: its cameras are re-read. */
  async recover(): Promise<void> {
    for (const c of await this.campaigns.values()) {
      if (c.state !== 'running') continue;
      for (const t of Object.values(c.targets))
        if (!['succeeded', 'failed', 'skipped'].includes(t.state))
          Object.assign(t, {
            state: 'failed',
            reason: 'the box restarted during the update; check the camera and start again',
          });
      await this.campaigns.put(c.id, { ...c, state: 'failed', finishedAt: new Date().toISOString() });
    }
  }

  get(id: string): Promise<Campaign> {
    return this.campaigns.require(id, 'Campaign');
  }

  latest(): Promise<Campaign[]> {
    return this.campaigns.values({ reverse: true, limit: 100 });
  }

  /** Checks the image and the cameras, then runs the campaign in the background; answers with it at once. */
  async start(p: z.output<typeof CampaignInput>, by: string): Promise<Campaign> {
    const image = await this.fetchImage(p.url, p.sha256.toLowerCase());
    const all = await this.usp.endpoints.values();
    const chosen = p.devices
      ? all.filter((e) => p.devices!.includes(e.device))
      : all.filter((e) => !p.model || e.model === p.model);
    if (p.devices) {
      const missing = p.devices.filter((d) => !all.some((e) => e.device === d));
      if (missing.length) throw new NotFoundError('USP endpoint of device', missing.join(', '));
    }
    if (!chosen.length)
      throw new BadRequestError(`No camera agent${p.model ? ` of model "${p.model}"` : ''} to update`, 'NO_TARGETS');
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
      by,
    };
    await this.campaigns.put(campaign.id, campaign);
    this.broker.broadcast('usp.campaign.started', {
      id: campaign.id,
      version: image.version,
      targets: chosen.map((e) => e.device),
      by,
    });
    void this.run(campaign).catch((err: Error) =>
      this.broker.logger.error(`usp: campaign ${campaign.id}: ${err.message}`),
    );
    return campaign;
  }

  /** A hosted image's path on this node, when the token in its name is the right one. */
  async imageFile(file: string): Promise<{ path: string }> {
    const sha = file.slice(0, 64);
    const token = (await this.tokens.get(sha)) ?? null;
    if (!token || `${sha}-${token}.img` !== file) throw new NotFoundError('Firmware image', file);
    return { path: path.join(this.imagesDir, `${sha}.img`) };
  }

  /** The image, fetched once (from an allowed source only), checked by SHA-256, kept under data/usp/images, with a capability token. */
  private async fetchImage(url: string, sha256: string): Promise<Campaign['image']> {
    const { config } = this;
    await mkdir(this.imagesDir, { recursive: true });
    const file = path.join(this.imagesDir, `${sha256}.img`);
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
    if (!(await this.tokens.get(sha256))) await this.tokens.put(sha256, randomBytes(16).toString('hex'));
    return { sha256, version: manifest.version, model: manifest.model, bytes: data.length };
  }

  private async imageUrl(sha256: string) {
    const token = await this.tokens.get(sha256);
    const base = this.config.usp.imageBaseUrl ?? `http://${await boxAddress()}:${this.config.http.port}`;
    return `${base}/firmware/${sha256}-${token}.img`;
  }

  /**
   * The campaign's trial time for the camera, as the vendor argument FogEdge's agents take;
   * another vendor's agent would refuse an argument it does not know (7027), so it gets none.
   */
  private activateArgs(e: Endpoint, c: Campaign): Record<string, string> {
    return e.manufacturer === 'FogEdge' ? { X_FOGEDGE_TrialSeconds: String(c.trialSeconds) } : {};
  }

  private async run(c: Campaign) {
    // A fleet release must not restart the box in the middle of a campaign (balena's update lock).
    // Let go before the campaign reads as finished: whoever sees it finished may update the box.
    const release = await this.updateLock.hold(`firmware campaign ${c.id}`);
    let failures: number;
    try {
      failures = await this.runTargets(c);
    } finally {
      await release();
    }
    const skipped = Object.values(c.targets).some((t) => t.state === 'skipped');
    c.state = failures === 0 ? 'succeeded' : skipped ? 'stopped' : 'failed';
    c.finishedAt = new Date().toISOString();
    await this.save(c);
    this.broker.broadcast('usp.campaign.finished', {
      id: c.id,
      state: c.state,
      version: c.image.version,
      outcomes: Object.values(c.targets).map((t) => ({ device: t.device, state: t.state, reason: t.reason })),
      by: c.by,
    });
  }

  private async save(c: Campaign) {
    await this.campaigns.put(c.id, c);
    this.broker.broadcast('usp.campaign.changed', c);
  }

  /** Every target, `concurrency` at a time; the number that failed. */
  private async runTargets(c: Campaign): Promise<number> {
    let failures = 0;
    const save = () => this.save(c);
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
            await this.updateOne(c, t, set);
          } catch (err) {
            failures++;
            await set({ state: 'failed', reason: (err as Error).message });
          }
        }),
      ),
    );
    return failures;
  }

  /** One camera through Download(), Activate(), the reboot and the new version's confirmation. */
  private async updateOne(c: Campaign, t: TargetState, set: (s: Partial<TargetState>) => Promise<void>) {
    const usp = this.usp;
    const e = await usp.endpoints.get(t.endpointId);
    if (!e) throw new Error('the camera agent is not known any more');
    const key = `${c.id}:${e.device}`;
    const params = (
      await usp.ask(e, 'GET', {
        get: { paramPaths: ['Device.DeviceInfo.ActiveFirmwareImage', 'Device.DeviceInfo.SoftwareVersion'] },
      })
    ).body.response!['getResp'].reqPathResults;
    const active = params[0]?.resolvedPathResults?.[0]?.resultParams?.ActiveFirmwareImage as string | undefined;
    if (params[1]?.resolvedPathResults?.[0]?.resultParams?.SoftwareVersion === c.image.version)
      return set({ state: 'succeeded', reason: 'already running this version' });
    const inactive = active?.endsWith('.1') ? 2 : 1;
    const image = `Device.DeviceInfo.FirmwareImage.${inactive}.`;
    const completion = (command: string, timeoutMs: number) =>
      usp
        .waitForNotify(
          e.endpointId,
          (n) => n['operComplete']?.commandKey === key && n['operComplete']?.commandName === command,
          timeoutMs,
          `${command} completion`,
        )
        .then((n) => {
          const failure = n['operComplete'].cmdFailure;
          if (failure) throw new Error(`${command} failed: ${failure.errCode} ${failure.errMsg}`);
        });

    await set({ state: 'downloading' });
    // A camera that restarts before the download completes (power cut, crash) says so with a Boot!.
    const restarted = usp
      .waitForNotify(
        e.endpointId,
        (n) => n['event']?.eventName === 'Boot!' && n['event']?.params?.CommandKey !== key,
        DOWNLOAD_TIMEOUT_MS,
        'a restart',
      )
      .then(() => {
        throw new Error('the camera restarted during Download(); it runs its old image');
      });
    restarted.catch(() => undefined);
    const downloaded = completion('Download()', DOWNLOAD_TIMEOUT_MS);
    downloaded.catch(() => undefined); // awaited below; may settle while the request is still out
    const url = await this.imageUrl(c.image.sha256);
    await Promise.race([
      usp
        .ask(e, 'OPERATE', {
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
        })
        .then(() => downloaded),
      restarted,
    ]);

    await set({ state: 'activating' });
    const trialMs = (c.trialSeconds + 60) * 1000;
    // The next Boot! tells: with this campaign's key it booted the new image; without, it restarted before Activate() took.
    const booted = usp.waitForNotify(
      e.endpointId,
      (n) => n['event']?.eventName === 'Boot!',
      trialMs,
      'Boot! after Activate()',
    );
    booted.catch(() => undefined);
    await Promise.race([
      usp.ask(e, 'OPERATE', {
        operate: { command: `${image}Activate()`, commandKey: key, sendResp: true, inputArgs: this.activateArgs(e, c) },
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
      const next = usp.waitForNotify(
        e.endpointId,
        (n) => n['event']?.eventName === 'Boot!',
        Math.max(1, deadline - Date.now()),
        'the new image confirmed',
      );
      const confirmed = (async () => {
        while (Date.now() < deadline) {
          const e2 = (await usp.endpoints.get(e.endpointId)) ?? e;
          const r = await usp
            .ask(e2, 'GET', {
              get: { paramPaths: ['Device.DeviceInfo.BootFirmwareImage'] },
            })
            .catch(() => null);
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
  }
}
