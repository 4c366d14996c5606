// System: is the box well? Storage used and left, each camera's bitrate, the detector's speed,
// the services, cloud sync, the version.
import { Fragment, type TargetedEvent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { LineChart } from '../components/chart.tsx';
import { api, can, formatBytes, formatTime } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Field, Page, Problem, formValues, useAction, useLoad } from '../components/ui.tsx';
import { useCameras } from '../cameras.ts';

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
  cameras: Record<string, { bytes: number; segments: number; oldest: string; archivedBytes: number }>;
  archive: {
    path: string;
    state: 'ok' | 'full' | 'unmounted' | 'missing' | 'unwritable';
    reason: string | null;
    since: string;
    totalBytes: number | null;
    freeBytes: number | null;
    recordingsBytes: number;
  } | null;
}
interface Detector {
  model: { inputSize: number } | null;
  error: string | null;
  accelerators: { inference: string | null; decoding: string; notUsed: Array<{ name: string; why: string }> };
  cameras: Record<
    string,
    { inferenceMs: number | null; behind: boolean; frames: number; inferences: number; dropped: number }
  >;
}
interface SyncStatus {
  queue: { items: number; bytes: number; oldestAgeSeconds: number | null };
  targets: Array<{
    id: string;
    type: string;
    enabled: boolean;
    state: string;
    pendingItems: number;
    lastSuccessAt: string | null;
    lastError: { code: string; message: string } | null;
  }>;
}

interface Uplink {
  provisioned: boolean;
  source: string | null;
  provisioningError: string | null;
  endpoint: {
    url: string;
    boxId: string;
    username: string | null;
    clientCertificate: boolean;
    customCa: boolean;
  } | null;
  connected: boolean;
  lastConnectedAt: string | null;
  lastError: string | null;
  queue: { items: number; dropped: Record<string, number> };
  desired: {
    appliedVersion: number | null;
    lastRejected: { version: number | null; error: { message: string } } | null;
  };
}
interface UpdateStatus {
  version: string;
  mode: 'balena' | 'release' | 'checkout';
  update: { state: string; from: string; to: string; reason?: string; finishedAt?: string } | null;
}

