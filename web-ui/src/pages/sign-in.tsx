// First-run setup, sign-in, and signing in again over a page when the session has ended.
import type { TargetedEvent } from 'preact';
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, ApiError, loadMe, me, sessionRestored, type Me } from '../api.ts';
import { Field, Problem, formValues } from '../components/ui.tsx';

function useSignIn(path: '/auth/login' | '/setup', after: (who: Me) => void) {
  const [error, setError] = useState<Error>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: TargetedEvent<HTMLFormElement>) => {
    const values = formValues(e);
    setBusy(true);
    try {
      await api(path, { method: 'POST', body: values, anonymous: true });
      const who = await loadMe();
      if (who) after(who);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401 ? new Error('Wrong user name or password.') : (err as Error),
      );
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, submit };
}

function Credentials({ error, newPassword }: { error: Error | undefined; newPassword?: boolean }) {
  return (
    <>
      <Field label="User name" name="username" error={error}>
        <input name="username" autocomplete="username" required autofocus />
      </Field>
      <Field label="Password" name="password" error={error} hint={newPassword ? '10 characters or more' : undefined}>
        <input
          name="password"
          type="password"
          autocomplete={newPassword ? 'new-password' : 'current-password'}
          required
          minLength={newPassword ? 10 : undefined}
        />
      </Field>
    </>
  );
}

export function SignIn() {
  const { error, busy, submit } = useSignIn('/auth/login', () => undefined);
  return (
    <form class="card narrow" onSubmit={submit} id="sign-in">
      <h1>Sign in to FogEdge</h1>
      <Credentials error={error} />
      <Problem error={error} besideFields />
      <button disabled={busy}>Sign in</button>
    </form>
  );
}

export function Setup() {
  const { route } = useLocation();
  // A box that already has a camera (the demo) opens on Live; an empty one asks for the first camera.
  const { error, busy, submit } = useSignIn(
    '/setup',
    () =>
      void api<unknown[]>('/cameras')
        .then((cameras) => route(cameras.length ? '/' : '/cameras/new?first=1'))
        .catch(() => route('/cameras/new?first=1')),
  );
  return (
    <form class="card narrow" onSubmit={submit} id="setup">
      <h1>Welcome to FogEdge</h1>
      <p>Create the admin account of this box. You can add family members and the installer later.</p>
      <Credentials error={error} newPassword />
      <Problem error={error} besideFields />
      <button disabled={busy}>Create admin account</button>
    </form>
  );
}

/** Over the page: the work under it stays, and what was being sent goes once signed in. */
export function SessionDialog() {
  const username = me.value?.user.username ?? '';
  const { error, busy, submit } = useSignIn('/auth/login', sessionRestored);
  return (
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="session-title">
      <form class="card narrow" onSubmit={submit} id="session-dialog">
        <h2 id="session-title">Your session has ended</h2>
        <p>Sign in again to go on; nothing on this page is lost.</p>
        <Field label="User name" name="username" error={error}>
          <input name="username" autocomplete="username" value={username} required />
        </Field>
        <Field label="Password" name="password" error={error}>
          <input name="password" type="password" autocomplete="current-password" required autofocus />
        </Field>
        <Problem error={error} besideFields />
        <button disabled={busy}>Sign in</button>
      </form>
    </div>
  );
}
