// Automations: the list (on/off, why the box stopped one, run now), a builder of triggers,
// conditions and actions with the cameras, devices and modes of the site to pick from, and each
// automation's last runs: what fired it, what each condition said, what each action did.
import { useState } from 'preact/hooks';
import { ApiError, api, formatTime } from '../api.ts';
import { useCameras } from '../cameras.ts';
import { useUpdates } from '../updates.ts';
import { Field, Page, Problem, useAction, useLoad } from '../components/ui.tsx';
import type { Automation, Trace } from '../../../services/automations/automations.schemas.ts';
import type { ModesAnswer } from '../../../services/modes/modes.schemas.ts';

type Step = { kind: string } & Record<string, unknown>;
type FieldType = 'text' | 'number' | 'camera' | 'device' | 'mode' | 'bool' | 'users' | string[];
interface Spec {
  key: string;
  label: string;
  type: FieldType;
  /** Left empty, it is not sent. */
  optional?: boolean;
}
type Kinds = Record<string, { label: string; fields: Spec[] }>;

const TRIGGERS: Kinds = {
  'device.message': {
    label: 'A device sends',
    fields: [
      { key: 'device', label: 'Device', type: 'device' },
      { key: 'topic', label: 'Topic below it', type: 'text', optional: true },
      { key: 'match.field', label: 'JSON field', type: 'text', optional: true },
      { key: 'match.equals', label: 'Equals', type: 'text', optional: true },
    ],
  },
  event: {
    label: 'An object',
    fields: [
      { key: 'on', label: 'When it', type: ['start', 'end', 'loiter'] },
      { key: 'camera', label: 'Camera', type: 'camera', optional: true },
      { key: 'label', label: 'Label', type: 'text', optional: true },
      { key: 'zone', label: 'Zone', type: 'text', optional: true },
      { key: 'minScore', label: 'Lowest score', type: 'number', optional: true },
      { key: 'loiterSeconds', label: 'Loiter s', type: 'number', optional: true },
    ],
  },
  count: {
    label: 'A count of objects',
    fields: [
      { key: 'camera', label: 'Camera', type: 'camera' },
      { key: 'label', label: 'Label', type: 'text' },
      { key: 'zone', label: 'Zone', type: 'text', optional: true },
      { key: 'above', label: 'Goes above', type: 'number', optional: true },
      { key: 'below', label: 'Goes below', type: 'number', optional: true },
    ],
  },
  'device.connection': {
    label: 'A device goes',
    fields: [
      { key: 'device', label: 'Device', type: 'device' },
      { key: 'state', label: 'State', type: ['offline', 'online'] },
    ],
  },
  'camera.status': {
    label: 'A camera goes',
    fields: [
      { key: 'camera', label: 'Camera', type: 'camera', optional: true },
      { key: 'state', label: 'State', type: ['offline', 'online'] },
    ],
  },
  mode: {
    label: 'The mode changes',
    fields: [
      { key: 'to', label: 'To', type: 'mode', optional: true },
      { key: 'from', label: 'From', type: 'mode', optional: true },
    ],
  },
  schedule: { label: 'At times', fields: [{ key: 'cron', label: 'Cron (min hour day month weekday)', type: 'text' }] },
  sun: {
    label: 'Sunrise or sunset',
    fields: [
      { key: 'event', label: 'At', type: ['sunset', 'sunrise'] },
      { key: 'offsetMinutes', label: 'Offset min', type: 'number', optional: true },
    ],
  },
  system: { label: 'The box', fields: [{ key: 'what', label: 'When', type: ['disk.low', 'sync.stuck'] }] },
};

const CONDITIONS: Kinds = {
  mode: { label: 'The mode is', fields: [{ key: 'in', label: 'One of (comma)', type: 'text' }] },
  time: {
    label: 'The time is',
    fields: [
      { key: 'from', label: 'From (HH:MM)', type: 'text' },
      { key: 'to', label: 'To (HH:MM)', type: 'text' },
    ],
  },
  'device.state': {
    label: 'A device is',
    fields: [
      { key: 'device', label: 'Device', type: 'device' },
      { key: 'topic', label: 'Topic', type: 'text', optional: true },
      { key: 'field', label: 'JSON field', type: 'text', optional: true },
      { key: 'equals', label: 'Equals', type: 'text' },
    ],
  },
  'no.event': {
    label: 'No event',
    fields: [
      { key: 'label', label: 'Label', type: 'text' },
      { key: 'camera', label: 'Camera', type: 'camera', optional: true },
      { key: 'minutes', label: 'In the last min', type: 'number' },
    ],
  },
};

