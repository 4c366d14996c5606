// Sending: each enabled target has its own workers taking the oldest item it may take now (not
// being sent elsewhere, within its resource's hours, past its own backoff); a target that is down
// backs off as a whole. One bandwidth cap for every upload: the household's link.
import path from 'node:path';
import type { Transform } from 'node:stream';
import { ThrottleGroup } from 'stream-throttle';
import { backoffMs } from '../../lib/backoff.ts';
import { localMinutes, withinHours } from '../../lib/hours.ts';
import type { Collection } from '../../lib/store.ts';
import type { Intake, SyncParts } from './intake.ts';
import type { Item, Progress } from './outbox.ts';
import type { Resource, SyncStatus, Target } from './sync.schemas.ts';
import { classify, openTarget, type FailureCode, type UploadTarget } from './targets.ts';
import { uploadItem } from './uploader.ts';

export interface TargetState {
  lastSuccessAt: string | null;
  lastError: { at: string; code: FailureCode; message: string } | null;
  /** Failures in a row that were the target's (down, refused credentials): its backoff. */
  failures: number;
  retryAt: number;
  sentItems: number;
  sentBytes: number;
}

interface Running {
  spec: Target;
  client: UploadTarget;
  state: TargetState;
  /** Sleeping workers; a new item or a policy change wakes them all. */
  waiters: Set<() => void>;
  /** The rate this target's uploads have gone at lately (one upload's share), bytes/s; unknown at start. */
  bytesPerSecond: number | undefined;
  stopped: boolean;
  workers: Promise<void>[];
}

const NEW_STATE: TargetState = {
  lastSuccessAt: null,
  lastError: null,
  failures: 0,
  retryAt: 0,
  sentItems: 0,
  sentBytes: 0,
};
/** Larger items always go in parts (minio's own part size); it also bounds what a retry sends again. */
const WHOLE_MAX_BYTES = 64 * 1024 * 1024;
/** Uploads smaller than this say more about latency than about the link's rate. */
const RATE_SAMPLE_MIN_BYTES = 1024 * 1024;

export class Senders {
  private readonly running = new Map<string, Running>();
  /** `<item>|<target>` being uploaded now. */
  private readonly busy = new Set<string>();
  /** `<item>|<target>` tried by this process without success: it may be there all the same. */
  private readonly tried = new Set<string>();
  /** Items enqueued before this start may have been sent by the process that crashed. */
  private readonly startedAt = Date.now();
  private throttle: (() => Transform) | undefined;
  private stopping = false;
  /** Set once the intake exists (it needs this object too). */
  intake!: Intake;

  constructor(
    private readonly s: SyncParts,
    private readonly states: Collection<TargetState>,
  ) {}

  private get o() {
    return this.s.config.sync;
  }

  private backoff(failures: number) {
    return backoffMs(failures, this.o.retryMinMs, this.o.retryMaxMs);
  }

  enabled(): string[] {
    return [...this.running.values()].filter((r) => r.spec.enabled).map((r) => r.spec.id);
  }

  /** The enabled targets' clients, with the key prefix each puts names under. */
  clients(): Array<{ id: string; prefix: string; client: UploadTarget }> {
    return [...this.running.values()]
      .filter((r) => r.spec.enabled && !r.stopped)
      .map((r) => ({ id: r.spec.id, prefix: r.spec.prefix, client: r.client }));
  }

  isBusy(item: string): boolean {
    return [...this.busy].some((k) => k.startsWith(`${item}|`));
  }

  wakeAll(): void {
    this.running.forEach((r) => this.wake(r));
  }

  private wake(r: Running) {
    [...r.waiters].forEach((w) => w());
  }

  /** The plan changed: its cap and hours apply from the next chunk and pick. */
  policyChanged(): void {
    const rate = this.s.policy().bandwidthBytesPerSecond;
    if (!rate) this.throttle = undefined;
    else {
      // One bucket for every upload: the cap is the household's link, not each connection's.
      const group = new ThrottleGroup({ rate, chunksize: Math.max(1024, Math.round(rate / 20)) });
      this.throttle = () => group.throttle();
    }
    this.wakeAll();
  }

