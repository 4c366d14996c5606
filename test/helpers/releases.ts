// A releases folder as an installed box has (appliance/release-runner.mjs's layout) with this
// checkout as its first release, and an HTTP server that serves release archives made from it.
// The releases are this repository's own files (node_modules linked, not copied).
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import * as tar from 'tar';
import { packRelease } from '../../appliance/pack-release.ts';
import { buildBox } from '../../appliance/build.ts';
import { signRelease } from '../../appliance/releases.ts';
import { tempDir } from './box.ts';
import { freePort } from './processes.ts';

const repo = path.resolve(import.meta.dirname, '../..');
export const BASE_VERSION = (JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')) as { version: string })
  .version;

export interface Release {
  version: string;
  url: string;
  sha256: string;
  /** Signed by the vendor's key. */
  signature: string;
}

export class ReleaseLab {
  /** The vendor's release key; a box trusts its public half (update.releaseKeys). */
  readonly vendor = generateKeyPairSync('ed25519');

  private constructor(
    /** The releases root: releases/<version>, current, previous, update.json. */
    readonly root: string,
    private readonly served: string,
    private readonly sourceArchive: string,
    private readonly server: Server,
    /** Where the archives are served from (for update.releaseSources). */
    readonly archiveUrl: string,
  ) {}

  static async create(): Promise<ReleaseLab> {
    const root = await tempDir('fogedge-releases-');
    const served = await tempDir('fogedge-served-');
    // This checkout as the first release: its files, the built UI, and its node_modules linked.
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: repo, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f && existsSync(path.join(repo, f)));
    if (existsSync(path.join(repo, 'web-ui/dist'))) files.push('web-ui/dist');
    await buildBox(repo); // the compiled program, as npm run release:pack ships it
    files.push('build');
    const sourceArchive = path.join(served, 'source.tgz');
    await packRelease(repo, files, sourceArchive);
    const first = path.join(root, 'releases', BASE_VERSION);
    await mkdir(first, { recursive: true });
    await tar.x({ file: sourceArchive, cwd: first });
    await symlink(path.join(repo, 'node_modules'), path.join(first, 'node_modules'));
    await symlink(path.join('releases', BASE_VERSION), path.join(root, 'current'));
    const port = await freePort();
    const server = createServer((req, res) => {
      const file = path.join(served, path.basename(req.url ?? ''));
      if (!existsSync(file)) return res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/gzip' });
      createReadStream(file).pipe(res);
    }).listen(port, '127.0.0.1');
    return new ReleaseLab(root, served, sourceArchive, server, `http://127.0.0.1:${port}`);
  }

  get releaseKeyPem(): string {
    return this.vendor.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  }

  sign(version: string, sha256: string, key: KeyObject = this.vendor.privateKey): string {
    return signRelease(version, sha256, key);
  }

  /** A release of this repository at `version`, changed by `edit`, packed without node_modules and served. */
  async make(version: string, edit: (dir: string) => Promise<void> = async () => {}): Promise<Release> {
    const dir = path.join(await tempDir('fogedge-release-'), 'tree');
    await mkdir(dir);
    await tar.x({ file: this.sourceArchive, cwd: dir });
    const pkgFile = path.join(dir, 'package.json');
    await writeFile(pkgFile, JSON.stringify({ ...JSON.parse(await readFile(pkgFile, 'utf8')), version }, null, 2));
    await edit(dir);
    const sha256 = await packRelease(
      dir,
      execFileSync('ls', ['-A', dir], { encoding: 'utf8' }).split('\n').filter(Boolean),
      path.join(this.served, `fogedge-${version}.tgz`),
    );
    await rm(path.dirname(dir), { recursive: true, force: true });
    return { version, url: `${this.archiveUrl}/fogedge-${version}.tgz`, sha256, signature: this.sign(version, sha256) };
  }

  /** Makes a release's program `code` (its compiled entry, and its sources for a release from before the build). */
  static async program(dir: string, code: string): Promise<void> {
    await writeFile(path.join(dir, 'gateway/main.ts'), code);
    await writeFile(path.join(dir, 'build/gateway/main.js'), code);
  }

  /** The release runner's command line, as the systemd unit runs it. */
  get runnerArgs(): string[] {
    return [path.join(repo, 'appliance/release-runner.mjs'), this.root];
  }

  async close(): Promise<void> {
    this.server.close();
    await rm(this.root, { recursive: true, force: true });
    await rm(this.served, { recursive: true, force: true });
  }
}
