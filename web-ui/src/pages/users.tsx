// Users: the family members, the installer and admins, each with a role.
import type { TargetedEvent } from 'preact';
import { api, me } from '../api.ts';
import { Field, Page, Problem, formValues, useAction, useLoad } from '../components/ui.tsx';

interface User {
  username: string;
  role: 'admin' | 'family' | 'installer';
  createdAt: string;
}

const ROLE_TEXT = {
  admin: 'Admin: everything',
  family: 'Family: live view, events, recordings',
  installer: 'Installer: cameras, devices, settings; not the recordings',
};

export function UsersPage() {
  const users = useLoad(() => api<User[]>('/users'));
  const { error, run: act } = useAction(users.reload);
  const add = (e: TargetedEvent<HTMLFormElement>) => {
    const v = formValues(e);
    const form = e.currentTarget as HTMLFormElement;
    void act(async () => {
      await api('/users', { method: 'POST', body: v });
      form.reset();
    });
  };
  return (
    <Page title="Users">
      <Problem error={users.error} />
      <table class="list">
        <thead>
          <tr>
            <th>User</th>
            <th>Role</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {users.data?.map((u) => (
            <tr data-user={u.username} key={u.username}>
              <td>{u.username}</td>
              <td>
                <select
                  aria-label={`Role of ${u.username}`}
                  value={u.role}
                  disabled={u.username === me.value?.user.username}
                  onChange={(e) =>
                    act(() => api(`/users/${u.username}`, { method: 'PATCH', body: { role: e.currentTarget.value } }))
                  }
                >
                  {Object.entries(ROLE_TEXT).map(([r, text]) => (
                    <option value={r}>{text}</option>
                  ))}
                </select>
              </td>
              <td>
                {u.username !== me.value?.user.username && (
                  <button
                    class="danger"
                    onClick={() =>
                      confirm(`Remove ${u.username}?`) && act(() => api(`/users/${u.username}`, { method: 'DELETE' }))
                    }
                  >
                    Remove
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="inline-form" onSubmit={add} id="add-user">
        <h2>Add a user</h2>
        <Field label="User name" name="username" error={error}>
          <input name="username" required autocomplete="off" />
        </Field>
        <Field label="Password" name="password" error={error} hint="10 characters or more">
          <input name="password" type="password" autocomplete="new-password" required />
        </Field>
        <Field label="Role" name="role" error={error}>
          <select name="role">
            {Object.entries(ROLE_TEXT).map(([r, text]) => (
              <option value={r} selected={r === 'family'}>
                {text}
              </option>
            ))}
          </select>
        </Field>
        <Problem error={error} besideFields />
        <button>Add user</button>
      </form>
    </Page>
  );
}