const ACTIONS: Kinds = {
  notify: {
    label: 'Notify',
    fields: [
      { key: 'title', label: 'Title', type: 'text' },
      { key: 'message', label: 'Message', type: 'text', optional: true },
      { key: 'users', label: 'Users (comma; empty: me)', type: 'users', optional: true },
      { key: 'camera', label: 'Picture of', type: 'camera', optional: true },
    ],
  },
  'device.publish': {
    label: 'Command a device',
    fields: [
      { key: 'device', label: 'Device', type: 'device' },
      { key: 'channel', label: 'Channel', type: 'text' },
      { key: 'payload', label: 'Payload', type: 'text' },
    ],
  },
  'mode.set': { label: 'Set the mode', fields: [{ key: 'mode', label: 'Mode', type: 'mode' }] },
  hold: {
    label: 'Keep footage',
    fields: [
      { key: 'camera', label: 'Camera', type: 'camera' },
      { key: 'preRollSeconds', label: 'From s ago', type: 'number', optional: true },
      { key: 'seconds', label: 'For s', type: 'number', optional: true },
    ],
  },
  clip: {
    label: 'Clip to the cloud',
    fields: [
      { key: 'camera', label: 'Camera', type: 'camera' },
      { key: 'seconds', label: 'Last s', type: 'number', optional: true },
    ],
  },
  'camera.set': {
    label: 'Change a camera',
    fields: [
      { key: 'camera', label: 'Camera', type: 'camera' },
      { key: 'detection', label: 'Detection', type: 'bool', optional: true },
      { key: 'recording', label: 'Recording', type: ['continuous', 'events', 'off'], optional: true },
      { key: 'notifications', label: 'Notifications', type: 'bool', optional: true },
    ],
  },
  webhook: { label: 'Call a webhook', fields: [{ key: 'url', label: 'URL (allowed by the admin)', type: 'text' }] },
  wait: { label: 'Wait', fields: [{ key: 'seconds', label: 'Seconds', type: 'number' }] },
};

const get = (step: Step, key: string): unknown =>
  key
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), step);

function put(step: Step, key: string, value: unknown): Step {
  const [head, ...rest] = key.split('.') as [string, ...string[]];
  if (rest.length === 0) {
    const next = { ...step };
    if (value === undefined) delete next[head];
    else next[head] = value;
    return next;
  }
  const inner = put({ kind: '', ...((step[head] as object) ?? {}) }, rest.join('.'), value);
  const { kind: _, ...fields } = inner;
  const next = { ...step };
  if (Object.keys(fields).length) next[head] = fields;
  else delete next[head];
  return next;
}

/** What the input shows for a value, and what a typed text becomes. */
function shown(value: unknown): string {
  if (value === undefined) return '';
  if (Array.isArray(value)) return value.join(', ');
  return String(value);
}
function parsed(spec: Spec, text: string): unknown {
  if (text === '' && spec.optional) return undefined;
  if (spec.type === 'number') return text === '' ? undefined : Number(text);
  if (spec.type === 'bool') return text === '' ? undefined : text === 'true';
  if (spec.type === 'users' || spec.key === 'in')
    return text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return text;
}

interface Choices {
  cameras: string[];
  devices: string[];
  modes: string[];
}

