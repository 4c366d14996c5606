// Cameras: the list with each camera's state, and one form to add or change a camera: its
// stream (with a Test button that says what is wrong), recording, detection, zones and masks.
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, ApiError } from '../api.ts';
import { Field, Page, Problem, useAction, useLoad } from '../components/ui.tsx';
import { ZoneEditor } from '../components/zone-editor.tsx';
import { useCameras, type Camera } from '../cameras.ts';
import type { CameraDefaults, ProbeResult } from '../../../services/cameras/cameras.schemas.ts';

const LABELS = ['person', 'car', 'bicycle', 'motorcycle', 'bus', 'truck', 'dog', 'cat', 'bird'];

export function CamerasPage() {
  const { data: cameras, error } = useCameras();
  return (
    <Page
      title="Cameras"
      actions={
        <a class="button" href="/cameras/new">
          Add camera
        </a>
      }
    >
      <Problem error={error} />
      <table class="list">
        <thead>
          <tr>
            <th>Camera</th>
            <th>State</th>
            <th>Video</th>
            <th>Recording</th>
          </tr>
        </thead>
        <tbody>
          {cameras?.map((c) => (
            <tr data-camera={c.id} key={c.id}>
              <td>
                <a href={`/cameras/${c.id}`}>{c.name}</a> <small>{c.id}</small>
              </td>
              <td class={`state ${c.status?.state ?? 'unknown'}`}>
                {c.status?.state ?? 'unknown'}
                {c.status?.reason ? `: ${c.status.reason}` : ''}
              </td>
              <td>
                {c.status?.codec
                  ? `${c.status.codec} ${c.status.width}×${c.status.height}, ${c.status.bitrateKbps ?? '?'} kbit/s`
                  : ''}
              </td>
              <td>{c.recording.mode}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}

type Form = {
  id: string;
  name: string;
  enabled: boolean;
  kind: 'rtsp' | 'rtmp';
  url: string;
  transport: 'tcp' | 'udp';
  audio: boolean;
  recording: Camera['recording'];
  detection: Camera['detection'];
};

/** A new camera's form: recording and detection as the box would set them (its schemas' defaults). */
const blankOf = (defaults: CameraDefaults): Form => ({
  id: '',
  name: '',
  enabled: true,
  kind: 'rtsp',
  url: '',
  transport: 'tcp',
  audio: true,
  ...defaults,
});

const formOf = (c: Camera): Form => ({
  id: c.id,
  name: c.name,
  enabled: c.enabled,
  kind: c.source.kind === 'rtmp' ? 'rtmp' : 'rtsp',
  url: c.source.kind === 'rtsp' ? c.source.url : '',
  transport: c.source.kind === 'rtsp' ? c.source.transport : 'tcp',
  audio: c.audio,
  recording: c.recording,
  detection: c.detection,
});

export function CameraEditPage({ id }: { id?: string }) {
  const adding = !id;
  const { route, query } = useLocation();
  // The list follows the live state (a saved change restarts the stream; the drawing needs a picture).
  const { data: cameras, error } = useCameras();
  const defaults = useLoad(
    () => (adding ? api<CameraDefaults>('/camera-defaults') : Promise.resolve(undefined)),
    [adding],
  );
  const camera = cameras?.find((c) => c.id === id);
  if (adding && !defaults.data)
    return (
      <Page title="Add camera">
        <Problem error={defaults.error} />
        {!defaults.error && <p>Loading…</p>}
      </Page>
    );
  if (id && !camera)
    return (
      <Page title="Camera">
        <Problem error={error ?? (cameras ? new Error(`There is no camera "${id}".`) : undefined)} />
        {!cameras && !error && <p>Loading…</p>}
      </Page>
    );
  return (
    <CameraForm
      key={id ?? 'new'}
      camera={camera}
      defaults={defaults.data}
      adding={adding}
      first={query['first'] === '1'}
      done={() => route('/cameras')}
    />
  );
}

function CameraForm({
  camera,
  defaults,
  adding,
  first,
  done,
}: {
  camera: Camera | undefined;
  /** Where a new camera starts (adding only). */
  defaults: CameraDefaults | undefined;
  adding: boolean;
  first: boolean;
  done: () => void;
}) {
  const [form, setForm] = useState<Form>(camera ? formOf(camera) : blankOf(defaults!));
  const { error, run } = useAction();
  const [probe, setProbe] = useState<ProbeResult | 'busy'>();
  const [saved, setSaved] = useState(false);
  const [push, setPush] = useState<{ key: string; port: number | null }>();
  const builtIn = camera?.builtIn === true;
  const streaming = camera?.status?.state === 'online';
  const set = (patch: Partial<Form>) => setForm({ ...form, ...patch });

  const test = async () => {
    setProbe('busy');
    const body = {
      source: { kind: 'rtsp', url: form.url, transport: form.transport },
      ...(adding ? {} : { id: form.id }),
    };
    if (!(await run(async () => setProbe(await api<ProbeResult>('/cameras/test', { method: 'POST', body })))))
      setProbe(undefined);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    const source = form.kind === 'rtsp' ? { kind: 'rtsp', url: form.url, transport: form.transport } : { kind: 'rtmp' };
    const keepSource = !adding && camera?.source.kind === 'rtmp' && form.kind === 'rtmp';
    const body = {
      name: form.name,
      enabled: form.enabled,
      ...(keepSource ? {} : { source }),
      audio: form.audio,
      recording: form.recording,
      detection: form.detection,
    };
    let answer: { streamKey?: string; source?: { pushPort?: number | null } } = {};
    const ok = await run(async () => {
      answer = adding
        ? await api<typeof answer>('/cameras', { method: 'POST', body: { id: form.id, ...body } })
        : await api<typeof answer>(`/cameras/${form.id}`, { method: 'PATCH', body });
    });
    setSaved(ok);
    if (ok && answer.streamKey) setPush({ key: answer.streamKey, port: answer.source?.pushPort ?? null });
    else if (ok && adding) done();
  };

  const remove = async () => {
    if (!confirm(`Remove camera "${form.name}"? Its recordings stay until retention removes them.`)) return;
    if (await run(() => api(`/cameras/${form.id}`, { method: 'DELETE' }))) done();
  };

  const generalError =
    error instanceof ApiError && error.fields.length
      ? new Error('Some fields need a change: see below each one.')
      : error;
  if (push) {
    return (
      <Page title="Push camera added">
        <p>Set the camera (or the FogEdge camera agent) to push RTMP to:</p>
        {push.port === null ? (
          <p class="problem">
            RTMP push is turned off on this box (video.rtmp in its configuration): the camera cannot push until it is
            on.
          </p>
        ) : (
          <pre class="secret" data-testid="push-url">
            rtmp://{location.hostname}:{push.port}/live/{form.id}?key={push.key}
          </pre>
        )}
        <p>
          The box keeps only a hash of this key: copy it now. A new key can be made later; the old one stops working
          then.
        </p>
        <button onClick={done}>Done</button>
      </Page>
    );
  }
  return (
    <Page title={adding ? (first ? 'Add your first camera' : 'Add a camera') : `Camera ${camera?.name ?? ''}`}>
      {builtIn && <p class="hint">This camera comes from the box's configuration file; change it there.</p>}
      <form class="camera-form" onSubmit={save} id="camera-form">
        <fieldset disabled={builtIn}>
          <legend>Camera</legend>
          <Field
            label="Id (in addresses and MQTT topics)"
            name="id"
            error={error}
            hint="lower-case letters, digits and -"
          >
            <input
              name="id"
              value={form.id}
              disabled={!adding}
              onInput={(e) => set({ id: e.currentTarget.value })}
              required
            />
          </Field>
          <Field label="Name" name="name" error={error}>
            <input name="name" value={form.name} onInput={(e) => set({ name: e.currentTarget.value })} required />
          </Field>
          <label class="check">
            <input type="checkbox" checked={form.enabled} onChange={(e) => set({ enabled: e.currentTarget.checked })} />{' '}
            On
          </label>
        </fieldset>
        <fieldset disabled={builtIn}>
          <legend>Video stream</legend>
          <Field label="How the camera sends video" name="source.kind" error={error}>
            <select
              name="kind"
              value={form.kind}
              onChange={(e) => set({ kind: e.currentTarget.value as Form['kind'] })}
            >
              <option value="rtsp">The box pulls RTSP from the camera</option>
              <option value="rtmp">The camera pushes RTMP to the box</option>
            </select>
          </Field>
          {form.kind === 'rtsp' && (
            <>
              <Field
                label="RTSP address"
                name="source.url"
                error={error}
                hint="e.g. rtsp://user:password@192.168.1.20:554/stream1"
              >
                <input
                  name="url"
                  value={form.url}
                  inputMode="url"
                  autocomplete="off"
                  onInput={(e) => set({ url: e.currentTarget.value })}
                  required
                />
              </Field>
              <Field label="Transport" name="source.transport" error={error}>
                <select
                  name="transport"
                  value={form.transport}
                  onChange={(e) => set({ transport: e.currentTarget.value as Form['transport'] })}
                >
                  <option value="tcp">TCP (works through most networks)</option>
                  <option value="udp">UDP</option>
                </select>
              </Field>
              <p class="buttons">
                <button type="button" onClick={test} disabled={probe === 'busy' || !form.url}>
                  Test
                </button>
                <span
                  role="status"
                  class={probe && probe !== 'busy' ? (probe.ok ? 'probe ok' : 'probe bad') : 'probe'}
                  data-testid="probe"
                >
                  {probe === 'busy' && 'Testing…'}
                  {probe &&
                    probe !== 'busy' &&
                    (probe.ok
                      ? `Works: ${probe.codec} ${probe.width}×${probe.height}${probe.fps ? `, ${probe.fps} fps` : ''}`
                      : `Does not work: ${probe.reason}. ${probe.detail ?? ''}`)}
                </span>
              </p>
            </>
          )}
        </fieldset>
        <fieldset disabled={builtIn}>
          <legend>Recording</legend>
          <label class="check">
            <input
              type="checkbox"
              name="audio"
              checked={form.audio}
              onChange={(e) => set({ audio: e.currentTarget.checked })}
            />{' '}
            Sound (when the camera has a microphone)
          </label>
          <Field label="Record" name="recording.mode" error={error}>
            <select
              value={form.recording.mode}
              onChange={(e) =>
                set({ recording: { ...form.recording, mode: e.currentTarget.value as Form['recording']['mode'] } })
              }
            >
              <option value="continuous">All the time</option>
              <option value="events">Only around events</option>
              <option value="off">Off</option>
            </select>
          </Field>
          <Field label="Keep recordings (days)" name="recording.retainDays" error={error}>
            <input
              type="number"
              step="any"
              value={form.recording.retainDays}
              onInput={(e) => set({ recording: { ...form.recording, retainDays: e.currentTarget.valueAsNumber } })}
            />
          </Field>
          <Field label="Keep footage around detections (days)" name="recording.eventRetainDays" error={error}>
            <input
              type="number"
              step="any"
              value={form.recording.eventRetainDays}
              onInput={(e) => set({ recording: { ...form.recording, eventRetainDays: e.currentTarget.valueAsNumber } })}
            />
          </Field>
          {(
            [
              ['alertRetainDays', 'Keep footage around alerts (days)', 'empty: as detections'],
              ['motionRetainDays', "Keep footage of the camera's own motion (days)", 'empty: as recordings'],
            ] as const
          ).map(([key, label, hint]) => (
            // Optional days: an empty field is null (the other kind's days apply).
            <Field label={label} name={`recording.${key}`} error={error} hint={hint}>
              <input
                type="number"
                step="any"
                value={form.recording[key] ?? ''}
                onInput={(e) => {
                  const days = e.currentTarget.valueAsNumber;
                  set({ recording: { ...form.recording, [key]: Number.isNaN(days) ? null : days } });
                }}
              />
            </Field>
          ))}
        </fieldset>
        <fieldset disabled={builtIn}>
          <legend>Detection</legend>
          <label class="check">
            <input
              type="checkbox"
              checked={form.detection.enabled}
              onChange={(e) => set({ detection: { ...form.detection, enabled: e.currentTarget.checked } })}
            />{' '}
            Find people and objects
          </label>
          <Field label="Frames looked at per second" name="detection.fps" error={error}>
            <input
              type="number"
              step="any"
              value={form.detection.fps}
              onInput={(e) => set({ detection: { ...form.detection, fps: e.currentTarget.valueAsNumber } })}
            />
          </Field>
          <div class="labels" role="group" aria-label="Objects that make events">
            {LABELS.map((l) => (
              <label class="check">
                <input
                  type="checkbox"
                  checked={form.detection.labels.includes(l)}
                  onChange={(e) =>
                    set({
                      detection: {
                        ...form.detection,
                        labels: e.currentTarget.checked
                          ? [...form.detection.labels, l]
                          : form.detection.labels.filter((x) => x !== l),
                      },
                    })
                  }
                />{' '}
                {l}
              </label>
            ))}
          </div>
          {!adding && streaming ? (
            <ZoneEditor
              camera={form.id}
              value={form.detection}
              onChange={(shapes) => set({ detection: { ...form.detection, ...shapes } })}
            />
          ) : (
            <p class="hint">Zones and masks are drawn on the camera's picture once it streams.</p>
          )}
          {error instanceof ApiError && (error.field('detection.zones') || error.field('detection.motionMasks')) && (
            <p class="problem">{error.field('detection.zones') ?? error.field('detection.motionMasks')}</p>
          )}
        </fieldset>
        <Problem error={generalError} />
        {saved && (
          <p class="ok" role="status">
            Saved.
          </p>
        )}
        {!builtIn && (
          <p class="buttons">
            <button>{adding ? 'Add camera' : 'Save'}</button>
            {!adding && (
              <button type="button" class="danger" onClick={remove}>
                Remove camera
              </button>
            )}
          </p>
        )}
      </form>
    </Page>
  );
}
