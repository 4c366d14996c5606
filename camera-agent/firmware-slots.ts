// The camera's two firmware slots (A/B) and its boot state, on disk. A download only ever
// writes the inactive slot; activation is one atomic write of boot.json; the new slot is on
// trial until the agent confirms it healthy, and boot() falls back to the old slot when it is
// not confirmed in time or keeps failing. A power cut at any step leaves a bootable slot.
import { createHash, type KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ImageError, verifyImage, type Manifest } from '../lib/firmware-image.ts';
import { writeDurably } from '../lib/durable-files.ts';

export type Slot = 'A' | 'B';
/** TR-181 Device.DeviceInfo.FirmwareImage.{i}.Status. */
export type SlotStatus =
  | 'NoImage'
  | 'Downloading'
  | 'Validating'
  | 'Available'
  | 'DownloadFailed'
  | 'ValidationFailed'
  | 'InstallationFailed'
  | 'ActivationFailed';

export interface SlotInfo {
  name: string;
  version: string;
  status: SlotStatus;
  available: boolean;
  /** Why the last download or activation into this slot failed. */
  fault?: string;
}

export interface BootState {
  active: Slot;
  /** A slot on trial after Activate(): confirmed, or rolled back. */
  trying: { slot: Slot; from: Slot; deadline: string; boots: number } | null;
  bootFailureLog: string;
  /** What the last boot was, for the Boot! event. */
  lastBoot: {
    cause: 'LocalReboot' | 'RemoteReboot';
    firmwareUpdated: boolean;
    rolledBack: boolean;
    commandKey: string;
  };
}

export class FirmwareError extends Error {
  constructor(
    message: string,
    /** TR-369 error code for the command failure. */
    readonly code: number,
  ) {
    super(message);
    this.name = 'FirmwareError';
  }
}

const MAX_BOOTS = 3;
const other = (s: Slot): Slot => (s === 'A' ? 'B' : 'A');

export class FirmwareSlots {
  private constructor(
    private readonly dir: string,
    private readonly options: { vendorKey: KeyObject; model: string; slotBytes: number },
    private boot_: BootState,
    private readonly slots: Record<Slot, SlotInfo>,
  ) {}

  /** Opens the slots; a camera new from the factory runs `factoryVersion` in slot A. */
  static async open(
    dir: string,
    options: { vendorKey: KeyObject; model: string; slotBytes: number; factoryVersion: string },
  ): Promise<FirmwareSlots> {
    await mkdir(dir, { recursive: true });
    const read = async <T>(file: string): Promise<T | null> =>
      JSON.parse(await readFile(path.join(dir, file), 'utf8').catch(() => 'null')) as T | null;
    const boot = (await read<BootState>('boot.json')) ?? {
      active: 'A',
      trying: null,
      bootFailureLog: '',
      lastBoot: { cause: 'LocalReboot', firmwareUpdated: false, rolledBack: false, commandKey: '' },
    };
    const slots = {} as Record<Slot, SlotInfo>;
    for (const s of ['A', 'B'] as const) {
      const info = await read<SlotInfo>(`${s}.json`);
      slots[s] =
        info ??
        (s === 'A'
          ? { name: 'A', version: options.factoryVersion, status: 'Available', available: true }
          : { name: 'B', version: '', status: 'NoImage', available: false });
      // Cut off by a power cut or a kill while downloading: that attempt failed; the slot holds nothing usable.
      if (slots[s].status === 'Downloading' || slots[s].status === 'Validating') {
        slots[s] = {
          ...slots[s],
          version: '',
          status: 'DownloadFailed',
          available: false,
          fault: 'The download was interrupted (the camera stopped)',
        };
        await rm(path.join(dir, `${s}.img.part`), { force: true });
        await writeDurably(path.join(dir, `${s}.json`), JSON.stringify(slots[s]));
      }
    }
    return new FirmwareSlots(dir, options, boot, slots);
  }

  get state(): BootState {
    return this.boot_;
  }

  get active(): Slot {
    return this.boot_.active;
  }

  get version(): string {
    return this.slots[this.boot_.active].version;
  }

  slot(s: Slot): SlotInfo {
    return { ...this.slots[s] };
  }

  /**
   * The bootloader's step before each start: a slot on trial that has not confirmed itself by
   * its deadline, or has started MAX_BOOTS times, is given up and the old slot boots again.
   */
  async beginBoot(now = Date.now()): Promise<BootState> {
    const trying = this.boot_.trying;
    if (!trying) return this.boot_;
    const reason =
      now > Date.parse(trying.deadline)
        ? `not confirmed healthy by ${trying.deadline}`
        : trying.boots >= MAX_BOOTS
          ? `started ${trying.boots} times without becoming healthy`
          : null;
    if (reason) {
      const failed = this.slots[trying.slot];
      await this.saveSlot(trying.slot, { ...failed, status: 'ActivationFailed', available: false, fault: reason });
      await this.saveBoot({
        active: trying.from,
        trying: null,
        bootFailureLog: `${new Date(now).toISOString()} version ${failed.version} (slot ${trying.slot}) rolled back: ${reason}`,
        lastBoot: { ...this.boot_.lastBoot, firmwareUpdated: false, rolledBack: true },
      });
    } else {
      await this.saveBoot({ ...this.boot_, trying: { ...trying, boots: trying.boots + 1 } });
    }
    return this.boot_;
  }

