// Sends one outbox item to one target: skipped when the target already holds it (sent before a
// crash), one PUT when it goes quickly, else parts that are recorded as they land so a restart
// resumes them; then the stored object is checked against what was sent.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable, type Transform } from 'node:stream';
import type { Item, Progress } from './outbox.ts';
import { TargetError, type Chunk, type Part, type Sent, type Stored, type UploadTarget } from './targets.ts';

export interface UploadOptions {
  /** Items up to this size are always sent whole, bytes; larger ones may have gone in parts. */
  multipartThresholdBytes: number;
  /** This item is sent whole (else in parts): the caller's choice from its size and the link's rate. */
  whole: boolean;
  partBytes: number;
  /** A throttle for the bandwidth cap, or undefined for none. */
  throttle: (() => Transform) | undefined;
  /** False for an item this process enqueued and has not tried yet: it cannot be on the target. */
  mayBeThere: boolean;
  /** Persists the progress (the parts sent so far) before the next part starts. */
  save: (progress: Progress) => Promise<void>;
}

export type Outcome = 'sent' | 'already-there';

const shorter = (file: string) =>
  new TargetError('REJECTED', `local file ${file} is shorter than when it was enqueued`);

async function readChunk(
  file: string,
  offset: number,
  bytes: number,
  throttle: UploadOptions['throttle'],
): Promise<Chunk> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(bytes);
    const { bytesRead } = await handle.read(buf, 0, bytes, offset);
    if (bytesRead !== bytes) throw shorter(file);
    return {
      body: () => (throttle ? Readable.from([buf]).pipe(throttle()) : Readable.from([buf])),
      bytes,
      md5: createHash('md5').update(buf).digest(),
      sha256: createHash('sha256').update(buf).digest('hex'),
    };
  } finally {
    await handle.close();
  }
}

/** The whole file, streamed from the disk: its hashes were taken when it was enqueued. */
async function wholeFile(
  file: string,
  bytes: number,
  throttle: UploadOptions['throttle'],
  hashes: { md5: Buffer; sha256: string },
): Promise<Chunk> {
  // A short body would leave the request waiting for bytes that never come.
  if ((await stat(file)).size < bytes) throw shorter(file);
  return {
    body: () => {
      const stream = createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024 });
      return throttle ? stream.pipe(throttle()) : stream;
    },
    bytes,
    ...hashes,
  };
}

/** Each part's MD5, as a multipart upload of the file would have sent them. */
async function partMd5s(file: string, bytes: number, partBytes: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let offset = 0; offset < bytes; offset += partBytes)
    out.push((await readChunk(file, offset, Math.min(partBytes, bytes - offset), undefined)).md5);
  return out;
}

export async function uploadItem(
  target: UploadTarget,
  prefix: string,
  item: Item,
  file: string,
  progress: Progress,
  o: UploadOptions,
): Promise<Outcome> {
  const name = prefix ? `${prefix}/${item.name}` : item.name;
  const info = { contentType: item.contentType, metadata: { ...item.metadata, sha256: item.sha256 } };
  const md5 = Buffer.from(item.md5, 'base64');

  // Exactly once: a retry after a crash that came between the upload and its record finds it there.
  // (An item this process enqueued and never tried cannot be there yet: no need to ask.)
  if (!progress.upload && o.mayBeThere) {
    const there = await target.stat(name);
    if (there && there.bytes === item.bytes && there.sha256 === item.sha256) {
      const parts = item.bytes > o.multipartThresholdBytes ? await partMd5s(file, item.bytes, o.partBytes) : undefined;
      if (!target.verify({ bytes: item.bytes, sha256: item.sha256, md5, ...(parts ? { parts } : {}) }, there))
        return 'already-there';
    }
  }

  let sent: Sent;
  let stored: Stored;
  if (o.whole) {
    // The whole file was hashed when it was enqueued; the server checks the bytes against that MD5
    // (a file changed since is refused, not stored).
    stored = await target.put(name, await wholeFile(file, item.bytes, o.throttle, { md5, sha256: item.sha256 }), info);
    sent = { bytes: item.bytes, sha256: item.sha256, md5 };
  } else {
    if (!progress.upload) {
      progress.upload = { id: await target.beginMultipart(name, info), parts: [], partBytes: o.partBytes };
      await o.save(progress);
    }
    const upload = progress.upload;
    const partBytes = upload.partBytes ?? o.partBytes;
    const count = Math.ceil(item.bytes / partBytes);
    for (let n = 1; n <= count; n++) {
      if (upload.parts.some((p) => p.n === n)) continue;
      const offset = (n - 1) * partBytes;
      const chunk = await readChunk(file, offset, Math.min(partBytes, item.bytes - offset), o.throttle);
      const etag = await target.putPart(name, upload.id, n, chunk);
      upload.parts.push({ n, etag, md5: chunk.md5.toString('base64') } satisfies Part);
      await o.save(progress);
    }
    upload.parts.sort((a, b) => a.n - b.n);
    stored = await target.completeMultipart(name, upload.id, upload.parts, info, {
      bytes: item.bytes,
      sha256: item.sha256,
      md5,
    });
    sent = {
      bytes: item.bytes,
      sha256: item.sha256,
      md5,
      parts: upload.parts.map((p) => Buffer.from(p.md5, 'base64')),
    };
  }

  const mismatch = target.verify(sent, stored);
  if (mismatch) {
    delete progress.upload;
    throw new TargetError('REJECTED', `the stored object differs from what was sent (${mismatch})`);
  }
  return 'sent';
}
