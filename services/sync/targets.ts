// The two kinds of cloud target behind one small interface: a single PUT for small objects,
// a multipart (S3) or block (Azure) upload for large ones that resumes from the parts already
// sent, and a check after upload that the stored object is the one we sent.
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import type * as MinioTypes from 'minio';
import { lazyPackage } from '../../lib/lazy-package.ts';
import type { Target } from './sync.schemas.ts';
import type { FailureCode } from './sync.schemas.ts';

// Loaded by the first target of their kind: a box without one never pays for them.
const minio = lazyPackage<typeof import('minio')>('minio');
const azure = lazyPackage<typeof import('@azure/storage-blob')>('@azure/storage-blob');

/** One chunk to send: its bytes come from `body()`, a fresh (and perhaps throttled) stream each try. */
export interface Chunk {
  body: () => Readable;
  bytes: number;
  md5: Buffer;
  sha256: string;
}

export interface ObjectInfo {
  contentType: string;
  /** Stored as user metadata (x-amz-meta-*, x-ms-meta-*): lower-case keys, ASCII values. */
  metadata: Record<string, string>;
}

export interface Part {
  n: number;
  etag: string;
  md5: string; // base64
}

/** What we know of what we sent, to check the stored object against. */
export interface Sent {
  bytes: number;
  sha256: string;
  md5: Buffer;
  /** For multipart uploads: each part's MD5, in order. */
  parts?: Buffer[];
}

/** What the server says it stored: from the upload's answer, or a HEAD. */
export interface Stored {
  bytes?: number;
  /** S3's ETag (an MD5 of the bytes, or of the parts' MD5s). */
  etag?: string;
  /** Azure's Content-MD5, base64. */
  md5?: string;
  /** Our own sha256 metadata. */
  sha256?: string;
}

export interface UploadTarget {
  readonly id: string;
  /** Reaches the bucket or container and writes and deletes a probe object there. */
  check(probeName: string): Promise<void>;
  /** What is stored under the name, or undefined when nothing is. */
  stat(name: string): Promise<Stored | undefined>;
  put(name: string, chunk: Chunk, info: ObjectInfo): Promise<Stored>;
  beginMultipart(name: string, info: ObjectInfo): Promise<string>;
  putPart(name: string, uploadId: string, n: number, chunk: Chunk): Promise<string>;
  completeMultipart(name: string, uploadId: string, parts: Part[], info: ObjectInfo, whole: Sent): Promise<Stored>;
  /** Undefined when what the server stored is what was sent (by its content hash); else what differs. */
  verify(sent: Sent, stored: Stored): string | undefined;
  /** The "folders" just under a prefix that ends in '/' (S3 common prefixes, Azure virtual directories), each ending in '/'. */
  folders(prefix: string): Promise<string[]>;
  /** Names of the objects under a prefix, at any depth. */
  names(prefix: string): Promise<string[]>;
  /** Deletes an object; one already gone is not an error. */
  remove(name: string): Promise<void>;
  close(): void;
}

/** The checks both kinds share: size and our sha256 metadata, where the server told them. */
function differs(sent: Sent, stored: Stored): string | undefined {
  if (stored.bytes !== undefined && stored.bytes !== sent.bytes) return `size ${stored.bytes}, sent ${sent.bytes}`;
  if (stored.sha256 !== undefined && stored.sha256 !== sent.sha256)
    return `sha256 metadata ${stored.sha256}, sent ${sent.sha256}`;
  return undefined;
}

/** Why a call to a target failed, in the words an installer can act on. */
export type { FailureCode } from './sync.schemas.ts';

export class TargetError extends Error {
  constructor(
    readonly code: FailureCode,
    message: string,
  ) {
    super(message);
    this.name = 'TargetError';
  }

  /** The target itself is unusable for now (not just this object): back off the whole target. */
  get targetWide(): boolean {
    return this.code !== 'UPLOAD_EXPIRED' && this.code !== 'REJECTED';
  }
}

const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ECONNABORTED',
  'EADDRNOTAVAIL',
]);
const TIMEOUTS = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);

/** The Node error under an SDK's wrapping, if any. */
function causeCode(err: unknown): string | undefined {
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 4;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.code === 'string' && /^E[A-Z]+$|^UND_ERR/.test(e.code)) return e.code;
  }
  return undefined;
}

