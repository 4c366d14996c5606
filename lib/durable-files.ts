// Files that must be there whole after a crash, or not at all: written beside their place,
// flushed to the disk, renamed into place, and their folder flushed so the rename itself lasts.
// One way for everything the box and the camera agent keep in files (outbox documents,
// provisioning, firmware images and slots).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

async function flush(file: string, flags: 'r' | 'r+'): Promise<void> {
  const handle = await open(file, flags);
  await handle.sync().finally(() => handle.close());
}

/** A finished file (already complete at `temp`) flushed, renamed to `file`, and its folder flushed. */
export async function commitFile(temp: string, file: string): Promise<void> {
  await flush(temp, 'r+');
  await rename(temp, file);
  await flush(path.dirname(file), 'r');
}

/** Writes `data` (bytes, text, or a stream) to `file`, whole or not at all. `mode`: the file's permissions. */
export async function writeDurably(
  file: string,
  data: string | Buffer | Readable,
  options: { mode?: number } = {},
): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // Unique, so two writers of one file never share a temp file; the last rename wins.
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    if (typeof data === 'string' || Buffer.isBuffer(data)) {
      const handle = await open(temp, 'w', options.mode ?? 0o644);
      try {
        await handle.writeFile(data);
      } finally {
        await handle.close();
      }
    } else {
      await pipeline(data, createWriteStream(temp, { mode: options.mode ?? 0o644 }));
    }
    await commitFile(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}
