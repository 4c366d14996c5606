// npm run bench:sync — the sync service against the bare storage SDKs, in one run, on the local
// servers (s3rver for S3, Azurite for Azure Blob): the same set of clips uploaded by a plain loop
// of minio putObject / @azure/storage-blob uploadFile, then by the box's outbox (hashing, durable
// records, the stored-object check included). Then the bandwidth cap: the rate it held.
// Clips over sync.multipartThresholdBytes (16 MiB) go whole when the link sends them within
// sync.wholeUploadSeconds (so here, on loopback), else in parts that resume, as on a slow link:
// a second S3 line compares that path with the SDK's own multipart calls in the same parts.
// CLIPS=12 clips of CLIP_MIB=4 plus BIG=2 of 24 MiB by default; CAP_MIB=4 per second.
// Last, the restart line (sync-restarts.ts): events across RESTARTS=5 clean and crashed restarts
// against the objects in the bucket, and the box's writes per camera per hour (RESTARTS=0: none).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigSchema } from '../../appliance/config.ts';
import { createBroker } from '../../gateway/broker.ts';
import { tempDir } from '../helpers/box.ts';
import { waitUntil } from '../helpers/processes.ts';
import { Azurite, S3rver } from '../helpers/storage.ts';
import { restartLine } from './sync-restarts.ts';

const MiB = 1024 * 1024;
const CLIPS = Number(process.env['CLIPS'] ?? 12);
const CLIP_MIB = Number(process.env['CLIP_MIB'] ?? 4);
const BIG = Number(process.env['BIG'] ?? 2);
const CAP_MIB = Number(process.env['CAP_MIB'] ?? 4);

const dataDir = await tempDir('fogedge-bench-sync-');
const day = new Date().toISOString().slice(0, 10);
const files: Array<{ rel: string; bytes: number }> = [];
for (let i = 0; i < CLIPS + BIG; i++) {
  const bytes = i < CLIPS ? CLIP_MIB * MiB : 24 * MiB;
  const rel = `bench/${day}/${day}T00-00-${String(i).padStart(2, '0')}-b${i}.mp4`;
  await mkdir(path.join(dataDir, 'media', path.dirname(rel)), { recursive: true });
  await writeFile(path.join(dataDir, 'media', rel), randomBytes(bytes));
  files.push({ rel, bytes });
}
const total = files.reduce((n, f) => n + f.bytes, 0);
const abs = (rel: string) => path.join(dataDir, 'media', rel);

const az = await Azurite.create(await tempDir());
await az.client.getContainerClient('bare').create();
await az.client.getContainerClient('box').create();
const s3 = await S3rver.create(await tempDir(), 'bench');

const seconds = async (fn: () => Promise<unknown>) => {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
};

// The bare SDKs: one file after another, as a plain script would.
const bareS3 = await seconds(async () => {
  for (const f of files)
    await s3.client.fPutObject('bench', `bare/${f.rel}`, abs(f.rel), { 'Content-Type': 'video/mp4' });
});
// Like for like: the SDK sending the big clips in parts of the box's size, as the box does (so
// that an upload cut off resumes) where a plain putObject sends them whole.
const partBytes = ConfigSchema.parse({}).sync.partBytes;
const bareS3Parts = await seconds(async () => {
  const client = s3.client;
  for (const f of files) {
    const name = `bare-parts/${f.rel}`;
    if (f.bytes <= ConfigSchema.parse({}).sync.multipartThresholdBytes) {
      await client.fPutObject('bench', name, abs(f.rel), { 'Content-Type': 'video/mp4' });
      continue;
    }
    // The SDK's own multipart calls, one part after another (its putObject asks s3rver for
    // unfinished uploads first, which s3rver does not implement).
    const data = await readFile(abs(f.rel));
    const uploadID = await client.initiateNewMultipartUpload('bench', name, { 'Content-Type': 'video/mp4' });
    const etags: Array<{ part: number; etag: string }> = [];
    for (let offset = 0, part = 1; offset < data.length; offset += partBytes, part++) {
      const { etag } = await client.uploadPart(
        { bucketName: 'bench', objectName: name, uploadID, partNumber: part, headers: {} },
        data.subarray(offset, offset + partBytes),
      );
      etags.push({ part, etag });
    }
    await client.completeMultipartUpload('bench', name, uploadID, etags);
  }
});
const bareAz = await seconds(async () => {
  const container = az.client.getContainerClient('bare');
  for (const f of files) await container.getBlockBlobClient(f.rel).uploadFile(abs(f.rel));
});

// The box: recordings enqueued as the recorder closes them, sent with its default settings.
async function box(target: object, cap: number | null, sync: object = {}) {
  const config = ConfigSchema.parse({
    dataDir,
    services: ['sync'],
    mqtt: null,
    logLevel: 'warn',
    video: { rtmp: null, demoCamera: false },
    sync: { boxId: 'bench', concurrency: Number(process.env['CONCURRENCY'] ?? 2), ...sync },
  });
  const broker = createBroker(config, { logger: false });
  await broker.start();
  try {
    await broker.call('sync.addTarget', target);
    await broker.call('sync.setPolicy', { resources: ['recordings'], bandwidthBytesPerSecond: cap });
    return await seconds(async () => {
      for (const f of files)
        broker.emit('recording.segment.closed', {
          camera: 'bench',
          path: f.rel,
          start: Date.now(),
          end: Date.now(),
          bytes: f.bytes,
        });
      await waitUntil(
        'everything sent',
        async () => {
          const s = (await broker.call('sync.status')) as {
            queue: { items: number };
            targets: Array<{ sentItems: number }>;
          };
          return s.targets[0]!.sentItems === files.length && s.queue.items === 0;
        },
        600_000,
        20,
      );
    });
  } finally {
    await broker.stop();
    await rm(path.join(dataDir, 'db'), { recursive: true, force: true });
  }
}

const boxS3 = await box(s3.target('s3', { bucket: 'bench', prefix: 'box' }), null);
// The slow link's path: every clip over the threshold in parts.
const boxS3Parts = BIG
  ? await box(s3.target('s3', { bucket: 'bench', prefix: 'box-parts' }), null, { wholeUploadSeconds: 0 })
  : 0;
const boxAz = await box(az.target('azure', 'box'), null);
const cap = CAP_MIB * MiB;
const cappedSeconds = await box(az.target('azure', 'box', { prefix: 'capped' }), cap);

const rate = (s: number) => total / MiB / s;
const line = (name: string, bare: number, mine: number) =>
  console.log(
    `${name.padEnd(30)} bare SDK ${rate(bare).toFixed(1).padStart(6)} MiB/s   sync service ${rate(mine).toFixed(1).padStart(6)} MiB/s   ratio ${(bare / mine).toFixed(2)}x of bare`,
  );
console.log(
  `${files.length} clips, ${(total / MiB).toFixed(0)} MiB (${CLIPS} x ${CLIP_MIB} MiB, ${BIG} x 24 MiB), loopback servers, this machine`,
);
line('S3 (s3rver)', bareS3, boxS3);
if (BIG) line(`S3, big clips in ${partBytes / MiB} MiB parts`, bareS3Parts, boxS3Parts);
line('Azure Blob', bareAz, boxAz);
const held = rate(cappedSeconds);
console.log(
  `cap ${CAP_MIB} MiB/s: held ${held.toFixed(2)} MiB/s (${((held / CAP_MIB - 1) * 100).toFixed(1)}% off the cap)`,
);

await Promise.all([az.stop(), s3.stop()]);
await rm(dataDir, { recursive: true, force: true });
if (process.env['RESTARTS'] !== '0') await restartLine();
process.exit(0);