function StepRow(props: {
  list: string;
  index: number;
  step: Step;
  kinds: Kinds;
  choices: Choices;
  error: Error | undefined;
  onChange: (s: Step) => void;
  onRemove: () => void;
}) {
  const { list, index, step, kinds, choices } = props;
  const fields = kinds[step.kind]?.fields ?? [];
  const name = (key: string) => `${list}.${index}.${key}`;
  return (
    <fieldset class="step" data-step={name('kind')}>
      <select
        aria-label={`${list} ${index + 1}`}
        value={step.kind}
        onChange={(e) => props.onChange({ kind: e.currentTarget.value })}
      >
        {Object.entries(kinds).map(([kind, k]) => (
          <option value={kind} key={kind}>
            {k.label}
          </option>
        ))}
      </select>
      {fields.map((spec) => {
        const options =
          spec.type === 'camera'
            ? choices.cameras
            : spec.type === 'mode'
              ? choices.modes
              : spec.type === 'bool'
                ? ['true', 'false']
                : Array.isArray(spec.type)
                  ? spec.type
                  : undefined;
        const value = shown(get(step, spec.key));
        const change = (text: string) => props.onChange(put(step, spec.key, parsed(spec, text)));
        return (
          <Field label={spec.label} name={name(spec.key)} error={props.error} key={spec.key}>
            {options ? (
              <select name={name(spec.key)} value={value} onChange={(e) => change(e.currentTarget.value)}>
                {(spec.optional || !value) && <option value="">{spec.optional ? 'any' : 'choose'}</option>}
                {options.map((o) => (
                  <option value={o} key={o}>
                    {o}
                  </option>
                ))}
              </select>
            ) : (
              <input
                name={name(spec.key)}
                value={value}
                type={spec.type === 'number' ? 'number' : 'text'}
                step="any"
                list={spec.type === 'device' ? 'known-devices' : undefined}
                onInput={(e) => change(e.currentTarget.value)}
              />
            )}
          </Field>
        );
      })}
      <button type="button" class="link" onClick={props.onRemove} aria-label={`Remove ${list} ${index + 1}`}>
        Remove
      </button>
    </fieldset>
  );
}

type Draft = {
  id: string;
  name: string;
  enabled: boolean;
  triggers: Step[];
  conditions: Step[];
  actions: Step[];
  cooldownSeconds: number;
};

const blank = (): Draft => ({
  id: '',
  name: '',
  enabled: true,
  triggers: [{ kind: 'device.message' }],
  conditions: [],
  actions: [{ kind: 'notify' }],
  cooldownSeconds: 0,
});

function Builder(props: { draft: Draft; isNew: boolean; choices: Choices; onDone: () => void }) {
  const [d, setD] = useState<Draft>(props.draft);
  const { error, run } = useAction();
  const lists: Array<['triggers' | 'conditions' | 'actions', Kinds, string]> = [
    ['triggers', TRIGGERS, 'When (any of)'],
    ['conditions', CONDITIONS, 'Only if (all of)'],
    ['actions', ACTIONS, 'Then (in order)'],
  ];
  const save = (e: Event) => {
    e.preventDefault();
    const { id, ...body } = d;
    void run(async () => {
      await api(`/automations/${id}`, { method: 'PUT', body });
      props.onDone();
    });
  };
  return (
    <form class="builder" onSubmit={save} aria-label="Automation">
      <h2>{props.isNew ? 'New automation' : `Edit ${d.id}`}</h2>
      <Problem error={error} besideFields />
      {error instanceof ApiError && error.fields.length > 0 && (
        <p class="problem" role="alert">
          {error.message}
        </p>
      )}
      <div class="inline-form">
        {props.isNew && (
          <Field label="Id" name="id" error={error}>
            <input name="id" required value={d.id} onInput={(e) => setD({ ...d, id: e.currentTarget.value })} />
          </Field>
        )}
        <Field label="Name" name="name" error={error}>
          <input name="name" required value={d.name} onInput={(e) => setD({ ...d, name: e.currentTarget.value })} />
        </Field>
        <Field label="Cooldown s" name="cooldownSeconds" error={error}>
          <input
            name="cooldownSeconds"
            type="number"
            min="0"
            value={d.cooldownSeconds}
            onInput={(e) => setD({ ...d, cooldownSeconds: Number(e.currentTarget.value) })}
          />
        </Field>
      </div>
      {lists.map(([list, kinds, title]) => (
        <div class="steps" data-list={list} key={list}>
          <h3>{title}</h3>
          {d[list].map((step, i) => (
            <StepRow
              key={`${list}-${i}`}
              list={list}
              index={i}
              step={step}
              kinds={kinds}
              choices={props.choices}
              error={error}
              onChange={(s) => setD({ ...d, [list]: d[list].map((x, j) => (j === i ? s : x)) })}
              onRemove={() => setD({ ...d, [list]: d[list].filter((_, j) => j !== i) })}
            />
          ))}
          <button type="button" onClick={() => setD({ ...d, [list]: [...d[list], { kind: Object.keys(kinds)[0]! }] })}>
            Add {list === 'triggers' ? 'a trigger' : list === 'conditions' ? 'a condition' : 'an action'}
          </button>
        </div>
      ))}
      <p class="buttons">
        <button class="primary">Save</button>
        <button type="button" onClick={props.onDone}>
          Cancel
        </button>
      </p>
    </form>
  );
}

