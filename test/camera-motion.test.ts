// The camera's own motion events: the agent's motion sensor (synthetic frames, then the push
// ffmpeg's motion frames of the street clip) and the box making its reports events of the camera
// (reports sent on the bus as the MQTT bridge sends them; the real agent over MQTT is in
// camera-agent-process.test.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MotionSensor, MOTION_DEFAULTS, type MotionReport } from '../camera-agent/motion-sensor.ts';
import { MOTION_FRAME, VideoPush } from '../camera-agent/video-push.ts';
import { DEMO_CLIP } from '../services/cameras/cameras.service.ts';
import type { StoredEvent } from '../services/events/events.schemas.ts';
import { testBox, withAdmin, type TestBox } from './helpers/box.ts';
import { waitUntil } from './helpers/processes.ts';

const W = 64;
const H = 36;
/** A grey frame with a white square at x (none when x is null). */
const frame = (x: number | null) => {
  const data = Buffer.alloc(W * H * 3, 60);
  if (x !== null)
    for (let y = 10; y < 20; y++) for (let i = x; i < x + 10; i++) data.fill(250, (y * W + i) * 3, (y * W + i) * 3 + 3);
  return { data, width: W, height: H };
};

test('motion sensor: still frames are no event; a moving square starts one after 2 frames and ends after the quiet time', async () => {
  const sensor = new MotionSensor({ ...MOTION_DEFAULTS, quietSeconds: 0.3 });
  const reports: MotionReport[] = [];
  sensor.on('motion', (r) => reports.push(r));
  for (let i = 0; i < 5; i++) sensor.frame(frame(null));
  assert.equal(reports, [], 'nothing moves');
  sensor.frame(frame(5));
  assert.equal(reports, [], 'one frame of change is not yet motion');
  sensor.frame(frame(15));
  assert.is(reports.length, 1);
  assert.is(reports[0]!.state, 'start');
  // The square moves right in the left half: the box is relative, around where it was and is.
  const [x1, y1, x2, y2] = reports[0]!.box;
  assert.ok(x1 < 0.3 && x2 > 0.35 && x2 < 0.55 && y1 > 0.1 && y2 < 0.7, `box ${reports[0]!.box}`);
  sensor.frame(frame(30));
  assert.is(reports.length, 1, 'more motion is the same event');
  for (let i = 0; i < 3; i++) sensor.frame(frame(30));
  await waitUntil('the end', () => reports.length === 2, 2000, 20);
  assert.is(reports[1]!.state, 'end');
  assert.is(reports[1]!.id, reports[0]!.id);
  assert.ok(reports[1]!.box[2] > x2, 'the end has the whole area it moved over');
  sensor.frame(frame(5));
  sensor.frame(frame(20));
  assert.is(reports.length, 3);
  assert.is.not(reports[2]!.id, reports[0]!.id, 'a new event, a new id');
  sensor.end();
  assert.is(reports[3]!.state, 'end');
});

test('video push: the same ffmpeg hands 256x144 frames of the street clip to the sensor, and they show motion', async () => {
  const push = new VideoPush({ kind: 'file', path: DEMO_CLIP }, 'ffmpeg', () => {}, true);
  const sensor = new MotionSensor({ ...MOTION_DEFAULTS, quietSeconds: 5 });
  const reports: MotionReport[] = [];
  sensor.on('motion', (r) => reports.push(r));
  let frames = 0;
  push.on('frame', (f) => {
    assert.is(f.width, MOTION_FRAME.width);
    assert.is(f.data.length, MOTION_FRAME.width * MOTION_FRAME.height * 3);
    frames++;
    sensor.frame(f);
  });
  // FLV into /dev/null stands in for the box's RTMP server here.
  push.start('/dev/null');
  try {
    await waitUntil('motion in the street', () => reports.length > 0, 15_000, 100);
    assert.ok(frames >= 2);
    assert.ok(push.healthy, 'the push itself runs');
  } finally {
    push.stop();
  }
});