/** The operator's device-management platform: is the box linked, and (installer) provisioning it. */
function UplinkPanel() {
  const uplink = useLoad(() => api<Uplink>('/admp'));
  useUpdates(['admp.status.'], () => void uplink.reload());
  const { error, run } = useAction(uplink.reload);
  const [editing, setEditing] = useState(false);
  const u = uplink.data;
  const dropped = u ? Object.values(u.queue.dropped).reduce((a, b) => a + b, 0) : 0;
  const provision = async (e: TargetedEvent<HTMLFormElement>) => {
    const v = Object.fromEntries(Object.entries(formValues(e)).filter(([, x]) => x !== ''));
    if (await run(() => api('/admp/provisioning', { method: 'PUT', body: v }))) setEditing(false);
  };
  const editable = can('settings.manage') && u?.source !== 'environment';
  return (
    <section class="panel" id="uplink">
      <h2>Operator</h2>
      <Problem error={uplink.error} />
      {u && !u.provisioned && (
        <p>
          Not linked to an operator: the box runs local only.
          {u.provisioningError && <span class="problem"> {u.provisioningError}</span>}
        </p>
      )}
      {u?.endpoint && (
        <>
          <p class={u.connected ? 'ok' : 'problem'} data-state={u.connected ? 'connected' : 'disconnected'}>
            {u.connected
              ? `Connected to ${u.endpoint.url} as ${u.endpoint.boxId}`
              : `Not connected to ${u.endpoint.url}${u.lastError ? `: ${u.lastError}` : ''}`}
          </p>
          <p>
            {u.queue.items === 1 ? '1 message' : `${u.queue.items} messages`} waiting
            {dropped ? `, ${dropped} dropped while the link was down` : ''}
            {u.desired.appliedVersion !== null ? ` · configuration version ${u.desired.appliedVersion}` : ''}
            {u.source === 'environment' ? ' · set by the environment' : ''}
          </p>
          {u.desired.lastRejected && (
            <p class="problem">
              Refused configuration
              {u.desired.lastRejected.version !== null ? ` version ${u.desired.lastRejected.version}` : ''}:{' '}
              {u.desired.lastRejected.error.message}
            </p>
          )}
        </>
      )}
      {editable && !editing && (
        <button type="button" onClick={() => setEditing(true)}>
          {u?.provisioned ? 'Change' : 'Link to an operator'}
        </button>
      )}{' '}
      {editable && u?.provisioned && !editing && (
        <button
          type="button"
          class="danger"
          onClick={() => void run(() => api('/admp/provisioning', { method: 'DELETE' }))}
        >
          Unlink
        </button>
      )}
      {editing && (
        <form onSubmit={provision} id="provisioning">
          <Field label="Operator's broker" name="url" error={error} hint="mqtts://host:8883">
            <input name="url" required placeholder="mqtts://" />
          </Field>
          <Field label="Box name at the operator" name="boxId" error={error} hint="Empty: this box's host name">
            <input name="boxId" />
          </Field>
          <Field label="User name" name="username" error={error}>
            <input name="username" autocomplete="off" />
          </Field>
          <Field label="Password" name="password" error={error}>
            <input name="password" type="password" autocomplete="new-password" />
          </Field>
          <Field
            label="Operator's CA (PEM)"
            name="ca"
            error={error}
            hint="Only if the operator's certificate is not from a public CA"
          >
            <textarea name="ca" rows={3} />
          </Field>
          <Field label="Box certificate (PEM)" name="cert" error={error}>
            <textarea name="cert" rows={3} />
          </Field>
          <Field label="Box key (PEM)" name="key" error={error}>
            <textarea name="key" rows={3} />
          </Field>
          <Problem error={error} besideFields />
          <button>Link</button>{' '}
          <button type="button" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      )}
    </section>
  );
}

/** The archive tier: where older recordings live, and why nothing moves there when it is away. */
function ArchiveTier({ archive }: { archive: NonNullable<Storage['archive']> }) {
  const sizes =
    archive.freeBytes !== null && archive.totalBytes !== null
      ? ` · ${formatBytes(archive.freeBytes)} free of ${formatBytes(archive.totalBytes)}`
      : '';
  return (
    <div class="archive" data-state={archive.state}>
      <h3>Archive</h3>
      <p>
        <code>{archive.path}</code>: {archive.state}
        {sizes} · recordings take {formatBytes(archive.recordingsBytes)}
      </p>
      {archive.state !== 'ok' && (
        <p class="problem">
          {archive.reason} (since {formatTime(archive.since)}).{' '}
          {archive.state === 'full'
            ? 'Its oldest recordings are removed to make room.'
            : 'Recordings stay on this disk; those in the archive cannot be played until it is back.'}
        </p>
      )}
    </div>
  );
}

interface History {
  everySeconds: number;
  samples: Array<{
    at: string;
    cpuPercent: number;
    cores: number;
    memoryBytes: number;
    diskUsedPercent: number | null;
    syncQueue: number | null;
    cameras: Record<string, { cpuPercent: number; fps: number | null; inferenceMs: number | null }>;
  }>;
}