function Runs({ id }: { id: string }) {
  const traces = useLoad(() => api<Trace[]>(`/automations/${id}/traces`), [id]);
  useUpdates(
    ['automation.ran'],
    (type, data) => (type === 'hello' || (data as Trace).automation === id) && void traces.reload(),
  );
  if (!traces.data?.length) return <p class="runs">No run yet.</p>;
  return (
    <ol class="runs" data-runs={id}>
      {traces.data.map((t) => (
        <li key={t.run} data-result={t.result}>
          <strong>{t.result}</strong> {formatTime(t.startedAt)}: {t.trigger.detail}
          {t.reason && <em> · {t.reason}</em>}
          <ul>
            {t.conditions.map((c, i) => (
              <li key={`c${i}`} class={c.ok ? 'ok' : 'problem'}>
                if {c.kind}: {c.detail}
              </li>
            ))}
            {t.actions.map((a, i) => (
              <li key={`a${i}`} class={a.ok ? 'ok' : 'problem'}>
                {a.kind}: {a.detail}
              </li>
            ))}
          </ul>
        </li>
      ))}
    </ol>
  );
}

export function AutomationsPage() {
  const list = useLoad(() => api<Automation[]>('/automations'));
  const modes = useLoad(() => api<ModesAnswer>('/modes'));
  const devices = useLoad(() => api<Record<string, unknown>>('/device-states'));
  const { data: cameras } = useCameras();
  useUpdates(['automation.stopped'], () => void list.reload());
  const { error, run } = useAction(list.reload);
  const [editing, setEditing] = useState<{ draft: Draft; isNew: boolean }>();
  const [open, setOpen] = useState<string>();
  const choices: Choices = {
    cameras: cameras?.map((c) => c.id) ?? [],
    devices: Object.keys(devices.data ?? {}),
    modes: modes.data?.modes.map((m) => m.id) ?? [],
  };
  const toggle = (a: Automation) => {
    const { owner: _o, disabledReason: _r, updatedAt: _u, id, ...body } = a;
    return run(() =>
      api(`/automations/${id}`, { method: 'PUT', body: { ...body, enabled: !a.enabled || !!a.disabledReason } }),
    );
  };
  return (
    <Page
      title="Automations"
      actions={
        !editing && (
          <button type="button" onClick={() => setEditing({ draft: blank(), isNew: true })}>
            New automation
          </button>
        )
      }
    >
      <datalist id="known-devices">
        {choices.devices.map((d) => (
          <option value={d} key={d} />
        ))}
      </datalist>
      <Problem error={list.error ?? error} />
      {editing && (
        <Builder
          {...editing}
          choices={choices}
          onDone={() => {
            setEditing(undefined);
            void list.reload();
          }}
        />
      )}
      {list.data?.length === 0 && <p>No automation yet.</p>}
      <ul class="automations">
        {list.data?.map((a) => (
          <li key={a.id} data-automation={a.id} class={a.disabledReason ? 'stopped' : a.enabled ? 'on' : 'off'}>
            <label class="switch">
              <input type="checkbox" checked={a.enabled && !a.disabledReason} onChange={() => void toggle(a)} />
              <strong>{a.name}</strong>
            </label>{' '}
            <small>
              {a.id} · {a.owner}
            </small>
            {a.disabledReason && (
              <p class="problem" role="status">
                Stopped by the box: {a.disabledReason}
              </p>
            )}
            <p class="buttons">
              <button type="button" onClick={() => run(() => api(`/automations/${a.id}/run`, { method: 'POST' }))}>
                Run now
              </button>
              <button
                type="button"
                onClick={() =>
                  setEditing({
                    draft: {
                      id: a.id,
                      name: a.name,
                      enabled: a.enabled,
                      triggers: a.triggers as Step[],
                      conditions: a.conditions as Step[],
                      actions: a.actions as Step[],
                      cooldownSeconds: a.cooldownSeconds,
                    },
                    isNew: false,
                  })
                }
              >
                Edit
              </button>
              <button type="button" onClick={() => setOpen(open === a.id ? undefined : a.id)}>
                {open === a.id ? 'Hide runs' : 'Runs'}
              </button>
              <button
                type="button"
                class="danger"
                onClick={() =>
                  confirm(`Remove ${a.name}?`) && run(() => api(`/automations/${a.id}`, { method: 'DELETE' }))
                }
              >
                Remove
              </button>
            </p>
            {open === a.id && <Runs id={a.id} />}
          </li>
        ))}
      </ul>
    </Page>
  );
}
