// The broker's state on disk: the box killed with SIGKILL keeps its retained messages, its
// persistent sessions and the QoS 1 messages queued for them, and the last wills of connected
// clients (sent for those that do not come back). Real clients: mqtt.js and
// Debian's mosquitto_pub / mosquitto_sub.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { tempDir } from './helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode, waitUntil } from './helpers/processes.ts';
import { connectOutcome } from './helpers/mqtt.ts';

const run = promisify(execFile);

/** The box as a process with its MQTT broker on, the admin set up: its addresses and the admin's session. */
async function boxWithAdmin(env: Record<string, string>, httpPort: number, mqttPort: number) {
  const base = `http://127.0.0.1:${httpPort}`;
  const box = await startedNode(env);
  const session = await firstAdminSession(base, 'admin', 'admin-password-1');
  return { box, base, url: `mqtt://127.0.0.1:${mqttPort}`, session };
}

test('SIGKILL of the box: retained messages, a persistent session and its queued messages (bounded, oldest dropped) survive; wills go out for clients that do not come back', async () => {
  const dataDir = await tempDir();
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(httpPort),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__MQTT: '{}',
    FOGEDGE__MQTT__HOST: '127.0.0.1',
    FOGEDGE__MQTT__PORT: String(mqttPort),
    FOGEDGE__MQTT__TLSPORT: 'null',
    FOGEDGE__MQTT__MAXQUEUEDPERCLIENT: '5',
    FOGEDGE__MQTT__WILLGRACESECONDS: '8',
  };
  const started = await boxWithAdmin(env, httpPort, mqttPort);
  const { base, url, session } = started;
  let box = started.box;
  try {
    const device = await getJson(`${base}/api/v1/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${session}` },
      body: JSON.stringify({ id: 'alarm', name: 'Alarm panel' }),
    });
    assert.is(device.status, 201, device.text);
    const secret: string = device.json.secret;
    const addDevice = async (id: string) =>
      (
        await getJson(`${base}/api/v1/devices`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${session}` },
          body: JSON.stringify({ id, name: id }),
        })
      ).json.secret as string;
    // Two devices online with their last wills when the box dies: one never comes back, one does.
    const secrets = { door: await addDevice('door'), window: await addDevice('window') };
    const withWill = (id: 'door' | 'window') =>
      mqtt.connectAsync(url, {
        clientId: id,
        username: id,
        password: secrets[id],
        reconnectPeriod: 0,
        will: { topic: `fogedge/devices/${id}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
      });
    for (const id of ['door', 'window'] as const) {
      const c = await withWill(id);
      await c.publishAsync(`fogedge/devices/${id}/status`, 'online', { qos: 1, retain: true });
      c.on('error', () => undefined);
    }

    await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-u',
      'alarm',
      '-P',
      secret,
      '-t',
      'fogedge/devices/alarm/state',
      '-m',
      'armed',
      '-r',
      '-q',
      '1',
    ]);
    // The phone app subscribes with a persistent session, then goes away.
    const phone = await mqtt.connectAsync(url, {
      clientId: 'phone-1',
      clean: false,
      username: 'admin',
      password: session,
      reconnectPeriod: 0,
    });
    await phone.subscribeAsync('fogedge/devices/alarm/siren', { qos: 1 });
    await phone.endAsync();
    const panel = await mqtt.connectAsync(url, { username: 'alarm', password: secret, reconnectPeriod: 0 });
    for (let n = 0; n < 8; n++) await panel.publishAsync('fogedge/devices/alarm/siren', `n=${n}`, { qos: 1 }); // each acknowledged
    panel.end(true);
    // No waiting: a PUBACK means the message is stored (the patch in patches/aedes+*.patch).
    const first = box;

    await box.kill('SIGKILL');
    box = await startedNode(env);
    const window = await withWill('window');
    await window.publishAsync('fogedge/devices/window/status', 'online', { qos: 1, retain: true });

    // The door never came back: its will, retained, once the grace is over; the window's old will stays unsent.
    const door = await run('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-u',
      'admin',
      '-P',
      session,
      '-t',
      'fogedge/devices/door/status',
      '-C',
      '2',
      '-W',
      '30',
    ]);
    assert.equal(door.stdout.trim().split('\n'), ['online', 'offline'], 'the retained online, then the will');
    const windowNow = await run('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-u',
      'admin',
      '-P',
      session,
      '-t',
      'fogedge/devices/window/status',
      '-C',
      '1',
      '-W',
      '10',
    ]);
    assert.is(windowNow.stdout.trim(), 'online');
    await window.endAsync();

    // A new subscriber gets the retained state from before the crash.
    const sub = await run('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-u',
      'admin',
      '-P',
      session,
      '-t',
      'fogedge/devices/alarm/state',
      '-C',
      '1',
      '-W',
      '10',
    ]);
    assert.is(sub.stdout.trim(), 'armed');

    // Another identity may not take the phone's session over.
    const borrowed = await connectOutcome(url, {
      clientId: 'phone-1',
      clean: false,
      username: 'alarm',
      password: secret,
    });
    assert.match(borrowed, /^2: /);

    // The phone comes back to its session: the newest 5 of the 8 queued messages, in order.
    const got: string[] = [];
    const back = mqtt.connect(url, {
      clientId: 'phone-1',
      clean: false,
      username: 'admin',
      password: session,
      reconnectPeriod: 0,
    });
    back.on('message', (_topic, payload) => got.push(payload.toString()));
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
      back.once('connect', resolve);
      back.once('error', reject);
    });
    assert.ok(connack.sessionPresent, 'the broker remembers the session');
    await waitUntil('the queued messages', () => got.length >= 5, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got, ['n=3', 'n=4', 'n=5', 'n=6', 'n=7']);
    await back.endAsync();
    assert.ok(
      first.lines.some((l) => /queue of offline client \\"phone-1\\" is full/.test(l)),
      'the drops were logged',
    ); // JSON log lines
  } finally {
    await box.kill('SIGTERM');
    await rm(dataDir, { recursive: true, force: true });
  }
});

