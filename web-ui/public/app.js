// Placeholder pages until the web UI (issue 6) lands: first-run setup, sign-in, health.
const $ = (id) => document.getElementById(id);
const show = (id) => ['setup', 'login', 'home'].forEach((s) => ($(s).hidden = s !== id));
const say = (text) => ($('message').textContent = text);

async function api(path, options = {}) {
  const res = await fetch(`/api/v1${path}`, {
    ...options,
    headers: { 'content-type': 'application/json' },
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.data?.map?.((i) => `${i.field}: ${i.message}`).join('; ') || body.error?.message || res.statusText);
  return body;
}

async function home() {
  const me = await api('/auth/me').catch(() => null);
  if (!me) return show((await api('/setup')).needed ? 'setup' : 'login');
  $('who').textContent = `${me.user.username} (${me.user.role})`;
  const health = await fetch('/api/v1/health').then((r) => r.json());
  $('services').replaceChildren(
    ...health.services.map((s) => Object.assign(document.createElement('li'), { className: s.status, textContent: `${s.name}: ${s.status}` })),
  );
  show('home');
}

for (const [form, path] of [['setup', '/setup'], ['login', '/auth/login']]) {
  $(form).addEventListener('submit', async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(e.target));
    try {
      await api(path, { method: 'POST', body: data });
      say('');
      await home();
    } catch (err) {
      say(err.message);
    }
  });
}
$('logout').addEventListener('click', async () => {
  await api('/auth/logout', { method: 'POST' }).catch(() => {});
  $('who').textContent = '';
  await home();
});
home().catch((err) => say(`The box does not answer: ${err.message}`));