  /** Device.Reboot() from a controller: the next Boot! says RemoteReboot with its command key. */
  async noteRemoteReboot(commandKey: string): Promise<void> {
    await this.saveBoot({
      ...this.boot_,
      lastBoot: { cause: 'RemoteReboot', firmwareUpdated: false, rolledBack: false, commandKey },
    });
  }

  /** The slot on trial is healthy: it stays. */
  async confirm(): Promise<boolean> {
    if (!this.boot_.trying) return false;
    await this.saveBoot({ ...this.boot_, trying: null });
    return true;
  }

  /**
   * Download() into the inactive slot: size-limited, checked against the given SHA-256 and the
   * vendor's signature before it counts as Available. The active slot is never touched.
   */
  async download(url: string, expect: { fileSize?: number; sha256?: string }): Promise<Manifest> {
    const slot = other(this.boot_.active);
    if (this.boot_.trying) throw new FirmwareError('An activated image is still on trial; confirm it first', 7022);
    if (expect.fileSize !== undefined && expect.fileSize > this.options.slotBytes) {
      throw new FirmwareError(
        `The image (${expect.fileSize} bytes) is larger than the slot (${this.options.slotBytes} bytes)`,
        7005,
      );
    }
    const part = path.join(this.dir, `${slot}.img.part`);
    const fail = async (status: SlotStatus, err: Error, code: number): Promise<never> => {
      await rm(part, { force: true });
      await this.saveSlot(slot, { name: slot, version: '', status, available: false, fault: err.message });
      throw new FirmwareError(err.message, code);
    };
    await this.saveSlot(slot, { name: slot, version: '', status: 'Downloading', available: false });
    await rm(path.join(this.dir, `${slot}.img`), { force: true });
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10 * 60_000) });
      if (!res.ok || !res.body) throw new Error(`The image server answered HTTP ${res.status}`);
      const limit = this.options.slotBytes;
      const counting = new Transform({
        transform(chunk: Buffer, _e, done) {
          bytes += chunk.length;
          if (bytes > limit) return done(new FirmwareError(`The image is larger than the slot (${limit} bytes)`, 7005));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        counting,
        createWriteStream(part),
      );
    } catch (err) {
      return fail('DownloadFailed', err as Error, err instanceof FirmwareError ? err.code : 7022);
    }
    if (expect.fileSize !== undefined && bytes !== expect.fileSize)
      return fail('DownloadFailed', new Error(`The download ended after ${bytes} of ${expect.fileSize} bytes`), 7022);
    const sha256 = hash.digest('hex');
    if (expect.sha256 && sha256 !== expect.sha256.toLowerCase())
      return fail('ValidationFailed', new Error(`The image's SHA-256 is ${sha256}, not ${expect.sha256}`), 7022);
    await this.saveSlot(slot, { name: slot, version: '', status: 'Validating', available: false });
    let manifest: Manifest;
    try {
      manifest = verifyImage(await readFile(part), this.options.vendorKey, this.options.model);
    } catch (err) {
      if (!(err instanceof ImageError)) throw err;
      return fail('ValidationFailed', err, 7022);
    }
    const handle = await open(part, 'r+');
    await handle.sync().finally(() => handle.close());
    await rename(part, path.join(this.dir, `${slot}.img`));
    await this.saveSlot(slot, { name: slot, version: manifest.version, status: 'Available', available: true });
    return manifest;
  }

  /** Activate(): the slot boots next, on trial until confirmed or `trialSeconds` pass. */
  async activate(slot: Slot, trialSeconds: number, commandKey = ''): Promise<void> {
    if (slot === this.boot_.active) throw new FirmwareError(`Slot ${slot} is already active`, 7022);
    const info = this.slots[slot];
    if (info.status !== 'Available' || !info.available)
      throw new FirmwareError(`Slot ${slot} holds no image that can be activated (${info.status})`, 7022);
    // Checked again: the file may have been damaged since the download.
    try {
      verifyImage(await readFile(path.join(this.dir, `${slot}.img`)), this.options.vendorKey, this.options.model);
    } catch (err) {
      await this.saveSlot(slot, {
        ...info,
        status: 'ValidationFailed',
        available: false,
        fault: (err as Error).message,
      });
      throw new FirmwareError((err as Error).message, 7022);
    }
    await this.saveBoot({
      active: slot,
      trying: {
        slot,
        from: this.boot_.active,
        deadline: new Date(Date.now() + trialSeconds * 1000).toISOString(),
        boots: 0,
      },
      bootFailureLog: this.boot_.bootFailureLog,
      lastBoot: { cause: 'RemoteReboot', firmwareUpdated: true, rolledBack: false, commandKey },
    });
  }

  private async saveBoot(state: BootState): Promise<void> {
    await writeDurably(path.join(this.dir, 'boot.json'), JSON.stringify(state, null, 2));
    this.boot_ = state;
  }

  private async saveSlot(slot: Slot, info: SlotInfo): Promise<void> {
    await writeDurably(path.join(this.dir, `${slot}.json`), JSON.stringify(info));
    this.slots[slot] = info;
  }
}