let box: TestBox;
let admin: string;
const send = (device: string, report: unknown) =>
  box.broker.broadcast('agent.message', {
    device,
    channel: 'agent/motion',
    payloadBase64: Buffer.from(typeof report === 'string' ? report : JSON.stringify(report)).toString('base64'),
  });
const motionEvents = async (camera: string) =>
  (await box.request('GET', `/api/v1/events?camera=${camera}&label=motion`, { auth: admin })).json as StoredEvent[];

test('box: a start and an end from the agent make one motion event of its camera, with its zones', async () => {
  box = await testBox();
  admin = await withAdmin(box);
  const added = await box.request('POST', '/api/v1/cameras', {
    auth: admin,
    body: {
      id: 'cam-gate',
      name: 'Gate',
      source: { kind: 'rtmp' },
      detection: {
        zones: [
          {
            name: 'path',
            points: [
              [0, 0.5],
              [0.5, 0.5],
              [0.5, 1],
              [0, 1],
            ],
          },
        ],
      },
    },
  });
  assert.is(added.status, 201, added.text);
  send('cam-gate', { id: 'k1-1', state: 'start', box: [0.1, 0.4, 0.3, 0.8], at: new Date().toISOString() });
  const [started] = await waitUntil(
    'the event',
    async () => (await motionEvents('cam-gate')).length === 1 && motionEvents('cam-gate'),
    5000,
    50,
  );
  assert.is(started!.id, 'cam-gate-m-k1-1');
  assert.is(started!.end, null);
  assert.equal(started!.zones, ['path'], 'its feet are in the path');
  send('cam-gate', { id: 'k1-1', state: 'end', box: [0.1, 0.2, 0.9, 0.45] });
  const ended = await waitUntil('ended', async () => (await motionEvents('cam-gate')).find((e) => e.end), 5000, 50);
  assert.equal(ended.box, [0.1, 0.2, 0.9, 0.45]);
  assert.equal(ended.zones, ['path'], 'zones entered stay');
  assert.ok(Date.parse(ended.end!) >= Date.parse(ended.start));
});

test('box: a start while one is open ends it; bad reports and unknown cameras make nothing', async () => {
  await new Promise((r) => setTimeout(r, 1100)); // starts closer than 1 s are a flapping sensor
  send('cam-gate', { id: 'k2-1', state: 'start', box: [0.6, 0.1, 0.7, 0.2] });
  await waitUntil(
    'k2-1',
    async () => (await motionEvents('cam-gate')).some((e) => e.id === 'cam-gate-m-k2-1'),
    5000,
    50,
  );
  await new Promise((r) => setTimeout(r, 1100));
  send('cam-gate', { id: 'k2-2', state: 'start', box: [0.6, 0.1, 0.7, 0.2] });
  await waitUntil(
    'k2-2',
    async () => (await motionEvents('cam-gate')).some((e) => e.id === 'cam-gate-m-k2-2'),
    5000,
    50,
  );
  const events = await motionEvents('cam-gate');
  assert.ok(events.find((e) => e.id === 'cam-gate-m-k2-1')!.end, 'the first was ended');
  assert.is(events.find((e) => e.id === 'cam-gate-m-k2-2')!.end, null);
  assert.equal(events.find((e) => e.id === 'cam-gate-m-k2-2')!.zones, [], 'outside every zone');

  send('cam-gate', 'not json');
  send('cam-gate', { id: 'BAD ID', state: 'start', box: [0, 0, 1, 1] });
  send('cam-gate', { id: 'k3-1', state: 'start', box: [0, 0, 2, 1] });
  send('cam-nowhere', { id: 'k3-2', state: 'start', box: [0, 0, 1, 1] });
  send('cam-gate', { id: 'k9-9', state: 'end', box: [0, 0, 1, 1] }); // an end with no start
  await new Promise((r) => setTimeout(r, 500));
  assert.is((await motionEvents('cam-gate')).length, 3, 'nothing new');
  assert.is((await motionEvents('cam-nowhere')).length, 0);
  await box.stop();
});

test.run();