test("as an attacker: a device's refused filters are not kept with its persistent session, and its wills after a crash of the box are held to its rights", async () => {
  const dataDir = await tempDir();
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(httpPort),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__MQTT: JSON.stringify({ host: '127.0.0.1', port: mqttPort, tlsPort: null, willGraceSeconds: 4 }),
  };
  const started = await boxWithAdmin(env, httpPort, mqttPort);
  const { base, url, session } = started;
  let box = started.box;
  try {
    const addDevice = async (id: string) =>
      (
        await getJson(`${base}/api/v1/devices`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${session}` },
          body: JSON.stringify({ id, name: id }),
        })
      ).json.secret as string;
    const attacker = await addDevice('attacker');
    const victim = await addDevice('victim');
    const sub = (extra: string[]) =>
      run('mosquitto_sub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(mqttPort),
        '-u',
        'attacker',
        '-P',
        attacker,
        '-i',
        'attacker-1',
        '-c',
        '-q',
        '1',
        '-v',
        '-t',
        'fogedge/devices/attacker/cmd/#',
        '-t',
        'fogedge/devices/victim/#',
        '-t',
        'fogedge/events/#',
        '-t',
        'fogedge/status',
        ...extra,
      ]).then(
        (r) => r.stdout,
        (e: { stdout: string; stderr: string; code: number }) => `${e.stdout}${e.stderr}(exit ${e.code})`,
      );
    // A persistent session asking for its own topics and, in the same SUBSCRIBE, other devices' and the events.
    await sub(['-W', '2']);
    // While it is away the victim sends something private, at QoS 1 (queued for sessions that may read it).
    await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-u',
      'victim',
      '-P',
      victim,
      '-t',
      'fogedge/devices/victim/alarm-code',
      '-m',
      'pin=4711',
      '-q',
      '1',
    ]);
    // The attacker's wills: a fake Home Assistant device (retained), a forged event, the box "offline".
    const wills = [
      {
        topic: 'homeassistant/binary_sensor/fake/config',
        payload: Buffer.from('{"name":"fake"}'),
        qos: 1 as const,
        retain: true,
      },
      {
        topic: 'fogedge/events/demo/new',
        payload: Buffer.from('{"label":"person","forged":true}'),
        qos: 1 as const,
        retain: false,
      },
      { topic: 'fogedge/status', payload: Buffer.from('offline'), qos: 1 as const, retain: true },
    ];
    for (const [i, will] of wills.entries()) {
      const c = await mqtt.connectAsync(url, {
        clientId: `attacker-w${i}`,
        username: 'attacker',
        password: attacker,
        reconnectPeriod: 0,
        will,
      });
      c.on('error', () => undefined);
    }
    await box.kill('SIGKILL');
    box = await startedNode(env);
    const watcher = await mqtt.connectAsync(url, { username: 'admin', password: session, reconnectPeriod: 0 });
    const seen: string[] = [];
    watcher.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
    await watcher.subscribeAsync(['homeassistant/#', 'fogedge/events/#', 'fogedge/status'], { qos: 1 });
    // The sweep of the dead broker's wills runs after the grace: wait for the refusals in the log.
    await waitUntil(
      'the three wills refused',
      () => box.lines.filter((l) => /MQTT will refused/.test(l)).length >= 3,
      20_000,
      200,
    );
    await new Promise((r) => setTimeout(r, 5000)); // a further sweep or two: a refused will is not tried again
    assert.is(box.lines.filter((l) => /MQTT will refused/.test(l)).length, 3, 'each refused once, no log flood');
    assert.not.ok(
      seen.some((m) => m.startsWith('homeassistant/binary_sensor/fake') || m.includes('forged')),
      `nothing forged: ${seen.join(' | ')}`,
    );
    assert.ok(
      seen.includes('fogedge/status online') && !seen.includes('fogedge/status offline'),
      `the box stays online: ${seen.join(' | ')}`,
    );
    await watcher.endAsync();

    // The attacker's session comes back: the box's status (which it may read), nothing of the victim's.
    const got = await sub(['-W', '3']);
    assert.match(
      got,
      /^fogedge\/status online$/m,
      `got: [${got}] ${box.lines
        .filter((l) => /MQTT|refused|attacker/.test(l))
        .slice(-5)
        .join('\n')}`,
    );
    assert.not.match(got, /victim|pin=4711/, got);
  } finally {
    await box.kill('SIGTERM');
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
