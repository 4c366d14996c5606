// System: is the box well? Storage used and left, each camera's bitrate, the detector's speed,
// the services, cloud sync, the version.
import { api, can, formatBytes, formatTime } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Page, Problem, useLoad } from '../components/ui.tsx';
import { useCameras } from './live.tsx';

interface Health {
  status: string;
  services: Array<{ name: string; status: string; nodes?: string[] }>;
}
interface Storage {
  recordingsBytes: number;
  diskTotalBytes: number;
  diskFreeBytes: number;
  quotaBytes: number | null;
  minFreeBytes: number;
  cameras: Record<string, { bytes: number; segments: number; oldest: string }>;
}
interface Detector {
  model: { inputSize: number } | null;
  error: string | null;
  cameras: Record<string, { inferenceMs: number | null; behind: boolean; frames: number; inferences: number; dropped: number }>;
}
interface SyncStatus {
  queue: { items: number; bytes: number; oldestAgeSeconds: number | null };
  targets: Array<{ id: string; type: string; enabled: boolean; state: string; pendingItems: number; lastSuccessAt: string | null; lastError: { code: string; message: string } | null }>;
}

export function SystemPage() {
  const health = useLoad(async () => {
    const res = await fetch('/api/v1/health', { cache: 'no-store' });
    return (await res.json()) as Health;
  });
  const info = useLoad(() => api<Record<string, unknown>>('/system/info'));
  const storage = useLoad(() => api<Storage>('/system/storage'));
  const detector = useLoad(() => api<Detector>('/detector/status'));
  const sync = useLoad(() => api<SyncStatus>('/sync/status'));
  const { data: cameras } = useCameras();
  useUpdates(['sync.status.'], () => void sync.reload());

  const s = storage.data;
  const usedPct = s ? Math.round(((s.diskTotalBytes - s.diskFreeBytes) / s.diskTotalBytes) * 100) : 0;
  const low = s ? s.diskFreeBytes < s.minFreeBytes * 1.5 : false;
  return (
    <Page title="System">
      <section class="panel" id="storage">
        <h2>Storage</h2>
        <Problem error={storage.error} />
        {s && (
          <>
            <meter min={0} max={100} value={usedPct} high={85} optimum={10} aria-label="Disk used" />
            <p>
              {formatBytes(s.diskFreeBytes)} free of {formatBytes(s.diskTotalBytes)} · recordings take {formatBytes(s.recordingsBytes)}
              {s.quotaBytes ? ` of their ${formatBytes(s.quotaBytes)} quota` : ''}
            </p>
            {low && <p class="problem">The disk is nearly full: the oldest recordings are being removed to keep {formatBytes(s.minFreeBytes)} free.</p>}
          </>
        )}
      </section>
      <section class="panel" id="cameras">
        <h2>Cameras</h2>
        <table class="list">
          <thead><tr><th>Camera</th><th>State</th><th>Bitrate</th><th>Recordings</th><th>Detector</th></tr></thead>
          <tbody>
            {cameras?.map((c) => {
              const d = detector.data?.cameras[c.id];
              return (
                <tr data-camera={c.id}>
                  <td>{c.name}</td>
                  <td class={`state ${c.status?.state ?? 'unknown'}`}>{c.status?.state ?? 'unknown'}{c.status?.reason ? `: ${c.status.reason}` : ''}</td>
                  <td>{c.status?.bitrateKbps != null ? `${c.status.bitrateKbps} kbit/s` : ''}</td>
                  <td>{s?.cameras[c.id] ? `${formatBytes(s.cameras[c.id]!.bytes)} since ${formatTime(s.cameras[c.id]!.oldest)}` : ''}</td>
                  <td>{d ? `${d.inferenceMs ?? '?'} ms a frame${d.behind ? ', falling behind' : ''}` : c.detection.enabled ? 'not running' : 'off'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {detector.data?.error && <p class="problem">Detector: {detector.data.error}</p>}
      </section>
      <section class="panel" id="services">
        <h2>Services</h2>
        <Problem error={health.error} />
        <ul class="services">
          {health.data?.services.map((x) => <li class={x.status}>{x.name}: {x.status}</li>)}
        </ul>
      </section>
      <section class="panel" id="sync">
        <h2>Cloud sync</h2>
        <Problem error={sync.error} />
        {sync.data && (
          <>
            <p>{sync.data.queue.items} items ({formatBytes(sync.data.queue.bytes)}) waiting{sync.data.queue.oldestAgeSeconds !== null ? `, the oldest for ${Math.ceil(sync.data.queue.oldestAgeSeconds / 60)} min` : ''}.</p>
            {sync.data.targets.length === 0 && <p>No cloud target: everything stays on the box.</p>}
            <ul>
              {sync.data.targets.map((t) => (
                <li data-target={t.id}>
                  {t.id} ({t.type}, {t.state}, {t.pendingItems} waiting): {t.lastError ? <span class="problem">{t.lastError.code}: {t.lastError.message}</span> : t.lastSuccessAt ? `last upload ${formatTime(t.lastSuccessAt)}` : 'nothing sent yet'}
                </li>
              ))}
            </ul>
          </>
        )}
      </section>
      <section class="panel" id="about">
        <h2>About</h2>
        <Problem error={info.error} />
        {info.data && <p>FogEdge {String(info.data['version'])} · up {Math.round(Number(info.data['uptimeSeconds']) / 60)} min · {String(info.data['transporter'])} bus · {can('settings.manage') ? String(info.data['hostname']) : ''}</p>}
      </section>
    </Page>
  );
}
