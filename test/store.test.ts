import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rm } from 'node:fs/promises';
import { Store } from '../lib/store.ts';
import { tempDir } from './helpers/box.ts';

interface Thing {
  name: string;
  n: number;
}

test('collections keep typed JSON values apart, list in key order, survive a reopen', async () => {
  const dir = await tempDir();
  let store = await Store.open(dir);
  const things = store.collection<Thing>('things');
  const others = store.collection<Thing>('others');
  assert.ok(await things.isEmpty());
  await things.put('b', { name: 'bee', n: 2 });
  await things.put('a', { name: 'ay', n: 1 });
  await others.put('a', { name: 'other', n: 9 });
  assert.equal(await things.get('a'), { name: 'ay', n: 1 });
  assert.is(await things.get('zzz'), undefined);
  assert.equal(
    (await things.values()).map((t) => t.n),
    [1, 2],
  );
  assert.equal(
    (await things.values({ reverse: true, limit: 1 })).map((t) => t.n),
    [2],
  );
  assert.equal(
    (await things.values({ gte: 'b' })).map((t) => t.n),
    [2],
  );
  await things.del('b');
  await store.close();

  store = await Store.open(dir);
  assert.equal(await store.collection<Thing>('things').values(), [{ name: 'ay', n: 1 }]);
  assert.equal(await store.collection<Thing>('others').get('a'), { name: 'other', n: 9 });
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('a second process-level open of the same store is refused, not corrupted', async () => {
  const dir = await tempDir();
  const store = await Store.open(dir);
  await store.collection<Thing>('things').put('x', { name: 'x', n: 1 });
  try {
    await Store.open(dir);
    assert.unreachable('second open should fail');
  } catch (err) {
    assert.match(
      String((err as Error).message) + String((err as { cause?: Error }).cause?.message),
      /lock|LOCK|not open/i,
    );
  }
  assert.equal(await store.collection<Thing>('things').get('x'), { name: 'x', n: 1 });
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test.run();
