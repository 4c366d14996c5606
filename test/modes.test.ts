// The site's modes with real clients: a switch from the API, from MQTT (Debian's mosquitto_pub
// over 3.1.1 and 5), from Home Assistant's select entity, from the operator's command list and
// from the schedule; what a third-party client then reads (the cameras' retained switch states,
// the mode's retained state); that leaving a mode gives each camera its own settings back; who
// may switch and who may define modes; and bad input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import mqtt, { type MqttClient } from 'mqtt';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { freePort, waitUntil } from './helpers/processes.ts';
import { mosquittoPub } from './helpers/mqtt.ts';
import { withMode } from '../services/cameras/mode-overlay.ts';
import type { Camera } from '../services/cameras/cameras.schemas.ts';
import { firesAt, parseSchedule, scheduleProblem } from '../lib/schedule.ts';
import { sunTimes } from '../lib/sun.ts';

let box: TestBox;
let admin: string;
let family: string;
let port: number;
const clients: MqttClient[] = [];

const rtsp = (id: string, extra: object = {}) => ({
  id,
  name: id,
  source: { kind: 'rtsp', url: `rtsp://127.0.0.1:9/${id}` },
  ...extra,
});

/** A client of someone else's making: mqtt.js signed in as a user, recording what it reads. */
async function reader(username: string, password: string, topics: string[]) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username,
    password,
    reconnectPeriod: 0,
    protocolVersion: 5,
  });
  clients.push(client);
  const last = new Map<string, string>();
  client.on('message', (topic, payload) => last.set(topic, payload.toString()));
  await client.subscribeAsync(topics, { qos: 1 });
  return last;
}

const token = async (session: string) =>
  (await box.request('POST', '/api/v1/tokens', { auth: session, body: { name: 'mqtt' } })).json.token as string;
const activeMode = async () => (await box.request('GET', '/api/v1/modes', { auth: admin })).json.active;

test.before(async () => {
  port = await freePort();
  box = await testBox({ mqtt: { host: '127.0.0.1', port, tlsPort: null } });
  admin = await withAdmin(box);
  const created = await box.request('POST', '/api/v1/users', {
    auth: admin,
    body: { username: 'kid', password: 'kid-password-1', role: 'family' },
  });
  assert.is(created.status, 201, created.text);
  family = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'kid', password: 'kid-password-1' } }))
      .headers,
  )!;
  // The garden camera has detection off and notifications off of its own; the drive has them on.
  for (const camera of [
    rtsp('garden', { detection: { enabled: false }, notifications: false }),
    rtsp('drive', {
      detection: {
        zones: [
          {
            name: 'gate',
            points: [
              [0, 0],
              [1, 0],
              [1, 1],
            ],
          },
        ],
      },
    }),
  ]) {
    const res = await box.request('POST', '/api/v1/cameras', { auth: admin, body: camera });
    assert.is(res.status, 201, res.text);
  }
});

test.after(async () => {
  for (const c of clients) c.end(true);
  await box.stop();
});

test('a site starts in Home with the four modes; the cameras do what their own settings say', async () => {
  const res = await box.request('GET', '/api/v1/modes', { auth: family });
  assert.is(res.status, 200, res.text);
  assert.is(res.json.active.id, 'home');
  assert.equal(res.json.modes.map((m: { id: string }) => m.id).sort(), ['away', 'home', 'night', 'vacation']);
  const garden = (await box.request('GET', '/api/v1/cameras/garden', { auth: admin })).json;
  assert.is(garden.detection.enabled, false);
  assert.equal(garden.modeChanges, []);
});

test("Away from the API: another client reads the garden's detection and notifications ON; Home gives the camera's own settings back", async () => {
  const adminToken = await token(admin);
  const seen = await reader('admin', adminToken, ['fogedge/cameras/+/+/state', 'fogedge/mode/state']);
  await waitUntil(
    'garden detection OFF at first',
    () => seen.get('fogedge/cameras/garden/detection/state') === 'OFF',
    10_000,
  );
  assert.is(seen.get('fogedge/mode/state'), 'home');

  const set = await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'away' } });
  assert.is(set.status, 200, set.text);
  assert.is(set.json.changed, true);
  assert.is(set.json.active.by, 'admin');
  assert.is(set.json.active.via, 'http');
  await waitUntil(
    'garden detection ON in Away',
    () => seen.get('fogedge/cameras/garden/detection/state') === 'ON',
    10_000,
  );
  await waitUntil(
    'garden notifications ON',
    () => seen.get('fogedge/cameras/garden/notifications/state') === 'ON',
    10_000,
  );
  await waitUntil('mode state away', () => seen.get('fogedge/mode/state') === 'away', 10_000);

  // The camera keeps its own settings; the answer says what the mode changes.
  const garden = (await box.request('GET', '/api/v1/cameras/garden', { auth: admin })).json;
  assert.is(garden.detection.enabled, false);
  assert.equal(garden.modeChanges.sort(), ['detection.enabled', 'notifications']);
  // What the services act on is the mode's.
  const [spec] = (await box.broker.call('cameras.specs', { id: 'garden' })) as Camera[];
  assert.is(spec!.detection.enabled, true);

  await box.request('PUT', '/api/v1/modes/active', { auth: family, body: { mode: 'home' } });
  await waitUntil(
    'garden detection OFF again',
    () => seen.get('fogedge/cameras/garden/detection/state') === 'OFF',
    10_000,
  );
  assert.is(seen.get('fogedge/cameras/garden/notifications/state'), 'OFF');
  assert.is((await activeMode()).by, 'kid');
});

