// The layout rule (tools/import-graph.ts): services talk through contracts and the bus, shared
// code lives in lib/, only the gateway wires services together.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { breach, imports } from '../tools/import-graph.ts';

test('every import keeps the layout rule', () => {
  const all = imports();
  assert.ok(all.length > 300, `the import scan found ${all.length} imports: it reads the sources`);
  const broken = all.map((i) => ({ ...i, why: breach(i) })).filter((i) => i.why);
  assert.equal(
    broken.map((i) => `${i.from} -> ${i.to}: ${i.why}`),
    [],
  );
});

test('the rule catches a service reaching into another service, a cycle through the gateway, and lib/ importing a service', () => {
  assert.match(
    breach({ from: 'services/streams/camera-stream.ts', to: 'services/recorder/segment-index.ts' })!,
    /inside the recorder service/,
  );
  assert.is(breach({ from: 'services/streams/camera-stream.ts', to: 'services/recorder/recorder.schemas.ts' }), null);
  assert.match(
    breach({ from: 'services/system/system.service.ts', to: 'gateway/services.ts' })!,
    /nothing imports gateway/,
  );
  assert.match(breach({ from: 'lib/store.ts', to: 'services/events/events.schemas.ts' })!, /lib\/ is shared code/);
  assert.match(breach({ from: 'camera-agent/motion-sensor.ts', to: 'services/detector/motion.ts' })!, /own program/);
  assert.match(
    breach({ from: 'services/admp/admp.schemas.ts', to: 'services/devices/devices.service.ts' })!,
    /contract/,
  );
  assert.is(breach({ from: 'gateway/services.ts', to: 'services/usp/usp.service.ts' }), null);
  assert.match(
    breach({ from: 'gateway/http/websockets.ts', to: 'services/accounts/accounts.ts' })!,
    /inside the accounts service/,
  );
});

test.run();
