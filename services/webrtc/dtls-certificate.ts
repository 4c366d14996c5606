// The box's own DTLS certificate for WebRTC, made once and kept under the data root's tls/: its
// fingerprint goes in the pairing link, so that a paired browser knows the box by it and a relay
// in the middle (the operator) cannot stand in for the box.
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { lazyPackage } from '../../lib/lazy-package.ts';
import { writeDurably } from '../../lib/durable-files.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';

const selfsigned = lazyPackage<typeof import('selfsigned')>('selfsigned');

export interface DtlsCertificate {
  certFile: string;
  keyFile: string;
  /** "sha-256 AB:CD:...", as an SDP a=fingerprint line has it. */
  fingerprint: string;
}

export async function dtlsCertificate(config: Config): Promise<DtlsCertificate> {
  const dir = dataPaths(config).tls;
  const certFile = path.join(dir, 'webrtc.crt');
  const keyFile = path.join(dir, 'webrtc.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pems = await selfsigned().generate([{ name: 'commonName', value: 'fogedge-webrtc' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 86_400_000),
      notAfterDate: new Date(Date.now() + 20 * 365 * 86_400_000),
    } as never);
    // The key first: a cut between the two leaves no certificate, so both are made again.
    await writeDurably(keyFile, pems.private, { mode: 0o600 });
    await writeDurably(certFile, pems.cert);
  }
  const fingerprint = new X509Certificate(await readFile(certFile)).fingerprint256;
  return { certFile, keyFile, fingerprint: `sha-256 ${fingerprint}` };
}