test('from MQTT: mosquitto_pub over 3.1.1 and 5 as a user switches the mode; a device and an unknown mode do not', async () => {
  const adminToken = await token(admin);
  const pub = (version: 'mqttv311' | 'mqttv5', user: string, password: string, message: string) =>
    mosquittoPub(port, { version, user, password, topic: 'fogedge/mode/set', message }).catch((e: Error) => e);
  await pub('mqttv311', 'admin', adminToken, 'night');
  await waitUntil('night from 3.1.1', async () => (await activeMode()).id === 'night', 10_000);
  const active = await activeMode();
  assert.is(active.via, 'mqtt');
  assert.is(active.by, 'admin');
  await pub('mqttv5', 'admin', adminToken, 'vacation');
  await waitUntil('vacation from 5', async () => (await activeMode()).id === 'vacation', 10_000);

  // A mode that does not exist: nothing changes (the box logs why).
  await pub('mqttv5', 'admin', adminToken, 'disco');
  // A device may publish only under its own topics: the broker refuses it.
  const device = await box.request('POST', '/api/v1/devices', { auth: admin, body: { id: 'keypad', name: 'Keypad' } });
  await pub('mqttv5', 'keypad', device.json.secret, 'home');
  // Let both reach the broker and the modes service.
  await new Promise((r) => setTimeout(r, 500));
  assert.is((await activeMode()).id, 'vacation');
  // A user's switch that is not allowed: an installer may; nobody signed out may (no connection at all).
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'home' } });
});

test("Home Assistant's select entity: discovery offers the modes; its command switches; a new mode shows up in its options", async () => {
  const adminToken = await token(admin);
  const seen = await reader('admin', adminToken, ['homeassistant/select/#']);
  const topic = 'homeassistant/select/fogedge_site/mode/config';
  await waitUntil('select discovery', () => seen.has(topic), 10_000);
  const config = JSON.parse(seen.get(topic)!);
  assert.is(config.command_topic, 'fogedge/mode/set');
  assert.is(config.state_topic, 'fogedge/mode/state');
  assert.equal([...config.options].sort(), ['away', 'home', 'night', 'vacation']);
  assert.is(config.default_entity_id, 'select.fogedge_site_mode');
  assert.ok(config.origin?.name);

  // Home Assistant sends the option the user picked to the command topic, as the user it signs in as.
  const ha = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'admin',
    password: adminToken,
    reconnectPeriod: 0,
  });
  clients.push(ha);
  await ha.publishAsync(config.command_topic, 'away');
  await waitUntil('away from Home Assistant', async () => (await activeMode()).id === 'away', 10_000);

  const saved = await box.request('PUT', '/api/v1/modes/party', {
    auth: admin,
    body: { name: 'Party', cameras: { '*': { notifications: false } } },
  });
  assert.is(saved.status, 200, saved.text);
  await waitUntil('party in the options', () => JSON.parse(seen.get(topic)!).options.includes('party'), 10_000);
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'home' } });
});