export function classify(err: unknown, where: string): TargetError {
  if (err instanceof TargetError) return err;
  const e = err as {
    code?: string;
    statusCode?: number;
    message?: string;
    details?: { errorCode?: string; authenticationErrorDetail?: string };
  };
  const message = e.message ?? String(err);
  const node =
    causeCode(err) ?? message.match(/\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH)\b/)?.[1];
  if (node === 'ENOTFOUND' || node === 'EAI_AGAIN')
    return new TargetError('DNS', `${where}: the host name does not resolve (${node})`);
  if (node && TIMEOUTS.has(node)) return new TargetError('TIMEOUT', `${where}: no answer in time (${node})`);
  if (node && NETWORK.has(node)) return new TargetError('UNREACHABLE', `${where}: cannot connect (${node})`);
  const code = e.details?.errorCode ?? e.code ?? '';
  const detail = `${message} ${e.details?.authenticationErrorDetail ?? ''}`;
  // S3 says RequestTimeTooSkewed; Azure says 403 AuthenticationFailed "Request date header too old".
  if (code === 'RequestTimeTooSkewed' || /date header too old|not within the permitted time|too skewed/i.test(detail)) {
    return new TargetError(
      'CLOCK_SKEW',
      `${where}: the box's clock differs too much from the server's; set the time (NTP). ${message}`,
    );
  }
  if (
    [
      'InvalidAccessKeyId',
      'SignatureDoesNotMatch',
      'AccessDenied',
      'AuthenticationFailed',
      'AuthorizationFailure',
      'InvalidAuthenticationInfo',
      'AuthorizationPermissionMismatch',
    ].includes(code) ||
    e.statusCode === 401 ||
    e.statusCode === 403
  ) {
    return new TargetError('AUTH', `${where}: the credentials are refused (${code || e.statusCode})`);
  }
  if (code === 'NoSuchBucket' || code === 'ContainerNotFound')
    return new TargetError('NO_BUCKET', `${where}: the bucket or container does not exist (${code})`);
  if (code === 'NoSuchUpload' || code === 'InvalidBlockList' || code === 'InvalidPart')
    return new TargetError('UPLOAD_EXPIRED', `${where}: the partial upload is gone (${code}); it starts over`);
  if ((e.statusCode ?? 0) >= 500 || ['InternalError', 'ServiceUnavailable', 'SlowDown', 'ServerBusy'].includes(code))
    return new TargetError('SERVER', `${where}: the server failed (${code || e.statusCode}): ${message}`);
  return new TargetError('REJECTED', `${where}: ${code ? `${code}: ` : ''}${message}`);
}

const md5Hex = (parts: Buffer[]) => createHash('md5').update(Buffer.concat(parts)).digest('hex');

class S3Target implements UploadTarget {
  readonly id: string;
  private readonly client: MinioTypes.Client;
  private readonly agent: http.Agent;
  private readonly bucket: string;
  private readonly region: string;

  constructor(t: Extract<Target, { type: 's3' }>) {
    this.id = t.id;
    const url = new URL(t.endpoint);
    const useSSL = url.protocol === 'https:';
    this.agent = useSSL ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.bucket = t.bucket;
    this.region = t.region;
    this.client = new (minio().Client)({
      endPoint: url.hostname,
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      accessKey: t.accessKey,
      secretKey: t.secretKey,
      region: t.region,
      pathStyle: t.pathStyle,
      transportAgent: this.agent,
      // The outbox retries, with backoff that outlives a restart.
      retryOptions: { disableRetry: true },
    });
  }

  /** The payload hash SigV4 signs over plain HTTP; over HTTPS minio sends UNSIGNED-PAYLOAD. */
  private signed(chunk: Chunk): string {
    return (this.client as unknown as { enableSHA256: boolean }).enableSHA256 ? chunk.sha256 : '';
  }

  private send(name: string, query: string, chunk: Chunk, headers: Record<string, string | number>) {
    return this.client.makeRequestStreamAsync(
      {
        method: 'PUT',
        bucketName: this.bucket,
        objectName: name,
        query,
        headers: { 'Content-Length': chunk.bytes, 'Content-MD5': chunk.md5.toString('base64'), ...headers },
      },
      chunk.body(),
      this.signed(chunk),
      [200],
      this.region,
    );
  }

  private static headers(info: ObjectInfo): Record<string, string> {
    const out: Record<string, string> = { 'Content-Type': info.contentType };
    for (const [k, v] of Object.entries(info.metadata)) out[`x-amz-meta-${k}`] = v;
    return out;
  }

  /**
   * A GET on the bucket (a listing of no keys): unlike HEAD, its refusal has a body that says why
   * (NoSuchBucket, InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed).
   */
  private async diagnose(where: string): Promise<void> {
    const res = await this.client
      .makeRequestAsync(
        { method: 'GET', bucketName: this.bucket, query: 'list-type=2&max-keys=0' },
        '',
        [200],
        this.region,
      )
      .catch((err) => {
        throw classify(err, where);
      });
    res.resume();
  }

