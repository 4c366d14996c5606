// Real nats-server (Debian) and three real FogEdge node processes:
//   gw: api only · b: every other service · c: system (a second instance)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { WebSocket } from 'ws';
import { tempDir } from './helpers/box.ts';
import { RtspCamera } from './helpers/video.ts';
import { startsWithKeyframe } from '../lib/media/fragmented-mp4.ts';
import { freePort, getJson, NatsServer, startedNode, waitUntil, type Proc } from './helpers/processes.ts';

let nats: NatsServer;
let dataDir = '';
let base = '';
let env: Record<string, string> = {};
const nodes: Record<string, Proc> = {};
let session = '';
let camera: RtspCamera | undefined;
const B_SERVICES =
  'accounts,system,cameras,streams,recorder,events,devices,mqtt,sync,admp,usp,modes,automations,webrtc,push';

const startNode = async (id: string, services: string) => {
  // Each node its own data folder, as on separate machines: nothing goes through a shared disk.
  nodes[id] = await startedNode({ ...env, FOGEDGE_DATA_DIR: path.join(dataDir, id), NODEID: id, SERVICES: services });
};
const startDetector = async (id: string) => {
  nodes[id] = await startedNode({ ...env, FOGEDGE__DETECTOR__ENABLED: 'true', NODEID: id, SERVICES: 'detector' });
};
const me = () => getJson(`${base}/api/v1/auth/me`, { headers: { authorization: `Bearer ${session}` } });
const health = () => getJson(`${base}/api/v1/health`);
const availableNodes = (h: { json: { nodes: Array<{ id: string; available: boolean }> } }) =>
  h.json.nodes
    .filter((n) => n.available)
    .map((n) => n.id)
    .sort()
    .join(',');

test.before(async () => {
  nats = new NatsServer(await freePort());
  await nats.start();
  dataDir = await tempDir();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  env = {
    TRANSPORTER: nats.url,
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    // The bus's defaults: a lost node is noticed within ~3 s (heartbeats), calls fail fast.
    FOGEDGE__VIDEO__DEMOCAMERA: 'false',
    FOGEDGE__VIDEO__SEGMENTSECONDS: '2',
  };
  await Promise.all([
    startNode('b', B_SERVICES),
    startNode('c', 'system'),
    startNode('gw', 'api'),
    startDetector('d1'),
    startDetector('d2'),
  ]);
});

