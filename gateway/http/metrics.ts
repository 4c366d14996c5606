// The box's figures for Prometheus (text exposition, prom-client): cloud sync's queue and each
// target, the cameras, the disk. Read from the services at scrape time, as the caller (an API
// token with system.view), so a box of several nodes answers for all of them.
import type { ServiceBroker } from 'moleculer';
import { Gauge, Registry } from 'prom-client';
import type { Caller } from '../../lib/actions.ts';

interface SyncStatus {
  queue: { items: number; bytes: number; maxBytes: number; oldestAgeSeconds: number | null };
  counters: Record<string, number>;
  targets: Array<{
    id: string;
    type: string;
    state: string;
    pendingItems: number;
    pendingBytes: number;
    oldestAgeSeconds: number | null;
    lastSuccessAt: string | null;
    failures: number;
    sentItems: number;
    sentBytes: number;
  }>;
}
type CameraList = Array<{ id: string; status: { state: string; bitrateKbps: number | null } | null }>;
interface Storage {
  recordingsBytes: number;
  diskTotalBytes: number;
  diskFreeBytes: number;
  cameras: Record<string, { bytes: number }>;
}

export const METRICS_CONTENT_TYPE = new Registry().contentType;

export async function renderMetrics(broker: ServiceBroker, caller: Caller | undefined): Promise<string> {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers: [registry] });
  const call = <T>(action: string) => broker.call<T, object>(action, {}, { meta: { caller } });
  // A service that does not answer is a 0 in fogedge_source_up, not a failed scrape; refusals are the caller's.
  const up = gauge('fogedge_source_up', 'Whether the service behind these figures answered the scrape', ['source']);
  const read = async <T>(source: string, action: string): Promise<T | undefined> => {
    try {
      const value = await call<T>(action);
      up.set({ source }, 1);
      return value;
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === 401 || code === 403) throw err;
      up.set({ source }, 0);
      return undefined;
    }
  };
  const [sync, cameras, storage] = await Promise.all([
    read<SyncStatus>('sync', 'sync.status'),
    read<CameraList>('cameras', 'cameras.list'),
    read<Storage>('recorder', 'recorder.storage'),
  ]);

  if (sync) {
    gauge('fogedge_sync_queue_items', 'Items waiting in the cloud sync outbox').set(sync.queue.items);
    gauge('fogedge_sync_queue_bytes', 'Bytes waiting in the cloud sync outbox').set(sync.queue.bytes);
    gauge('fogedge_sync_queue_max_bytes', 'The outbox bound (sync.maxQueueBytes)').set(sync.queue.maxBytes);
    gauge('fogedge_sync_queue_oldest_age_seconds', 'Age of the oldest item waiting; 0 when none').set(
      sync.queue.oldestAgeSeconds ?? 0,
    );
    const counted = gauge(
      'fogedge_sync_items_not_sent',
      'Items dropped from a full queue, over the daily budget, or refused by a target, since the box was set up',
      ['reason'],
    );
    for (const [reason, n] of Object.entries(sync.counters)) counted.set({ reason }, n);
    const labels = ['target', 'type'];
    const t = {
      up: gauge(
        'fogedge_sync_target_up',
        '1 when the target is sending or idle, 0 while it backs off after a failure (or is disabled)',
        labels,
      ),
      items: gauge('fogedge_sync_target_pending_items', 'Items waiting for this target', labels),
      bytes: gauge('fogedge_sync_target_pending_bytes', 'Bytes waiting for this target', labels),
      oldest: gauge(
        'fogedge_sync_target_oldest_age_seconds',
        'Age of the oldest item waiting for this target; 0 when none',
        labels,
      ),
      success: gauge(
        'fogedge_sync_target_last_success_timestamp_seconds',
        'When the target last took an item (Unix time); 0 never',
        labels,
      ),
      failures: gauge('fogedge_sync_target_failures', 'Failures in a row', labels),
      sentItems: gauge('fogedge_sync_target_sent_items', 'Items uploaded to the target', labels),
      sentBytes: gauge('fogedge_sync_target_sent_bytes', 'Bytes uploaded to the target', labels),
    };
    for (const target of sync.targets) {
      const l = { target: target.id, type: target.type };
      t.up.set(l, target.state === 'sending' || target.state === 'idle' ? 1 : 0);
      t.items.set(l, target.pendingItems);
      t.bytes.set(l, target.pendingBytes);
      t.oldest.set(l, target.oldestAgeSeconds ?? 0);
      t.success.set(l, target.lastSuccessAt ? Date.parse(target.lastSuccessAt) / 1000 : 0);
      t.failures.set(l, target.failures);
      t.sentItems.set(l, target.sentItems);
      t.sentBytes.set(l, target.sentBytes);
    }
  }

  if (cameras) {
    const online = gauge('fogedge_camera_online', '1 while the camera streams', ['camera']);
    const bitrate = gauge('fogedge_camera_bitrate_kbps', "The camera's stream bitrate", ['camera']);
    for (const c of cameras) {
      online.set({ camera: c.id }, c.status?.state === 'online' ? 1 : 0);
      if (typeof c.status?.bitrateKbps === 'number') bitrate.set({ camera: c.id }, c.status.bitrateKbps);
    }
  }

  if (storage) {
    gauge('fogedge_disk_total_bytes', 'Size of the disk that holds the recordings').set(storage.diskTotalBytes);
    gauge('fogedge_disk_free_bytes', 'Free space on that disk').set(storage.diskFreeBytes);
    const recordings = gauge('fogedge_recordings_bytes', 'Bytes of recordings, per camera', ['camera']);
    for (const [camera, s] of Object.entries(storage.cameras)) recordings.set({ camera }, s.bytes);
  }
  return registry.metrics();
}
