// Away from home: pairing this browser from an invitation link, and, on the Me page, the
// invitation (a link and its QR code, for a phone) and the browsers paired.
import { useState } from 'preact/hooks';
import { generate } from 'lean-qr';
import { api, formatTime } from '../api.ts';
import { Problem, useAction, useLoad } from '../components/ui.tsx';
import { pair, type Pairing } from '../remote.ts';

interface Invitation {
  link: string;
  expiresAt: string;
}
interface PairedBrowser {
  id: string;
  username: string;
  name: string;
  pairedAt: string;
  lastUsedAt: string | null;
}

/** Opened from an invitation link: pair, then open the app. */
export function PairPage({ pairing }: { pairing: Pairing }) {
  const [name, setName] = useState(/Mobile/.test(navigator.userAgent) ? 'Phone' : 'Browser');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const go = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await pair(pairing, name.trim() || 'Browser');
      location.replace('/');
    } catch (err) {
      setError(err as Error);
      setBusy(false);
    }
  };
  return (
    <main class="page narrow">
      <h1>Pair with your FogEdge box</h1>
      <p>
        This browser will reach box <strong>{pairing.box}</strong> from anywhere, through your operator, who passes the
        connection on but cannot see it.
      </p>
      <form onSubmit={go} id="pair">
        <label>
          Name of this browser
          <input name="name" value={name} maxLength={80} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <Problem error={error} />
        <button type="submit" disabled={busy}>
          {busy ? 'Pairing…' : 'Pair'}
        </button>
      </form>
    </main>
  );
}

/** Away, and this browser is not paired (or was unpaired). */
export function NotPaired({ problem }: { problem?: string }) {
  return (
    <main class="page narrow">
      <h1>FogEdge</h1>
      {problem && (
        <p class="problem" role="alert">
          {problem}
        </p>
      )}
      <p>
        To use this app away from home, pair it once: at home, open your box's web page, go to <em>Me</em>, choose{' '}
        <em>Pair a phone or browser</em>, and open the link (or scan the code) it shows.
      </p>
    </main>
  );
}

/** The Me page's section: an invitation for a new browser, and the browsers paired. */
export function AwaySettings() {
  const browsers = useLoad(() => api<PairedBrowser[]>('/remote/browsers'));
  const [invitation, setInvitation] = useState<Invitation>();
  const { error, run } = useAction(browsers.reload);
  const invite = () => run(async () => setInvitation(await api<Invitation>('/remote/invitations', { method: 'POST' })));
  return (
    <section id="away">
      <h2>Away from home</h2>
      <p class="hint">
        A paired phone or browser reaches this box from anywhere, with no port forwarding. The link works once, for 15
        minutes.
      </p>
      <button type="button" onClick={invite}>
        Pair a phone or browser
      </button>
      <Problem error={error} />
      {invitation && (
        <div class="invitation">
          <img
            alt="QR code of the pairing link"
            width={232}
            height={232}
            src={generate(invitation.link).toDataURL({ scale: 4 })}
          />
          <p>
            <a href={invitation.link} target="_blank" rel="noopener" class="pairing-link">
              Open the pairing link
            </a>{' '}
            (valid until {formatTime(invitation.expiresAt)})
          </p>
        </div>
      )}
      <Problem error={browsers.error} />
      {browsers.data && browsers.data.length > 0 && (
        <table class="paired">
          <thead>
            <tr>
              <th>Name</th>
              <th>User</th>
              <th>Paired</th>
              <th>Last used</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {browsers.data.map((b) => (
              <tr>
                <td>{b.name}</td>
                <td>{b.username}</td>
                <td>{formatTime(b.pairedAt)}</td>
                <td>{formatTime(b.lastUsedAt) || 'never'}</td>
                <td>
                  <button
                    type="button"
                    class="link"
                    onClick={() => run(() => api(`/remote/browsers/${b.id}`, { method: 'DELETE' }))}
                  >
                    Unpair
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