test.after(async () => {
  await Promise.all(Object.values(nodes).map((n) => n.kill('SIGKILL')));
  await nats.stop();
  await camera?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

test('the nodes find each other over NATS; health lists every node and service', async () => {
  const h = await waitUntil('a healthy cluster', async () => {
    const res = await health();
    return res.status === 200 && availableNodes(res) === 'b,c,d1,d2,gw' ? res : undefined;
  });
  const system = h.json.services.find((s: { name: string }) => s.name === 'system');
  assert.equal(system.instances.map((i: { node: string }) => i.node).sort(), ['b', 'c']);
  assert.equal(h.json.services.find((s: { name: string }) => s.name === 'accounts').instances[0].node, 'b');
});

test('a call crosses processes: the gateway has no accounts service, node b answers', async () => {
  const res = await getJson(`${base}/api/v1/setup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'cluster-password' }),
  });
  assert.is(res.status, 201, res.text);
  const tok = await getJson(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'cluster-password' }),
  });
  session = /fogedge_session=([^;]+)/.exec(tok.headers.get('set-cookie') ?? '')![1]!;
  const who = await me();
  assert.is(who.status, 200);
  assert.is(who.json.user.username, 'admin');
  // Validation runs on node b and its 422 comes back intact.
  const bad = await getJson(`${base}/api/v1/users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${session}`, 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'x' }),
  });
  assert.is(bad.status, 422);
});

test("live view crosses processes: the gateway relays the fMP4 that node b's ffmpeg makes", async () => {
  camera = new RtspCamera(await freePort());
  await camera.start();
  const auth = { authorization: `Bearer ${session}`, 'content-type': 'application/json' };
  const add = await getJson(`${base}/api/v1/cameras`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ id: 'yard', name: 'Yard', source: { kind: 'rtsp', url: camera.url() } }),
  });
  assert.is(add.status, 201, add.text);
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/cameras/yard/live`, {
    headers: { authorization: `Bearer ${session}` },
  });
  const messages: Array<Buffer | string> = [];
  ws.on('message', (data: Buffer, binary) => messages.push(binary ? data : data.toString()));
  await waitUntil('live fragments from node b', () => messages.length >= 6, 20_000);
  assert.match(String(messages[0]), /"mime":"video\/mp4; codecs=\\"avc1\./);
  assert.is((messages[1] as Buffer).toString('latin1', 4, 8), 'ftyp');
  assert.ok(startsWithKeyframe(messages[2] as Buffer, messages[1] as Buffer));
  ws.close();
  // Recordings too come through the gateway from node b's disk: a segment by byte range, a clip.
  const t0 = new Date(Date.now() - 60_000).toISOString();
  const segs = await waitUntil(
    'a closed segment on node b',
    async () => {
      const r = await getJson(
        `${base}/api/v1/cameras/yard/segments?from=${t0}&to=${new Date(Date.now() + 60_000).toISOString()}`,
        { headers: auth },
      );
      return r.json.length >= 2 ? r.json : undefined;
    },
    20_000,
    500,
  );
  const part = await fetch(`${base}/api/v1/recordings/${segs[0].path}`, { headers: { ...auth, range: 'bytes=0-99' } });
  assert.is(part.status, 206);
  assert.is(part.headers.get('content-range'), `bytes 0-99/${segs[0].bytes}`);
  const bytes = Buffer.from(await part.arrayBuffer());
  assert.is(bytes.length, 100);
  assert.is(bytes.toString('latin1', 4, 8), 'ftyp');
  const clip = await fetch(`${base}/api/v1/cameras/yard/clip.mp4?from=${segs[0].start}&to=${segs[1].end}`, {
    headers: auth,
  });
  assert.is(clip.status, 200);
  const mp4 = Buffer.from(await clip.arrayBuffer());
  assert.is(mp4.length, Number(clip.headers.get('content-length')));
  assert.ok(mp4.includes(Buffer.from('moov')));
  await getJson(`${base}/api/v1/cameras/yard`, { method: 'DELETE', headers: auth });
});

test('detection on other processes: two detector nodes share the cameras; one dies, the other takes its camera', async () => {
  const auth = { authorization: `Bearer ${session}`, 'content-type': 'application/json' };
  const add = await getJson(`${base}/api/v1/cameras`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({
      id: 'street',
      name: 'Street',
      source: { kind: 'rtsp', url: camera!.url() },
      detection: { labels: ['person'] },
    }),
  });
  assert.is(add.status, 201, add.text);
  const events = async (query = '') =>
    (await getJson(`${base}/api/v1/events?camera=street${query}`, { headers: auth })).json as Array<{ start: string }>;
  await waitUntil(
    'person events made on a detector node',
    async () => ((await events('&label=person')).length > 0 ? true : undefined),
    40_000,
    500,
  );
  // Which node has the camera: ask both (calls go round-robin).
  const owners = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const s = (await getJson(`${base}/api/v1/detector/status`, { headers: auth })).json;
    if (s.cameras?.street) owners.add(s.node);
  }
  assert.is(owners.size, 1, `one node detects the camera (${[...owners].join(', ')})`);
  const [owner] = [...owners];
  const other = owner === 'd1' ? 'd2' : 'd1';
  await nodes[owner!]!.kill('SIGKILL');
  const status = await waitUntil(
    `${other} takes the camera`,
    async () => {
      const s = (await getJson(`${base}/api/v1/detector/status`, { headers: auth })).json;
      return s.node === other && s.cameras?.street?.frames > 0 ? s : undefined;
    },
    30_000,
    500,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${nodes[other]!.lines.slice(-15).join('\n')}`);
  });
  const takenAt = new Date(Date.now() + 1000).toISOString();
  await waitUntil(
    `events from ${other}`,
    async () => ((await events(`&from=${takenAt}`)).length > 0 ? true : undefined),
    40_000,
    500,
  );
  assert.ok(status.cameras.street.frames > 0);
  const after = (await getJson(`${base}/api/v1/detector/status`, { headers: auth })).json;
  assert.is(after.node, other);
  assert.ok(after.cameras.street.inferences > 0);
  await getJson(`${base}/api/v1/cameras/street`, { method: 'DELETE', headers: auth });
  await startDetector(owner!);
});

/** A live viewer through the gateway, with the moment its socket closed and why. */
function liveViewer(cameraId: string) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/cameras/${cameraId}/live`, {
    headers: { authorization: `Bearer ${session}` },
  });
  const viewer = { fragments: 0, closedAt: 0, code: 0 };
  ws.on('message', (_data, binary) => binary && viewer.fragments++);
  ws.on('close', (code) => Object.assign(viewer, { closedAt: Date.now(), code }));
  return viewer;
}

test('SIGKILL of node b: accounts calls fail with 503 within seconds; an open live view is closed so its player reconnects; system calls go to node c', async () => {
  const auth = { authorization: `Bearer ${session}`, 'content-type': 'application/json' };
  const add = await getJson(`${base}/api/v1/cameras`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ id: 'gate', name: 'Gate', source: { kind: 'rtsp', url: camera!.url() } }),
  });
  assert.is(add.status, 201, add.text);
  const viewer = liveViewer('gate');
  await waitUntil('live fragments from node b', () => viewer.fragments >= 4, 20_000);

  await nodes['b']!.kill('SIGKILL');
  const t0 = Date.now();
  const res = await me();
  const elapsed = Date.now() - t0;
  assert.is(res.status, 503, res.text);
  assert.is(res.json.error.type, 'SERVICE_UNAVAILABLE', res.text);
  // Lost after 3 s without a heartbeat, checked 4 times a second (gateway/broker.ts lostNodeWatch).
  assert.ok(elapsed < 5000, `a 503 took ${elapsed} ms`);
  await waitUntil('the live socket closed', () => viewer.closedAt > 0, 10_000, 100);
  assert.ok(viewer.closedAt - t0 < 8000, `closed ${viewer.closedAt - t0} ms after the node died`);
  assert.is(viewer.code, 1011);

  // Each node notices the loss by its own heartbeat clock; wait until the answering one has.
  const byName = await waitUntil('node b to be seen as lost', async () => {
    const r = await health();
    const services = Object.fromEntries(r.json.services.map((s: { name: string }) => [s.name, s]));
    const systemNodes = services.system.instances.map((i: { node: string }) => i.node).join(',');
    return r.status === 503 && availableNodes(r) === 'c,d1,d2,gw' && systemNodes === 'c' ? services : undefined;
  });
  assert.is(byName.accounts.status, 'down');
  assert.equal(byName.accounts.instances, []);
  assert.is(byName.system.status, 'ok');
  // Once b is known lost, the answer is immediate.
  const t1 = Date.now();
  assert.is((await me()).status, 503);
  assert.ok(Date.now() - t1 < 2000);
});