  async check(probeName: string): Promise<void> {
    const where = `S3 bucket "${this.bucket}"`;
    await this.diagnose(where);
    await this.client.putObject(this.bucket, probeName, Buffer.from('fogedge')).catch((err) => {
      throw classify(err, `${where}, writing`);
    });
    await this.client.removeObject(this.bucket, probeName).catch((err) => {
      throw classify(err, `${where}, deleting the probe`);
    });
  }

  async stat(name: string): Promise<Stored | undefined> {
    try {
      const s = await this.client.statObject(this.bucket, name);
      return { bytes: s.size, etag: s.etag, sha256: (s.metaData as Record<string, string>)['sha256'] };
    } catch (err) {
      const code = (err as { code?: string }).code;
      // A missing bucket shows in the PUT that follows, which has a body.
      if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
      // A HEAD's refusal has no body: ask again in a way that says why.
      await this.diagnose(`S3 bucket "${this.bucket}"`);
      throw err;
    }
  }

  async put(name: string, chunk: Chunk, info: ObjectInfo): Promise<Stored> {
    const res = await this.send(name, '', chunk, S3Target.headers(info));
    res.resume();
    return { etag: String(res.headers.etag ?? '').replace(/"/g, '') };
  }

  beginMultipart(name: string, info: ObjectInfo): Promise<string> {
    return this.client.initiateNewMultipartUpload(this.bucket, name, S3Target.headers(info));
  }

  async putPart(name: string, uploadId: string, n: number, chunk: Chunk): Promise<string> {
    const res = await this.send(name, `partNumber=${n}&uploadId=${encodeURIComponent(uploadId)}`, chunk, {});
    res.resume();
    return String(res.headers.etag ?? '').replace(/"/g, '');
  }

  async completeMultipart(name: string, uploadId: string, parts: Part[]): Promise<Stored> {
    const done = await this.client.completeMultipartUpload(
      this.bucket,
      name,
      uploadId,
      parts.map((p) => ({ part: p.n, etag: p.etag })),
    );
    return { etag: done.etag.replace(/"/g, '') };
  }

  verify(sent: Sent, stored: Stored): string | undefined {
    // A single PUT's ETag is the MD5 of the bytes; a multipart one on AWS and MinIO, the MD5 of the
    // parts' MD5s and their count; some S3 servers (s3rver) give the MD5 of the bytes for both.
    const expected = [sent.md5.toString('hex'), ...(sent.parts ? [`${md5Hex(sent.parts)}-${sent.parts.length}`] : [])];
    if (!stored.etag || !expected.includes(stored.etag))
      return `ETag ${stored.etag}, expected ${expected.join(' or ')}`;
    return differs(sent, stored);
  }

  /**
   * One key per folder, each listing starting after the folder before: a request per folder, on
   * any S3 server (some, s3rver among them, leave folders holding no object of their own out of
   * delimiter listings). Names here use [A-Za-z0-9_.-/], which all sort before '~'.
   */
  async folders(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let after = '';
    for (;;) {
      // ListObjects (v1) with a marker: the form every S3 server takes with a key limit.
      const page = await this.client
        .listObjectsQuery(this.bucket, prefix, after, { Delimiter: '', MaxKeys: 1 })
        .catch((err) => {
          throw classify(err, `S3 bucket "${this.bucket}", listing ${prefix}`);
        });
      const key = page.objects[0]?.name;
      if (!key) return out;
      const slash = key.indexOf('/', prefix.length);
      if (slash < 0) {
        after = key; // an object right under the prefix
        continue;
      }
      const folder = key.slice(0, slash + 1);
      out.push(folder);
      after = `${folder}~`;
    }
  }

  async names(prefix: string): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const item of this.client.listObjectsV2(this.bucket, prefix, true)) if (item.name) out.push(item.name);
    } catch (err) {
      throw classify(err, `S3 bucket "${this.bucket}", listing ${prefix}`);
    }
    return out;
  }

  async remove(name: string): Promise<void> {
    await this.client.removeObject(this.bucket, name).catch((err) => {
      throw classify(err, `S3 bucket "${this.bucket}", deleting ${name}`);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

class AzureTarget implements UploadTarget {
  readonly id: string;
  private readonly container: ContainerClient;
  private readonly name: string;

  constructor(t: Extract<Target, { type: 'azure' }>) {
    this.id = t.id;
    this.name = t.container;
    const { BlobServiceClient, StorageSharedKeyCredential } = azure();
    const service = new BlobServiceClient(
      t.endpoint.replace(/\/$/, ''),
      new StorageSharedKeyCredential(t.accountName, t.accountKey),
      {
        // The outbox retries, with backoff that outlives a restart.
        retryOptions: { maxTries: 1, tryTimeoutInMs: 120_000 },
      },
    );
    this.container = service.getContainerClient(t.container);
  }

  private static headers(info: ObjectInfo, md5: Buffer) {
    return { blobHTTPHeaders: { blobContentType: info.contentType, blobContentMD5: md5 }, metadata: info.metadata };
  }

  async check(probeName: string): Promise<void> {
    const where = `Azure container "${this.name}"`;
    const exists = await this.container.exists().catch((err) => {
      throw classify(err, where);
    });
    if (!exists) throw new TargetError('NO_BUCKET', `${where} does not exist`);
    const probe = this.container.getBlockBlobClient(probeName);
    await probe.upload('fogedge', 7).catch((err) => {
      throw classify(err, `${where}, writing`);
    });
    await probe.delete().catch((err) => {
      throw classify(err, `${where}, deleting the probe`);
    });
  }

  private async properties(name: string): Promise<Stored> {
    const p = await this.container.getBlockBlobClient(name).getProperties();
    return {
      bytes: p.contentLength ?? 0,
      ...(p.contentMD5 ? { md5: Buffer.from(p.contentMD5).toString('base64') } : {}),
      ...(p.metadata?.['sha256'] ? { sha256: p.metadata['sha256'] } : {}),
    };
  }

  async stat(name: string): Promise<Stored | undefined> {
    try {
      return await this.properties(name);
    } catch (err) {
      if (err instanceof azure().RestError && err.statusCode === 404 && (err.code === 'BlobNotFound' || !err.code))
        return undefined;
      // A HEAD's refusal has no body to say why (a skewed clock, say): ask again with a GET.
      if (err instanceof azure().RestError && err.statusCode === 403) {
        await this.container.getProperties().catch((why) => {
          throw classify(why, `Azure container "${this.name}"`);
        });
      }
      throw err;
    }
  }

  /** Put Blob answers with the MD5 the service computed over what it received (none is sent to echo). */
  async put(name: string, chunk: Chunk, info: ObjectInfo): Promise<Stored> {
    const res = await this.container.getBlockBlobClient(name).upload(chunk.body, chunk.bytes, {
      blobHTTPHeaders: { blobContentType: info.contentType },
      metadata: info.metadata,
    });
    return res.contentMD5 ? { md5: Buffer.from(res.contentMD5).toString('base64') } : {};
  }

  /** Azure keeps staged blocks by id for a week; the id names this attempt so a new one never mixes with it. */
  async beginMultipart(): Promise<string> {
    return createHash('sha256').update(`${Date.now()}-${Math.random()}`).digest('hex').slice(0, 16);
  }

  private static blockId(uploadId: string, n: number): string {
    return Buffer.from(`${uploadId}-${String(n).padStart(6, '0')}`).toString('base64');
  }

  async putPart(name: string, uploadId: string, n: number, chunk: Chunk): Promise<string> {
    const id = AzureTarget.blockId(uploadId, n);
    await this.container
      .getBlockBlobClient(name)
      .stageBlock(id, chunk.body, chunk.bytes, { transactionalContentMD5: chunk.md5 });
    return id;
  }

  /** Each block's MD5 was checked by the service as it was staged; the whole is checked by its size. */
  async completeMultipart(
    name: string,
    uploadId: string,
    parts: Part[],
    info: ObjectInfo,
    whole: Sent,
  ): Promise<Stored> {
    const ids = parts.map((p) => AzureTarget.blockId(uploadId, p.n));
    await this.container.getBlockBlobClient(name).commitBlockList(ids, AzureTarget.headers(info, whole.md5));
    return this.properties(name);
  }

  verify(sent: Sent, stored: Stored): string | undefined {
    if (stored.md5 !== sent.md5.toString('base64'))
      return `Content-MD5 ${stored.md5}, expected ${sent.md5.toString('base64')}`;
    return differs(sent, stored);
  }

  async folders(prefix: string): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const item of this.container.listBlobsByHierarchy('/', { prefix }))
        if (item.kind === 'prefix') out.push(item.name);
    } catch (err) {
      throw classify(err, `Azure container "${this.name}", listing ${prefix}`);
    }
    return out;
  }

  async names(prefix: string): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const blob of this.container.listBlobsFlat({ prefix })) out.push(blob.name);
    } catch (err) {
      throw classify(err, `Azure container "${this.name}", listing ${prefix}`);
    }
    return out;
  }

  async remove(name: string): Promise<void> {
    await this.container.deleteBlob(name, { deleteSnapshots: 'include' }).catch((err) => {
      if (err instanceof azure().RestError && err.statusCode === 404) return;
      throw classify(err, `Azure container "${this.name}", deleting ${name}`);
    });
  }

  close(): void {}
}

export function openTarget(t: Target): UploadTarget {
  return t.type === 's3' ? new S3Target(t) : new AzureTarget(t);
}
