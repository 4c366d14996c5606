// Packs a release archive for the box's own update (system.update): the tracked files, the
// built web UI and the compiled program (build/), without node_modules (a box reuses its own when package-lock.json is unchanged;
// pass --with-dependencies for a release that changes them). Prints the file, its SHA-256 and,
// with FOGEDGE_RELEASE_KEY, its signature.
// Usage: npm run release:pack [-- --with-dependencies] [--out DIR]
import { createHash, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tar from 'tar';
import { signRelease } from './releases.ts';

/** Packs `files` (relative to `dir`) into a gzipped tar; returns its SHA-256. */
export async function packRelease(dir: string, files: string[], out: string): Promise<string> {
  await tar.c({ gzip: true, file: out, cwd: dir, portable: true }, files);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(out)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { 'with-dependencies': { type: 'boolean', default: false }, out: { type: 'string', default: '.' } },
  });
  const root = path.resolve(import.meta.dirname, '..');
  if (!existsSync(path.join(root, 'web-ui/dist/index.html')))
    throw new Error('Build the web UI first: npm run build:ui');
  if (!existsSync(path.join(root, 'build/gateway/main.js'))) throw new Error('Build the box first: npm run build');
  const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .concat('web-ui/dist', 'build');
  if (values['with-dependencies']) files.push('node_modules');
  const { version } = JSON.parse(
    execFileSync('git', ['show', 'HEAD:package.json'], { cwd: root, encoding: 'utf8' }),
  ) as { version: string };
  const out = path.resolve(values.out!, `fogedge-${version}.tgz`);
  const sha256 = await packRelease(root, files, out);
  process.stdout.write(`${out}\nsha256 ${sha256}\n`);
  // FOGEDGE_RELEASE_KEY: the vendor's Ed25519 private key (PEM file); the box takes only signed releases.
  const keyFile = process.env['FOGEDGE_RELEASE_KEY'];
  if (keyFile)
    process.stdout.write(
      `signature ${signRelease(version, sha256, createPrivateKey(readFileSync(keyFile, 'utf8')))}\n`,
    );
  else process.stdout.write('not signed: set FOGEDGE_RELEASE_KEY to the private key file to sign it\n');
}