test('node b back: its LevelDB still holds the admin and the session', async () => {
  await startNode('b', B_SERVICES);
  const who = await waitUntil('accounts back on node b', async () => {
    const r = await me();
    return r.status === 200 ? r : undefined;
  });
  assert.is(who.json.user.username, 'admin');
});

test('nats-server restarted: calls answer 503 at once while it is down, an open live view is closed, every node reconnects by itself', async () => {
  const viewer = liveViewer('gate');
  await waitUntil('live fragments again from node b', () => viewer.fragments >= 4, 30_000, 100);
  await nats.stop();
  await new Promise((r) => setTimeout(r, 300)); // the nats client sees the socket go
  const t0 = Date.now();
  const down = await me();
  assert.is(down.status, 503, down.text);
  assert.match(down.json.error.message, /bus is disconnected/);
  assert.ok(Date.now() - t0 < 1000, `a 503 took ${Date.now() - t0} ms`);
  assert.is((await health()).status, 503, 'health answers, without the bus');
  await waitUntil('the live socket closed', () => viewer.closedAt > 0, 10_000, 100);
  assert.is(viewer.code, 1011);
  await new Promise((r) => setTimeout(r, 1500));
  await nats.start();
  await waitUntil(
    'the cluster to heal after the NATS restart',
    async () => {
      const [who, h] = await Promise.all([me(), health()]);
      return who.status === 200 && h.status === 200 && availableNodes(h) === 'b,c,d1,d2,gw';
    },
    30_000,
    250,
  );
});

test.run();
