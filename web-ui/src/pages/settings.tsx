// Me: which events I am told about (pushed to the app over MQTT), and my password.
import type { TargetedEvent } from 'preact';
import { useState } from 'preact/hooks';
import { api, me } from '../api.ts';
import { Field, Page, Problem, formValues, useAction, useLoad } from '../components/ui.tsx';
import { useCameras } from '../cameras.ts';
import { AwaySettings } from './away.tsx';
import { pushPossible, subscribePush, unsubscribePush } from '../push.ts';

/** Notifications on this browser too (Web Push), beside the app's MQTT topic. */
function PushOnThisBrowser() {
  const { error, run } = useAction();
  const [state, setState] = useState<string>();
  if (!pushPossible()) return <p class="hint">This browser cannot get notifications (it needs a secure page).</p>;
  return (
    <div id="push">
      <button
        type="button"
        onClick={() =>
          run(async () => {
            await subscribePush(/Mobile/.test(navigator.userAgent) ? 'Phone' : 'Browser');
            setState('This browser gets your notifications.');
          })
        }
      >
        Notify me on this browser
      </button>{' '}
      <button
        type="button"
        class="link"
        onClick={() =>
          run(async () => {
            await unsubscribePush();
            setState('This browser gets no notifications.');
          })
        }
      >
        Stop
      </button>
      {state && <p class="hint">{state}</p>}
      <Problem error={error} />
    </div>
  );
}

interface Rule {
  cameras: string[];
  labels: string[];
  zones: string[];
  from?: string;
  to?: string;
}
interface Notifications {
  enabled: boolean;
  rules: Rule[];
}

const LABELS = ['person', 'car', 'bicycle', 'motorcycle', 'dog', 'cat'];

function NotificationsForm() {
  const loaded = useLoad(() => api<Notifications>('/auth/me/notifications'));
  const { data: cameras } = useCameras();
  const [edit, setEdit] = useState<Notifications>();
  const { error, run } = useAction();
  const [saved, setSaved] = useState(false);
  const value = edit ?? loaded.data;
  if (!value) return <Problem error={loaded.error} />;
  const rule: Rule = value.rules[0] ?? { cameras: [], labels: [], zones: [] };
  const setRule = (r: Partial<Rule>) => setEdit({ ...value, rules: [{ ...rule, ...r }] });
  const toggle = (list: string[], item: string, on: boolean) => (on ? [...list, item] : list.filter((x) => x !== item));
  const save = async (e: Event) => {
    e.preventDefault();
    const clean = { ...rule, from: rule.from || undefined, to: rule.to || undefined };
    const empty = !clean.cameras.length && !clean.labels.length && !clean.zones.length && !clean.from && !clean.to;
    setSaved(
      await run(() =>
        api('/auth/me/notifications', { method: 'PUT', body: { enabled: value.enabled, rules: empty ? [] : [clean] } }),
      ),
    );
  };
  return (
    <form onSubmit={save} id="notifications">
      <h2>Notifications</h2>
      <label class="check">
        <input
          type="checkbox"
          checked={value.enabled}
          onChange={(e) => setEdit({ ...value, enabled: e.currentTarget.checked })}
        />{' '}
        Tell me about new events
      </label>
      <p class="hint">Nothing ticked below means every camera or every object.</p>
      <div class="labels" role="group" aria-label="Cameras">
        {cameras?.map((c) => (
          <label class="check">
            <input
              type="checkbox"
              checked={rule.cameras.includes(c.id)}
              onChange={(e) => setRule({ cameras: toggle(rule.cameras, c.id, e.currentTarget.checked) })}
            />{' '}
            {c.name}
          </label>
        ))}
      </div>
      <div class="labels" role="group" aria-label="Objects">
        {LABELS.map((l) => (
          <label class="check">
            <input
              type="checkbox"
              checked={rule.labels.includes(l)}
              onChange={(e) => setRule({ labels: toggle(rule.labels, l, e.currentTarget.checked) })}
            />{' '}
            {l}
          </label>
        ))}
      </div>
      <Field label="Only from (time of day)" name="rules.0.from" error={error}>
        <input type="time" value={rule.from ?? ''} onInput={(e) => setRule({ from: e.currentTarget.value })} />
      </Field>
      <Field label="Until" name="rules.0.to" error={error}>
        <input type="time" value={rule.to ?? ''} onInput={(e) => setRule({ to: e.currentTarget.value })} />
      </Field>
      <Problem error={error} />
      {saved && (
        <p class="ok" role="status">
          Saved.
        </p>
      )}
      <button>Save notifications</button>
    </form>
  );
}

function PasswordForm() {
  const { error, run } = useAction();
  const [saved, setSaved] = useState(false);
  const save = async (e: TargetedEvent<HTMLFormElement>) => {
    const v = formValues(e);
    const form = e.currentTarget as HTMLFormElement;
    setSaved(
      await run(async () => {
        await api('/auth/password', { method: 'POST', body: v });
        form.reset();
      }),
    );
  };
  return (
    <form onSubmit={save} id="password">
      <h2>Password</h2>
      <Field label="Current password" name="currentPassword" error={error}>
        <input name="currentPassword" type="password" autocomplete="current-password" required />
      </Field>
      <Field label="New password" name="newPassword" error={error} hint="10 characters or more">
        <input name="newPassword" type="password" autocomplete="new-password" required />
      </Field>
      <Problem error={error} />
      {saved && (
        <p class="ok" role="status">
          Password changed.
        </p>
      )}
      <button>Change password</button>
    </form>
  );
}

export function SettingsPage() {
  return (
    <Page title={`Me: ${me.value?.user.username ?? ''}`}>
      <NotificationsForm />
      <PushOnThisBrowser />
      <AwaySettings />
      <PasswordForm />
    </Page>
  );
}