/** The last day at a glance, from the figures the box keeps itself (a sample a minute). */
function LastDayPanel() {
  const history = useLoad(() => api<History>('/system/history'));
  const every = history.data?.everySeconds;
  useEffect(() => {
    if (!every) return;
    const timer = setInterval(() => void history.reload(), every * 1000);
    return () => clearInterval(timer);
  }, [every]);
  const samples = history.data?.samples ?? [];
  const cameras = [...new Set(samples.flatMap((s) => Object.keys(s.cameras)))].sort();
  const cores = samples.at(-1)?.cores ?? 1;
  return (
    <section class="panel" id="last-day">
      <h2>Last day</h2>
      <Problem error={history.error} />
      {samples.length === 0 ? (
        <p class="muted">The first figures come a minute after the box starts.</p>
      ) : (
        <>
          <div class="charts">
            <LineChart
              label={`CPU (${cores} cores)`}
              values={samples.map((s) => s.cpuPercent / s.cores)}
              max={100}
              format={(v) => `${Math.round(v)} %`}
            />
            <LineChart label="Memory" values={samples.map((s) => s.memoryBytes)} format={formatBytes} />
            <LineChart
              label="Disk used"
              values={samples.map((s) => s.diskUsedPercent)}
              max={100}
              format={(v) => `${Math.round(v)} %`}
            />
            <LineChart label="Sync queue" values={samples.map((s) => s.syncQueue)} format={(v) => `${v} items`} />
          </div>
          {cameras.length > 0 && (
            <div class="charts">
              {cameras.map((id) => (
                <Fragment key={id}>
                  <LineChart
                    label={`${id}: CPU`}
                    values={samples.map((s) => s.cameras[id]?.cpuPercent ?? null)}
                    format={(v) => `${v.toFixed(1)} % of a core`}
                  />
                  {samples.some((s) => s.cameras[id]?.fps != null) && (
                    <LineChart
                      label={`${id}: detector frames/s`}
                      values={samples.map((s) => s.cameras[id]?.fps ?? null)}
                      format={(v) => v.toFixed(1)}
                      note={
                        samples.at(-1)?.cameras[id]?.inferenceMs
                          ? `${Math.round(samples.at(-1)!.cameras[id]!.inferenceMs!)} ms a frame`
                          : undefined
                      }
                    />
                  )}
                </Fragment>
              ))}
            </div>
          )}
        </>
      )}
    </section>
  );
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
  const update = useLoad(() => api<UpdateStatus>('/system/update'));
  const { data: cameras } = useCameras();
  useUpdates(['sync.status.'], () => void sync.reload());
  useUpdates(['recording.archive.', 'recording.disk.'], () => void storage.reload());

  const s = storage.data;
  const accelerators = detector.data?.accelerators;
  const usedPct = s ? Math.round(((s.diskTotalBytes - s.diskFreeBytes) / s.diskTotalBytes) * 100) : 0;
  const low = s ? s.diskFreeBytes < s.minFreeBytes * 1.5 : false;
  return (
    <Page title="System">
      <LastDayPanel />
      <section class="panel" id="storage">
        <h2>Storage</h2>
        <Problem error={storage.error} />
        {s && (
          <>
            <meter min={0} max={100} value={usedPct} high={85} optimum={10} aria-label="Disk used" />
            <p>
              {formatBytes(s.diskFreeBytes)} free of {formatBytes(s.diskTotalBytes)} · recordings take{' '}
              {formatBytes(s.recordingsBytes)}
              {s.quotaBytes ? ` of their ${formatBytes(s.quotaBytes)} quota` : ''}
            </p>
            {low && (
              <p class="problem">
                The disk is nearly full: the oldest recordings are being{' '}
                {s.archive?.state === 'ok' ? 'moved to the archive' : 'removed'} to keep {formatBytes(s.minFreeBytes)}{' '}
                free.
              </p>
            )}
            {s.archive && <ArchiveTier archive={s.archive} />}
          </>
        )}
      </section>
      <section class="panel" id="cameras">
        <h2>Cameras</h2>
        <table class="list">
          <thead>
            <tr>
              <th>Camera</th>
              <th>State</th>
              <th>Bitrate</th>
              <th>Recordings</th>
              <th>Detector</th>
            </tr>
          </thead>
          <tbody>
            {cameras?.map((c) => {
              const d = detector.data?.cameras[c.id];
              return (
                <tr data-camera={c.id}>
                  <td>{c.name}</td>
                  <td class={`state ${c.status?.state ?? 'unknown'}`}>
                    {c.status?.state ?? 'unknown'}
                    {c.status?.reason ? `: ${c.status.reason}` : ''}
                  </td>
                  <td>{c.status?.bitrateKbps != null ? `${c.status.bitrateKbps} kbit/s` : ''}</td>
                  <td>
                    {s?.cameras[c.id]
                      ? `${formatBytes(s.cameras[c.id]!.bytes)}${s.cameras[c.id]!.archivedBytes ? ` (${formatBytes(s.cameras[c.id]!.archivedBytes)} in the archive)` : ''} since ${formatTime(s.cameras[c.id]!.oldest)}`
                      : ''}
                  </td>
                  <td>
                    {d
                      ? `${d.inferenceMs ?? '?'} ms a frame${d.behind ? ', falling behind' : ''}`
                      : c.detection.enabled
                        ? 'not running'
                        : 'off'}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {detector.data?.error && <p class="problem">Detector: {detector.data.error}</p>}
        {accelerators?.inference && (
          <p id="accelerators" title={accelerators.notUsed.map((n) => `${n.name}: ${n.why}`).join('\n') || undefined}>
            Detection runs on {accelerators.inference === 'cpu' ? 'the CPU' : accelerators.inference}, decoding{' '}
            {accelerators.decoding === 'software' ? 'in software' : `on ${accelerators.decoding}`}
            {accelerators.notUsed.length ? ` (not used: ${accelerators.notUsed.map((n) => n.name).join(', ')})` : ''}
          </p>
        )}
      </section>
      <section class="panel" id="services">
        <h2>Services</h2>
        <Problem error={health.error} />
        <ul class="services">
          {health.data?.services.map((x) => (
            <li class={x.status}>
              {x.name}: {x.status}
            </li>
          ))}
        </ul>
      </section>
      <section class="panel" id="sync">
        <h2>Cloud sync</h2>
        <Problem error={sync.error} />
        {sync.data && (
          <>
            <p>
              {sync.data.queue.items} items ({formatBytes(sync.data.queue.bytes)}) waiting
              {sync.data.queue.oldestAgeSeconds !== null
                ? `, the oldest for ${Math.ceil(sync.data.queue.oldestAgeSeconds / 60)} min`
                : ''}
              .
            </p>
            {sync.data.targets.length === 0 && <p>No cloud target: everything stays on the box.</p>}
            <ul>
              {sync.data.targets.map((t) => (
                <li data-target={t.id}>
                  {t.id} ({t.type}, {t.state}, {t.pendingItems} waiting):{' '}
                  {t.lastError ? (
                    <span class="problem">
                      {t.lastError.code}: {t.lastError.message}
                    </span>
                  ) : t.lastSuccessAt ? (
                    `last upload ${formatTime(t.lastSuccessAt)}`
                  ) : (
                    'nothing sent yet'
                  )}
                </li>
              ))}
            </ul>
          </>
        )}
      </section>
      <UplinkPanel />
      <section class="panel" id="about">
        <h2>About</h2>
        <Problem error={info.error} />
        {info.data && (
          <p>
            FogEdge {String(info.data['version'])} · up {Math.round(Number(info.data['uptimeSeconds']) / 60)} min ·{' '}
            {String(info.data['transporter'])} bus · {can('settings.manage') ? String(info.data['hostname']) : ''}
          </p>
        )}
        {update.data?.update?.state === 'rolled-back' && (
          <p class="problem" id="update-state">
            The update to {update.data.update.to} was rolled back to {update.data.update.from}:{' '}
            {update.data.update.reason}
          </p>
        )}
        {update.data?.update?.state === 'trying' && <p id="update-state">Trying version {update.data.update.to}…</p>}
        {update.data?.update?.state === 'confirmed' && (
          <p id="update-state">
            Updated from {update.data.update.from}{' '}
            {update.data.update.finishedAt ? formatTime(update.data.update.finishedAt) : ''}.
          </p>
        )}
      </section>
    </Page>
  );
}
