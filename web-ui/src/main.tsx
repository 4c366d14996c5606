// The homeowner's web app: a shell with the pages each role may open.
import type { ComponentType } from 'preact';
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { LocationProvider, Router, Route, useLocation } from 'preact-iso';
import { api, loadMe, me, online, sessionLost } from './api.ts';
import { live, startUpdates, stopUpdates } from './updates.ts';
import { SignIn, SessionDialog, Setup } from './pages/sign-in.tsx';
import { LivePage, CameraLivePage } from './pages/live.tsx';
import { EventsPage } from './pages/events.tsx';
import { ReviewPage } from './pages/review.tsx';
import { RecordingsPage } from './pages/recordings.tsx';
import { CamerasPage, CameraEditPage } from './pages/cameras.tsx';
import { DevicesPage } from './pages/devices.tsx';
import { AutomationsPage } from './pages/automations.tsx';
import { UsersPage } from './pages/users.tsx';
import { SettingsPage } from './pages/settings.tsx';
import { SystemPage } from './pages/system.tsx';
import { Guard, useLoad } from './components/ui.tsx';
import { NotPaired, PairPage } from './pages/away.tsx';
import {
  connect,
  goAway,
  listenToWorker,
  pairingInLink,
  reach,
  savedBox,
  serviceWorker,
  type RemoteBox,
} from './remote.ts';
import type { Permission } from '../../lib/permissions.ts';
import './style.css';

const NAV: Array<[string, string, Permission]> = [
  ['/', 'Live', 'live.view'],
  ['/review', 'Review', 'events.view'],
  ['/events', 'Events', 'events.view'],
  ['/recordings', 'Recordings', 'recordings.view'],
  ['/cameras', 'Cameras', 'cameras.manage'],
  ['/automations', 'Automations', 'automations.manage'],
  ['/devices', 'Devices', 'devices.manage'],
  ['/users', 'Users', 'users.manage'],
  ['/system', 'System', 'system.view'],
  ['/settings', 'Me', 'self'],
];

function guarded<P extends object>(permission: Permission, Component: ComponentType<P>) {
  return (props: P) => (
    <Guard permission={permission}>
      <Component {...props} />
    </Guard>
  );
}

const Live = guarded('live.view', LivePage);
const CameraLive = guarded('live.view', CameraLivePage);
const Events = guarded('events.view', EventsPage);
const Review = guarded('events.view', ReviewPage);
const Recordings = guarded('recordings.view', RecordingsPage);
const Cameras = guarded('cameras.manage', CamerasPage);
const CameraEdit = guarded('cameras.manage', CameraEditPage);
const Devices = guarded('devices.manage', DevicesPage);
const Automations = guarded('automations.manage', AutomationsPage);
const Users = guarded('users.manage', UsersPage);
const System = guarded('system.view', SystemPage);
const Settings = guarded('self', SettingsPage);

function Shell() {
  const { path } = useLocation();
  const who = me.value!;
  const signOut = async () => {
    await api('/auth/logout', { method: 'POST' }).catch(() => undefined);
    stopUpdates();
    me.value = null;
  };
  const open = (href: string) => (href === '/' ? path === '/' || path.startsWith('/live/') : path.startsWith(href));
  return (
    <>
      <header class="top">
        <a class="brand" href="/">
          FogEdge
        </a>
        <nav>
          {NAV.filter(([, , p]) => who.permissions.includes(p)).map(([href, label]) => (
            <a href={href} class={open(href) ? 'active' : ''} aria-current={open(href) ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
        {reach.value.mode === 'away' && (
          <span class="reach" title="Through your operator, end to end encrypted">
            Away: {reach.value.path === 'relay' ? 'relayed' : 'direct'}
          </span>
        )}
        <span class="who" title={live.value ? 'live updates on' : 'live updates reconnecting'}>
          <span class={live.value ? 'dot on' : 'dot'} /> {who.user.username} ({who.user.role})
          <button class="link" onClick={signOut}>
            Sign out
          </button>
        </span>
      </header>
      {!online.value && (
        <div class="banner" role="alert">
          The box does not answer. Retrying… what you entered stays here.
        </div>
      )}
      <main>
        <Router>
          <Route path="/" component={Live} />
          <Route path="/live/:id" component={CameraLive} />
          <Route path="/review" component={Review} />
          <Route path="/events" component={Events} />
          <Route path="/recordings" component={Recordings} />
          <Route path="/cameras" component={Cameras} />
          <Route path="/cameras/new" component={CameraEdit} />
          <Route path="/cameras/:id" component={CameraEdit} />
          <Route path="/automations" component={Automations} />
          <Route path="/devices" component={Devices} />
          <Route path="/users" component={Users} />
          <Route path="/system" component={System} />
          <Route path="/settings" component={Settings} />
          <Route
            default
            component={() => (
              <p class="page">
                No such page. <a href="/">Back to live view</a>
              </p>
            )}
          />
        </Router>
      </main>
      {sessionLost.value && <SessionDialog />}
    </>
  );
}

function App() {
  useEffect(() => {
    loadMe().catch(() => (me.value = null));
  }, []);
  useEffect(() => {
    if (me.value) startUpdates();
  }, [me.value?.user.username]);
  if (me.value === undefined)
    return <p class="page">{online.value ? 'Loading…' : 'The box does not answer. Retrying…'}</p>;
  if (me.value === null) return <Entry />;
  return <Shell />;
}

/** Not signed in: the first-run setup on a new box, the sign-in page otherwise. */
function Entry() {
  const { data } = useSetupNeeded();
  if (data === undefined) return <p class="page">Loading…</p>;
  return data ? <Setup /> : <SignIn />;
}

function useSetupNeeded() {
  return useLoad(async () => (await api<{ needed: boolean }>('/setup', { anonymous: true })).needed);
}

const mount = (node: preact.ComponentChild) => render(node, document.getElementById('app')!);
const app = (
  <LocationProvider>
    <App />
  </LocationProvider>
);

/** Away: the tunnel to the box, made again (with a growing wait) whenever it is lost. */
async function reachAway(box: RemoteBox, wait = 1000): Promise<void> {
  try {
    const t = await connect(box);
    t.onclose = () => {
      online.value = false;
      stopUpdates();
      void reachAway(box);
    };
    await goAway(t);
    online.value = true;
    if (me.value) startUpdates();
  } catch (err) {
    online.value = false;
    if (/not paired|NOT_PAIRED/.test((err as Error).message)) {
      mount(<NotPaired problem={(err as Error).message} />);
      return;
    }
    await new Promise((go) => setTimeout(go, wait));
    return reachAway(box, Math.min(wait * 2, 30_000));
  }
}

/** At home the box serves this page; anywhere else (the operator's static host, the installed app) it is reached through the tunnel. */
async function start(): Promise<void> {
  listenToWorker();
  // An invitation link opened over the app (same page, new #fragment): start again with it.
  window.addEventListener('hashchange', () => pairingInLink() && location.reload());
  const atBox = await fetch('/api/v1/health', { cache: 'no-store' })
    .then((r) => (r.headers.get('content-type') ?? '').includes('json'))
    .catch(() => false);
  if (atBox) return mount(app);
  await serviceWorker();
  const pairing = pairingInLink();
  if (pairing) return mount(<PairPage pairing={pairing} />);
  const box = await savedBox().catch(() => undefined);
  if (!box) return mount(<NotPaired />);
  mount(<p class="page">Reaching your box…</p>);
  await reachAway(box);
  if (reach.value.mode === 'away') mount(app);
}

void start();
