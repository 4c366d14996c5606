// Files kept whole or not at all (lib/durable-files.ts): what a reader finds after a writer failed
// half way is the old file, never a part of the new one, and no temporary file is left behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { writeDurably } from '../lib/durable-files.ts';
import { tempDir } from './helpers/box.ts';

test('bytes, text and streams land whole; a stream that fails half way leaves the old file as it was, and nothing else', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'nested', 'state.json');
  await writeDurably(file, '{"version":1}');
  assert.is(await readFile(file, 'utf8'), '{"version":1}');
  await writeDurably(file, Buffer.from('{"version":2}'));
  assert.is(await readFile(file, 'utf8'), '{"version":2}');
  await writeDurably(file, Readable.from([Buffer.from('{"vers'), Buffer.from('ion":3}')]));
  assert.is(await readFile(file, 'utf8'), '{"version":3}');

  const failing = new Readable({
    read() {
      this.push(Buffer.from('{"version":4, "half'));
      this.destroy(new Error('the network went away'));
    },
  });
  try {
    await writeDurably(file, failing);
    assert.unreachable('a failed stream must fail the write');
  } catch (err) {
    assert.match((err as Error).message, /network went away/);
  }
  assert.is(await readFile(file, 'utf8'), '{"version":3}', 'the old content, whole');
  assert.equal(await readdir(path.dirname(file)), ['state.json'], 'no temporary file left');

  const secret = path.join(dir, 'secret.json');
  await writeDurably(secret, '{}', { mode: 0o600 });
  assert.is((await stat(secret)).mode & 0o777, 0o600);
  await rm(dir, { recursive: true, force: true });
});

test.run();
