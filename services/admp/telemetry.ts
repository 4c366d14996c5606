// One health sample of the box for its operator: the machine (CPU, memory, disk, temperatures)
// and what the services say (cameras, detector, sync queue, health). A service that does not
// answer in time leaves its part null; the sample still goes up.
import { readdir, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ServiceBroker } from 'moleculer';
import type { CameraStatus, PublicCamera } from '../cameras/cameras.schemas.ts';
import type { DetectorStats } from '../detector/detector.schemas.ts';

const ASK_TIMEOUT_MS = 2000;
const THERMAL = '/sys/class/thermal';

type CpuTimes = { idle: number; total: number };

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    idle += cpu.times.idle;
    total += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq + cpu.times.idle;
  }
  return { idle, total };
}

/** Thermal zones as Linux shows them (millidegrees); none on most VMs. */
export async function temperatures(root = THERMAL): Promise<Array<{ zone: string; celsius: number }>> {
  const zones = await readdir(root).catch(() => [] as string[]);
  const out: Array<{ zone: string; celsius: number }> = [];
  for (const zone of zones.filter((z) => z.startsWith('thermal_zone')).sort()) {
    const [type, temp] = await Promise.all([
      readFile(path.join(root, zone, 'type'), 'utf8').catch(() => zone),
      readFile(path.join(root, zone, 'temp'), 'utf8').catch(() => ''),
    ]);
    const milli = Number.parseInt(temp, 10);
    if (Number.isFinite(milli)) out.push({ zone: type.trim(), celsius: milli / 1000 });
  }
  return out;
}

export class Telemetry {
  private lastCpu = cpuTimes();

  constructor(
    private readonly broker: ServiceBroker,
    private readonly dataDir: string,
    private readonly version: string,
    /** The box's id at the operator (its provisioning's), else its cloud folder's. */
    private readonly boxId: () => string,
  ) {}

  private ask<T>(action: string): Promise<T | null> {
    // A part of the sample whose service is not on this box (or not answering) is left out: null says so.
    return this.broker.call<T, object>(action, {}, { timeout: ASK_TIMEOUT_MS, retries: 0 }).catch((err: Error) => {
      this.broker.logger.debug(`telemetry: ${action} left out of the sample: ${err.message}`);
      return null;
    });
  }

  async sample(): Promise<Record<string, unknown>> {
    const now = cpuTimes();
    const busy = now.total - this.lastCpu.total;
    const usagePercent = busy > 0 ? Math.round((1 - (now.idle - this.lastCpu.idle) / busy) * 1000) / 10 : null;
    this.lastCpu = now;
    const [disk, temps, cameras, detector, sync, health, storage, agents, update] = await Promise.all([
      statfs(this.dataDir).then(
        (s) => ({ totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize }),
        () => null,
      ),
      temperatures(),
      this.ask<Array<PublicCamera & { status: CameraStatus | null }>>('cameras.list'),
      this.ask<{ cameras: Record<string, DetectorStats>; error: string | null }>('detector.status'),
      this.ask<{ queue: Record<string, unknown>; targets: Array<Record<string, unknown>> }>('sync.status'),
      this.ask<{
        status: string;
        services: Array<{ name: string; status: string; instances: Array<{ node: string; error?: string }> }>;
      }>('system.health'),
      this.ask<{ recordingsBytes: number; clipsBytes: number; diskFull: boolean; quotaBytes: number | null }>(
        'recorder.storage',
      ),
      this.ask<
        Array<{
          device: string;
          model: string | null;
          softwareVersion: string | null;
          connected?: boolean;
          lastBoot?: { cause: string; at: string } | null;
        }>
      >('usp.endpoints'),
      this.ask<{
        version: string;
        mode: string;
        update: { state?: string; to?: string; reason?: string | null } | null;
      }>('system.updateStatus'),
    ]);
    return {
      at: new Date().toISOString(),
      boxId: this.boxId(),
      version: this.version,
      // What a fleet dashboard shows per box in one message: storage, camera firmware, update state.
      recording: storage
        ? {
            recordingsBytes: storage.recordingsBytes,
            clipsBytes: storage.clipsBytes,
            quotaBytes: storage.quotaBytes,
            diskFull: storage.diskFull,
          }
        : null,
      cameraFirmware:
        agents?.map((a) => ({
          device: a.device,
          model: a.model,
          version: a.softwareVersion,
          online: a.connected !== false,
          lastBootCause: a.lastBoot?.cause ?? null,
        })) ?? null,
      update: update
        ? {
            mode: update.mode,
            state: update.update?.state ?? null,
            to: update.update?.to ?? null,
            reason: update.update?.reason ?? null,
          }
        : null,
      uptimeSeconds: Math.round(os.uptime()),
      processUptimeSeconds: Math.round(process.uptime()),
      cpu: { cores: os.cpus().length, load: os.loadavg().map((l) => Math.round(l * 100) / 100), usagePercent },
      memory: { totalBytes: os.totalmem(), freeBytes: os.freemem(), processRssBytes: process.memoryUsage.rss() },
      disk,
      temperatures: temps,
      cameras:
        cameras?.map((c) => ({
          id: c.id,
          state: c.status?.state ?? null,
          reason: c.status?.reason ?? null,
          codec: c.status?.codec ?? null,
          fps: c.status?.fps ?? null,
          bitrateKbps: c.status?.bitrateKbps ?? null,
          lastFrameAt: c.status?.lastFrameAt ?? null,
          restarts: c.status?.restarts ?? 0,
        })) ?? null,
      detector: detector
        ? {
            error: detector.error,
            cameras: Object.fromEntries(
              Object.entries(detector.cameras).map(([id, s]) => [
                id,
                { inferenceMs: s.inferenceMs, behind: s.behind, dropped: s.dropped },
              ]),
            ),
          }
        : null,
      sync: sync
        ? {
            queue: sync.queue,
            targets: sync.targets.map((t) => ({
              id: t.id,
              state: t.state,
              pendingItems: t.pendingItems,
              lastError: t.lastError,
            })),
          }
        : null,
      services: health
        ? {
            status: health.status,
            down: health.services.filter((s) => s.status !== 'ok').map((s) => s.name),
            // What a fleet dashboard must see at once: "disk full", a store that is not open.
            problems: health.services.flatMap((s) =>
              s.instances.filter((i) => i.error).map((i) => ({ service: s.name, node: i.node, error: i.error })),
            ),
          }
        : null,
    };
  }
}