  async start(spec: Target): Promise<void> {
    const state = (await this.states.get(spec.id)) ?? { ...NEW_STATE };
    const r: Running = {
      spec,
      client: openTarget(spec),
      state: { ...state, retryAt: 0 },
      waiters: new Set(),
      bytesPerSecond: undefined,
      stopped: false,
      workers: [],
    };
    this.running.set(spec.id, r);
    if (spec.enabled) for (let i = 0; i < this.o.concurrency; i++) r.workers.push(this.worker(r));
  }

  async stop(id: string): Promise<void> {
    const r = this.running.get(id);
    if (!r) return;
    r.stopped = true;
    this.wake(r);
    this.running.delete(id);
    // An upload under way is not waited for long: it resumes from its parts at the next start.
    await Promise.race([Promise.allSettled(r.workers), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    r.client.close();
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled([...this.running.keys()].map((id) => this.stop(id)));
  }

  /** `target` has the item (or is removed): the item goes once no target waits for it. */
  async finish(item: Item, target: string): Promise<void> {
    delete item.pending[target];
    if (Object.keys(item.pending).length === 0) await this.intake.remove(item);
    else await this.s.outbox.put(item);
  }

  /** Each target as the status shows it. */
  status(now: number): SyncStatus['targets'] {
    return [...this.running.values()].map((r) => {
      const p = r.spec.enabled ? this.s.outbox.pendingFor(r.spec.id) : { items: 0, bytes: 0, oldest: null };
      return {
        id: r.spec.id,
        type: r.spec.type,
        enabled: r.spec.enabled,
        state: !r.spec.enabled
          ? ('disabled' as const)
          : r.state.retryAt > now
            ? ('backing-off' as const)
            : p.items
              ? ('sending' as const)
              : ('idle' as const),
        pendingItems: p.items,
        pendingBytes: p.bytes,
        oldestAgeSeconds: p.oldest === null ? null : Math.round((now - p.oldest) / 1000),
        lastSuccessAt: r.state.lastSuccessAt,
        lastError: r.state.lastError,
        nextTryAt: r.state.retryAt > now ? new Date(r.state.retryAt).toISOString() : null,
        failures: r.state.failures,
        sentItems: r.state.sentItems,
        sentBytes: r.state.sentBytes,
        bytesPerSecond: r.bytesPerSecond === undefined ? null : Math.round(r.bytesPerSecond),
      };
    });
  }

  private mayGoNow(resource: Resource) {
    const w = this.s.policy().windows[resource];
    return !w || withinHours(localMinutes(new Date()), w.from, w.to);
  }

  private saveState(r: Running) {
    this.s.changed();
    return this.states.put(r.spec.id, r.state, { sync: false });
  }

  /**
   * Parts cost two more requests and the server's assembly; what they buy is a resume. So an item
   * over the threshold still goes whole when this target sends it within wholeUploadSeconds.
   */
  private sendWhole(r: Running, item: Item, progress: Progress) {
    if (progress.upload) return false;
    if (item.bytes <= this.o.multipartThresholdBytes) return true;
    if (item.bytes > WHOLE_MAX_BYTES || !r.bytesPerSecond) return false;
    const cap = this.s.policy().bandwidthBytesPerSecond;
    return item.bytes / (cap ? Math.min(cap, r.bytesPerSecond) : r.bytesPerSecond) <= this.o.wholeUploadSeconds;
  }

  private async sendOne(r: Running, item: Item) {
    const { outbox, log } = this.s;
    const o = this.o;
    const progress = item.pending[r.spec.id]!;
    const file = path.join(this.s.paths.root, item.file);
    if (progress.upload?.parts.length) {
      log.info(
        `sync: resuming ${item.name} to "${r.spec.id}" after ${progress.upload.parts.length} of ${Math.ceil(item.bytes / (progress.upload.partBytes ?? o.partBytes))} parts`,
      );
    }
    const key = `${item.id}|${r.spec.id}`;
    try {
      const mayBeThere = item.enqueuedAt < this.startedAt || this.tried.has(key);
      this.tried.add(key);
      const resumed = Boolean(progress.upload?.parts.length);
      const t0 = performance.now();
      const outcome = await uploadItem(r.client, r.spec.prefix, item, file, progress, {
        multipartThresholdBytes: o.multipartThresholdBytes,
        whole: this.sendWhole(r, item, progress),
        partBytes: o.partBytes,
        throttle: this.throttle,
        mayBeThere,
        save: () => (outbox.get(item.id) ? outbox.put(item) : Promise.resolve()),
      });
      this.tried.delete(key);
      if (outcome === 'sent' && !resumed && item.bytes >= RATE_SAMPLE_MIN_BYTES) {
        const sample = item.bytes / Math.max(0.001, (performance.now() - t0) / 1000);
        r.bytesPerSecond = r.bytesPerSecond === undefined ? sample : 0.7 * r.bytesPerSecond + 0.3 * sample;
      }
      r.state = {
        ...r.state,
        lastSuccessAt: new Date().toISOString(),
        failures: 0,
        retryAt: 0,
        sentItems: r.state.sentItems + 1,
        sentBytes: r.state.sentBytes + item.bytes,
      };
      if (outbox.get(item.id)) await this.finish(item, r.spec.id);
      await this.saveState(r);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as NodeJS.ErrnoException).path === file) {
        log.error(`sync: ${item.name}: its file ${item.file} is gone; the item is dropped`);
        if (outbox.get(item.id)) await this.intake.remove(item);
        return;
      }
      const e = classify(err, `target "${r.spec.id}"`);
      const at = new Date().toISOString();
      if (e.targetWide) {
        r.state = { ...r.state, failures: r.state.failures + 1, lastError: { at, code: e.code, message: e.message } };
        r.state.retryAt = Date.now() + this.backoff(r.state.failures);
        if (r.state.failures === 1 || r.state.failures % 10 === 0) {
          log.warn(
            `sync: ${e.message}; ${outbox.pendingFor(r.spec.id).items} items wait; next try in ${Math.round((r.state.retryAt - Date.now()) / 1000)} s`,
          );
        }
      } else {
        progress.attempts++;
        progress.nextAt = Date.now() + this.backoff(progress.attempts);
        progress.lastError = e.message;
        if (e.code === 'UPLOAD_EXPIRED') delete progress.upload;
        r.state = { ...r.state, lastError: { at, code: e.code, message: `${item.name}: ${e.message}` } };
        log.warn(`sync: ${item.name} to "${r.spec.id}" failed (attempt ${progress.attempts}): ${e.message}`);
        if (outbox.get(item.id)) await outbox.put(item);
      }
      await this.saveState(r);
    }
  }

  private async worker(r: Running) {
    const { outbox } = this.s;
    while (!r.stopped && !this.stopping) {
      const now = Date.now();
      let wait = 60_000;
      if (r.state.retryAt > now) wait = r.state.retryAt - now;
      else {
        const item = outbox.next(
          r.spec.id,
          now,
          (i) => !this.busy.has(`${i.id}|${r.spec.id}`) && this.mayGoNow(i.resource),
        );
        if (item) {
          const key = `${item.id}|${r.spec.id}`;
          this.busy.add(key);
          await this.sendOne(r, item).finally(() => this.busy.delete(key));
          continue;
        }
        const retry = outbox.earliestRetry(r.spec.id);
        if (retry !== undefined) wait = Math.max(50, Math.min(wait, retry - now));
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          r.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(wait, 60_000));
        r.waiters.add(done);
      });
    }
  }
}
