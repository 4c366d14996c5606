// The broker's TLS certificate: the installer's files, or a self-signed one made at first start
// for every name and address the box answers on, kept under the data root's tls/.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { lazyPackage } from '../../lib/lazy-package.ts';
import { writeDurably } from '../../lib/durable-files.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';

const selfsigned = lazyPackage<typeof import('selfsigned')>('selfsigned');

/** A certificate for TLS: the installer's, or a self-signed one made at first start. */
export async function tlsOptions(config: Config): Promise<{ cert: Buffer; key: Buffer }> {
  const files = config.mqtt!.tls;
  if (files) return { cert: await readFile(files.certFile), key: await readFile(files.keyFile) };
  const dir = dataPaths(config).tls;
  const cert = path.join(dir, 'mqtt.crt');
  const key = path.join(dir, 'mqtt.key');
  if (!existsSync(cert) || !existsSync(key)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Valid ten years (selfsigned takes dates, not days), and for every name and address the
    // box answers on, so that a client that checks the host name can be given this certificate.
    const host = os.hostname();
    const addresses = Object.values(os.networkInterfaces())
      .flat()
      .filter((i) => i && !i.internal)
      .map((i) => i!.address);
    const altNames = [
      ...[...new Set(['fogedge.local', 'localhost', host, `${host}.local`])].map((value) => ({ type: 2, value })),
      ...[...new Set(['127.0.0.1', '::1', ...addresses])].map((ip) => ({ type: 7, ip })),
    ];
    const notBeforeDate = new Date(Date.now() - 3_600_000); // a client whose clock is a little behind
    const notAfterDate = new Date(Date.now() + 10 * 365 * 86_400_000);
    const pems = await selfsigned().generate([{ name: 'commonName', value: 'fogedge.local' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate,
      notAfterDate,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames },
      ],
    } as never);
    // The key first: a cut between the two leaves no certificate, so both are made again.
    await writeDurably(key, pems.private, { mode: 0o600 });
    await writeDurably(cert, pems.cert);
  }
  return { cert: await readFile(cert), key: await readFile(key) };
}