test('defining modes: per camera and for all, only the admin; a camera, zone or mode that is not there is named in the error', async () => {
  const forbidden = await box.request('PUT', '/api/v1/modes/night', {
    auth: family,
    body: { name: 'Night', cameras: {} },
  });
  assert.is(forbidden.status, 403);
  const unknownCamera = await box.request('PUT', '/api/v1/modes/night', {
    auth: admin,
    body: { name: 'Night', cameras: { porch: { detection: { enabled: true } } } },
  });
  assert.is(unknownCamera.status, 400, unknownCamera.text);
  assert.match(unknownCamera.json.error.message, /camera "porch"/);
  const unknownZone = await box.request('PUT', '/api/v1/modes/night', {
    auth: admin,
    body: { name: 'Night', cameras: { drive: { review: { alertZones: ['pool'] } } } },
  });
  assert.is(unknownZone.status, 400);
  assert.match(unknownZone.json.error.message, /zone "pool"/);
  const badLabels = await box.request('PUT', '/api/v1/modes/night', {
    auth: admin,
    body: { name: 'Night', cameras: { drive: { recording: { mode: 'sometimes' } } } },
  });
  assert.is(badLabels.status, 422);
  // Night: the drive alerts on people at the gate only, and records everything.
  const night = await box.request('PUT', '/api/v1/modes/night', {
    auth: admin,
    body: {
      name: 'Night',
      cameras: {
        drive: { review: { alertLabels: ['person'], alertZones: ['gate'] }, recording: { mode: 'continuous' } },
      },
    },
  });
  assert.is(night.status, 200, night.text);
  assert.is((await box.request('DELETE', '/api/v1/modes/home', { auth: admin })).status, 409);
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'party' } });
  const removeActive = await box.request('DELETE', '/api/v1/modes/party', { auth: admin });
  assert.is(removeActive.status, 409);
  assert.match(removeActive.json.error.message, /switch to another/);
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'night' } });
  const [drive] = (await box.broker.call('cameras.specs', { id: 'drive' })) as Camera[];
  assert.equal(drive!.review.alertZones, ['gate']);
  assert.equal(drive!.review.alertLabels, ['person']);
  assert.is((await box.request('DELETE', '/api/v1/modes/party', { auth: admin })).status, 200);
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'home' } });
});

test("the operator's command list has the mode: the ADMP caller may switch it", async () => {
  const { REMOTE_ACTIONS } = await import('../services/admp/admp.schemas.ts');
  assert.ok((REMOTE_ACTIONS as readonly string[]).includes('modes.set'));
  const { ADMP_CALLER } = await import('../services/admp/admp.service.ts');
  const answer = (await box.broker.call('modes.set', { mode: 'away' }, { meta: { caller: ADMP_CALLER } })) as {
    active: { by: string; via: string };
  };
  assert.is(answer.active.via, 'admp');
  assert.is(answer.active.by, 'admp');
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'home' } });
});

test('the schedule switches at the minute it names; a cron expression that does not parse is refused, naming the field', async () => {
  const bad = await box.request('PUT', '/api/v1/mode-schedule', {
    auth: admin,
    body: { entries: [{ cron: '0 25 * * *', mode: 'night' }] },
  });
  assert.is(bad.status, 422);
  assert.match(JSON.stringify(bad.json.error.data), /entries\.0\.cron/);
  assert.match(bad.json.error.message, /hour "25"/);
  const unknown = await box.request('PUT', '/api/v1/mode-schedule', {
    auth: admin,
    body: { entries: [{ cron: '* * * * *', mode: 'disco' }] },
  });
  assert.is(unknown.status, 400);

  // The next local minute: the box switches to Night at it, by the schedule.
  const next = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 60_000);
  const cron = `${next.getMinutes()} ${next.getHours()} * * *`;
  const set = await box.request('PUT', '/api/v1/mode-schedule', {
    auth: admin,
    body: { entries: [{ cron, mode: 'night' }] },
  });
  assert.is(set.status, 200, set.text);
  assert.is((await activeMode()).id, 'home');
  await waitUntil('night by the schedule', async () => (await activeMode()).id === 'night', 75_000);
  const active = await activeMode();
  assert.is(active.via, 'schedule');
  assert.ok(
    Date.parse(active.since) >= next.getTime(),
    `switched at ${active.since}, not before ${next.toISOString()}`,
  );
  await box.request('PUT', '/api/v1/mode-schedule', { auth: admin, body: { entries: [] } });
});

