// Real storage servers on loopback for the cloud sync tests: Azurite (Microsoft's Azure Storage
// emulator) and s3rver (an S3 API server), each a child process that can be stopped and
// started again on the same port and folder, as a target that goes down and comes back.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import * as Minio from 'minio';
import { freePort, Proc, waitUntil } from './processes.ts';

const bin = (name: string) => path.resolve(import.meta.dirname, '../../node_modules/.bin', name);

/** Azurite's documented development account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
/** s3rver's fixed credentials. */
export const S3RVER_KEY = 'S3RVER';

abstract class Server {
  protected proc?: Proc;
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}
  protected abstract spawn(): Proc;
  protected abstract ready(): Promise<boolean>;

  async start(): Promise<this> {
    this.proc = this.spawn();
    await waitUntil(`${this.constructor.name} on port ${this.port}`, () => this.ready(), 20_000, 100);
    return this;
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

export class Azurite extends Server {
  static async create(dir: string) {
    return new Azurite(await freePort(), dir).start();
  }
  get endpoint() {
    return `http://127.0.0.1:${this.port}/${AZURITE_ACCOUNT}`;
  }
  get client() {
    return new BlobServiceClient(this.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  }
  target(id: string, container: string, extra: object = {}) {
    return {
      id,
      type: 'azure',
      endpoint: this.endpoint,
      accountName: AZURITE_ACCOUNT,
      accountKey: AZURITE_KEY,
      container,
      ...extra,
    };
  }
  protected spawn() {
    return new Proc(bin('azurite-blob'), [
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(this.port),
      '--location',
      this.dir,
      '--silent',
      '--skipApiVersionCheck',
      '--disableTelemetry',
    ]);
  }
  protected async ready() {
    return this.client.getProperties().then(
      () => true,
      () => false,
    );
  }
  async download(container: string, name: string): Promise<Buffer> {
    return this.client.getContainerClient(container).getBlockBlobClient(name).downloadToBuffer();
  }
  async list(container: string, prefix = ''): Promise<string[]> {
    const out: string[] = [];
    for await (const b of this.client.getContainerClient(container).listBlobsFlat({ prefix })) out.push(b.name);
    return out;
  }
}

export class S3rver extends Server {
  /** `skewMs`: the server's clock runs this far ahead of the box's, for clock-skew errors. */
  constructor(
    port: number,
    dir: string,
    readonly bucket: string,
    readonly skewMs = 0,
  ) {
    super(port, dir);
  }
  static async create(dir: string, bucket: string, skewMs = 0) {
    return new S3rver(await freePort(), dir, bucket, skewMs).start();
  }
  get endpoint() {
    return `http://127.0.0.1:${this.port}`;
  }
  get client() {
    return new Minio.Client({
      endPoint: '127.0.0.1',
      port: this.port,
      useSSL: false,
      accessKey: S3RVER_KEY,
      secretKey: S3RVER_KEY,
      region: 'us-east-1',
      pathStyle: true,
    });
  }
  target(id: string, extra: object = {}) {
    return {
      id,
      type: 's3',
      endpoint: this.endpoint,
      bucket: this.bucket,
      accessKey: S3RVER_KEY,
      secretKey: S3RVER_KEY,
      ...extra,
    };
  }
  protected spawn() {
    const args = [
      bin('s3rver'),
      '-d',
      this.dir,
      '-a',
      '127.0.0.1',
      '-p',
      String(this.port),
      '--configure-bucket',
      this.bucket,
      '--silent',
    ];
    // A server whose clock is off: the same s3rver with Date shifted (see skewed-clock.cjs).
    const node = this.skewMs ? ['--require', path.resolve(import.meta.dirname, 'skewed-clock.cjs')] : [];
    return new Proc(process.execPath, [...node, ...args], { SKEW_MS: String(this.skewMs) });
  }
  /** Any HTTP answer: a skewed server refuses every signed request. */
  protected async ready() {
    return fetch(this.endpoint).then(
      () => true,
      () => false,
    );
  }
  async download(name: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of await this.client.getObject(this.bucket, name)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }
  async list(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    for await (const o of this.client.listObjectsV2(this.bucket, prefix, true)) if (o.name) out.push(o.name);
    return out;
  }
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
