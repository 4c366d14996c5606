// Devices: the MQTT devices of the house (cameras, sensors, locks), allowed or denied, and the
// pairing window in which a new device knocks and waits here to be allowed.
import type { TargetedEvent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Field, Page, Problem, formValues, useAction, useLoad } from '../components/ui.tsx';

interface Device {
  id: string;
  name: string;
  state: 'allowed' | 'denied' | 'pending';
  grants: string[];
  createdAt: string;
  origin: 'added' | 'paired';
}

function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function DevicesPage() {
  const list = useLoad(() => api<{ devices: Device[]; pairingUntil: string | null }>('/devices'));
  useUpdates(['device.'], () => void list.reload());
  const [secret, setSecret] = useState<{ id: string; secret: string }>();
  const now = useNow(1000);
  const { error, run: act } = useAction(list.reload);
  const pairingLeft = list.data?.pairingUntil
    ? Math.max(0, Math.round((Date.parse(list.data.pairingUntil) - now) / 1000))
    : 0;
  const add = (e: TargetedEvent<HTMLFormElement>) => {
    const v = formValues(e);
    const form = e.currentTarget as HTMLFormElement;
    void act(async () => {
      setSecret(
        await api<{ id: string; secret: string }>('/devices', {
          method: 'POST',
          body: { id: v['id'], name: v['name'] },
        }),
      );
      form.reset();
    });
  };

  return (
    <Page title="Devices">
      <p class="buttons">
        {pairingLeft > 0 ? (
          <>
            <span class="ok" role="status">
              Pairing open: {Math.floor(pairingLeft / 60)}:{String(pairingLeft % 60).padStart(2, '0')} left. New devices
              that connect now wait below.
            </span>
            <button onClick={() => act(() => api('/devices/pairing', { method: 'POST', body: { seconds: 0 } }))}>
              Close pairing
            </button>
          </>
        ) : (
          <button onClick={() => act(() => api('/devices/pairing', { method: 'POST', body: { seconds: 300 } }))}>
            Open pairing for 5 minutes
          </button>
        )}
      </p>
      <Problem error={list.error ?? error} />
      {secret && (
        <p class="secret" role="status">
          Password of <strong>{secret.id}</strong> (shown once, the box keeps a hash): <code>{secret.secret}</code>
        </p>
      )}
      <table class="list">
        <thead>
          <tr>
            <th>Device</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {list.data?.devices.map((d) => (
            <tr data-device={d.id} key={d.id}>
              <td>
                {d.name}{' '}
                <small>
                  {d.id}
                  {d.origin === 'paired' ? ' · paired' : ''}
                </small>
              </td>
              <td class={`state ${d.state}`}>{d.state}</td>
              <td class="buttons">
                {d.state !== 'allowed' && (
                  <button
                    onClick={() => act(() => api(`/devices/${d.id}`, { method: 'PATCH', body: { state: 'allowed' } }))}
                  >
                    Allow
                  </button>
                )}
                {d.state !== 'denied' && (
                  <button
                    onClick={() => act(() => api(`/devices/${d.id}`, { method: 'PATCH', body: { state: 'denied' } }))}
                  >
                    Deny
                  </button>
                )}
                <button
                  onClick={() => act(async () => setSecret(await api(`/devices/${d.id}/secret`, { method: 'POST' })))}
                >
                  New password
                </button>
                <button
                  class="danger"
                  onClick={() => confirm(`Remove ${d.id}?`) && act(() => api(`/devices/${d.id}`, { method: 'DELETE' }))}
                >
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="inline-form" onSubmit={add}>
        <h2>Add a device</h2>
        <Field label="Id (its MQTT user name)" name="id" error={error}>
          <input name="id" required pattern="[a-z0-9][a-z0-9_-]{0,63}" title="lower-case letters, digits, _ and -" />
        </Field>
        <Field label="Name" name="name" error={error}>
          <input name="name" required />
        </Field>
        <button>Add device</button>
      </form>
    </Page>
  );
}