test("who is told: a mode that names its users notifies only them; the garden's own 'no notifications' is back in Home", async () => {
  for (const session of [admin, family])
    assert.is(
      (await box.request('PUT', '/api/v1/auth/me/notifications', { auth: session, body: { enabled: true } })).status,
      200,
    );
  const phones = {
    admin: await reader('admin', await token(admin), ['fogedge/users/admin/notifications']),
    kid: await reader('kid', await token(family), ['fogedge/users/kid/notifications']),
  };
  const saved = await box.request('PUT', '/api/v1/modes/away', {
    auth: admin,
    body: {
      name: 'Away',
      cameras: { '*': { detection: { enabled: true }, notifications: true } },
      notifyUsers: ['admin'],
    },
  });
  assert.is(saved.status, 200, saved.text);
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'away' } });
  let n = 0;
  const person = async (camera: string) => {
    const id = `p-${camera}-${++n}`;
    const e = { id, camera, label: 'person', topScore: 0.9, box: [0.1, 0.1, 0.3, 0.9], zones: [], stationary: false };
    const start = new Date().toISOString();
    await box.broker.call('events.record', { ...e, type: 'start', start, end: null });
    await box.broker.call('events.record', { ...e, type: 'end', start, end: new Date().toISOString() });
    return id;
  };
  // In Away the garden notifies (the mode turns it on), and only the admin is told.
  const first = await person('garden');
  await waitUntil(
    'the admin told of the garden',
    () => phones.admin.get('fogedge/users/admin/notifications')?.includes(first),
    10_000,
  );
  await new Promise((r) => setTimeout(r, 500));
  assert.not.ok(phones.kid.has('fogedge/users/kid/notifications'), 'the kid is not told in Away');
  // Home: everyone by their rules, and the garden is quiet again (its own setting).
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'home' } });
  const drive = await person('drive');
  await waitUntil(
    'the kid told of the drive',
    () => phones.kid.get('fogedge/users/kid/notifications')?.includes(drive),
    10_000,
  );
  const garden = await person('garden');
  await new Promise((r) => setTimeout(r, 500));
  assert.not.ok(phones.admin.get('fogedge/users/admin/notifications')?.includes(garden), 'the garden is quiet in Home');
});

test('the mode outlives a restart', async () => {
  await box.request('PUT', '/api/v1/modes/active', { auth: admin, body: { mode: 'away' } });
  const { dataDir } = box;
  await box.stop({ keepData: true });
  box = await testBox({ dataDir, mqtt: { host: '127.0.0.1', port, tlsPort: null } });
  admin = box.sessionOf(
    (await box.request('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'admin-password-1' } }))
      .headers,
  )!;
  assert.is((await activeMode()).id, 'away');
  const [garden] = (await box.broker.call('cameras.specs', { id: 'garden' })) as Camera[];
  assert.is(garden!.detection.enabled, true);
});

test('a mode laid over a camera: its entry for all, then its own; what it leaves out stays', () => {
  const camera = {
    id: 'c',
    detection: { enabled: false, labels: ['person'] },
    recording: { mode: 'events', retainDays: 3 },
    review: { alertLabels: ['car'], alertZones: [], requiredZones: [] },
    notifications: true,
  } as unknown as Camera;
  const mode = {
    id: 'm',
    name: 'M',
    notifyUsers: null,
    cameras: {
      '*': { detection: { enabled: true }, notifications: false },
      c: { notifications: true, recording: { mode: 'off' as const } },
    },
  };
  const out = withMode(camera, mode);
  assert.equal(out.detection, { enabled: true, labels: ['person'] });
  assert.equal(out.recording, { mode: 'off', retainDays: 3 });
  assert.is(out.notifications, true);
  assert.equal(camera.detection.enabled, false, 'the camera itself is not changed');
});

test('schedules: cron fields, ranges, steps, names, both day fields; sunrise and sunset', () => {
  const at = (iso: string) => new Date(iso);
  const s = parseSchedule('30 22 * * mon-fri');
  assert.ok(firesAt(s, at('2026-12-07T22:30:00'))); // a Monday, local time
  assert.not.ok(firesAt(s, at('2026-12-06T22:30:00'))); // a Sunday
  assert.ok(firesAt(parseSchedule('*/15 * * * *'), at('2026-12-06T10:45:00')));
  assert.not.ok(firesAt(parseSchedule('*/15 * * * *'), at('2026-12-06T10:46:00')));
  assert.ok(firesAt(parseSchedule('0 8 1 * 0'), at('2026-12-06T08:00:00')), 'either day field (the 6th is a Sunday)');
  assert.ok(firesAt(parseSchedule('0 0 * * 7'), at('2026-12-06T00:00:00')), '7 is Sunday too');
  assert.match(scheduleProblem('0 22 * *')!, /has 4 fields/);
  assert.match(scheduleProblem('61 * * * *')!, /minute "61"/);
  assert.match(scheduleProblem('* * * * fun')!, /day of week "fun"/);
  assert.match(scheduleProblem('5-1 * * * *')!, /backwards/);
  // London at midsummer: about 03:43 and 20:21 UTC.
  const london = sunTimes(at('2026-06-21T12:00:00Z'), 51.5, -0.12)!;
  assert.ok(
    Math.abs(london.sunrise.getTime() - Date.parse('2026-06-21T03:43:00Z')) < 3 * 60_000,
    london.sunrise.toISOString(),
  );
  assert.ok(
    Math.abs(london.sunset.getTime() - Date.parse('2026-06-21T20:21:00Z')) < 3 * 60_000,
    london.sunset.toISOString(),
  );
  assert.is(sunTimes(at('2026-06-21T12:00:00Z'), 78, 15), null, 'midnight sun at Svalbard');
});

test.run();
