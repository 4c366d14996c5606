// The box's own software update without balena: a release is downloaded, checked by its
// SHA-256, unpacked beside the running one, and made current; release-runner.mjs restarts into
// it and rolls it back unless the new release confirms itself healthy in time. The layout and
// the states are described in release-runner.mjs.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { writeDurably } from '../lib/durable-files.ts';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { BadRequestError, ConflictError } from '../lib/errors.ts';
import type { UpdateState } from '../services/system/system.schemas.ts';

const run = promisify(execFile);

export type { UpdateState } from '../services/system/system.schemas.ts';

export interface UpdateRequest {
  version: string;
  url: string;
  sha256: string;
  /** Time the new release has to prove itself healthy, s. */
  deadlineSeconds: number;
  healthySeconds: number;
  by: string;
}

/** The releases root when the box runs under release-runner.mjs; null when it runs from a checkout. */
export const releasesRoot = (): string | null => process.env['FOGEDGE_RELEASES_DIR'] ?? null;

const stateFile = (root: string) => path.join(root, 'update.json');

export async function readUpdateState(root: string): Promise<UpdateState | null> {
  try {
    return JSON.parse(await readFile(stateFile(root), 'utf8')) as UpdateState;
  } catch {
    return null;
  }
}

export async function writeUpdateState(root: string, state: UpdateState): Promise<void> {
  await writeDurably(stateFile(root), JSON.stringify(state, null, 2));
}

async function pointAt(link: string, target: string): Promise<void> {
  await rm(`${link}.tmp`, { force: true });
  await symlink(target, `${link}.tmp`);
  await rename(`${link}.tmp`, link);
}

export async function releasesOnDisk(
  root: string,
): Promise<{ current: string | null; previous: string | null; releases: string[] }> {
  const name = (link: string) =>
    readlink(path.join(root, link)).then(
      (t) => path.basename(t),
      () => null,
    );
  const releases = (await readdir(path.join(root, 'releases')).catch(() => [] as string[])).filter(
    (r) => !r.startsWith('.'),
  );
  return { current: await name('current'), previous: await name('previous'), releases: releases.sort() };
}

/** Counts bytes and hashes them on the way to the disk. */
function hashing(hash: ReturnType<typeof createHash>, maxBytes: number) {
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > maxBytes)
        return done(new BadRequestError(`The release is larger than ${maxBytes} bytes`, 'RELEASE_TOO_LARGE'));
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

const MAX_RELEASE_BYTES = 2 * 1024 ** 3;

/**
 * Downloads, checks and unpacks a release, then makes it current and marks the update as trying.
 * The caller restarts the box; the runner then starts the new release.
 */
/** What a release's signature covers: its version and its archive's SHA-256. */
export const releaseStatement = (version: string, sha256: string) =>
  Buffer.from(`fogedge-release\n${version}\n${sha256.toLowerCase()}\n`);

/** Signs a release (the packer's side), base64 Ed25519. */
export const signRelease = (version: string, sha256: string, privateKey: KeyObject) =>
  sign(null, releaseStatement(version, sha256), privateKey).toString('base64');

/** Whether one of the trusted keys (PEM) signed this version with this archive. */
export function releaseSignedBy(version: string, sha256: string, signature: string, trustedKeys: string[]): boolean {
  const sig = Buffer.from(signature, 'base64');
  return trustedKeys.some((pem) => {
    try {
      return verify(null, releaseStatement(version, sha256), createPublicKey(pem), sig);
    } catch {
      return false;
    }
  });
}

export async function installRelease(root: string, currentVersion: string, req: UpdateRequest): Promise<UpdateState> {
  if (req.version === currentVersion)
    throw new ConflictError(`Version ${req.version} is already running`, 'ALREADY_RUNNING');
  const pending = await readUpdateState(root);
  if (pending?.state === 'trying')
    throw new ConflictError(`An update to ${pending.to} is under way`, 'UPDATE_UNDER_WAY');
  const releases = path.join(root, 'releases');
  await mkdir(releases, { recursive: true });
  const archive = path.join(releases, `.download-${req.version}.tgz`);
  const partial = path.join(releases, `.partial-${req.version}`);
  const target = path.join(releases, req.version);
  try {
    // No redirects: an allowed server must not send the box somewhere else.
    const res = await fetch(req.url, { signal: AbortSignal.timeout(30 * 60_000), redirect: 'error' }).catch(
      (err: Error) => {
        throw new BadRequestError(
          `Cannot download the release from ${new URL(req.url).origin}: ${(err.cause as Error | undefined)?.message ?? err.message}`,
          'DOWNLOAD_FAILED',
        );
      },
    );
    if (!res.ok || !res.body)
      throw new BadRequestError(`Downloading the release answered HTTP ${res.status}`, 'DOWNLOAD_FAILED');
    const hash = createHash('sha256');
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      hashing(hash, MAX_RELEASE_BYTES),
      createWriteStream(archive),
    );
    const sha256 = hash.digest('hex');
    // What was fetched is not told: the answer must not reveal what a URL holds.
    if (sha256 !== req.sha256.toLowerCase())
      throw new BadRequestError(`The release's SHA-256 is not ${req.sha256}`, 'CHECKSUM_MISMATCH');

    await rm(partial, { recursive: true, force: true });
    await mkdir(partial);
    // node-tar refuses absolute paths and '..' by default: nothing lands outside the release folder.
    await tar.x({ file: archive, cwd: partial, strict: true });
    const pkg = JSON.parse(await readFile(path.join(partial, 'package.json'), 'utf8').catch(() => '{}')) as {
      version?: string;
    };
    if (pkg.version !== req.version)
      throw new BadRequestError(
        `The release says it is version ${pkg.version ?? '(no package.json)'}, not ${req.version}`,
        'VERSION_MISMATCH',
      );
    if (!existsSync(path.join(partial, 'gateway/main.ts')))
      throw new BadRequestError('The release has no gateway/main.ts', 'NOT_A_RELEASE');
    if (!existsSync(path.join(partial, 'node_modules'))) {
      // A release without its dependencies reuses the running one's when the lock files agree (hard links: no space, no download).
      const current = path.join(root, 'current');
      const same =
        (await readFile(path.join(partial, 'package-lock.json'), 'utf8').catch(() => 'none')) ===
        (await readFile(path.join(current, 'package-lock.json'), 'utf8').catch(() => 'other'));
      if (!same)
        throw new BadRequestError(
          'The release has no node_modules and its package-lock.json differs from the running one',
          'NO_DEPENDENCIES',
        );
      await run('cp', ['-al', '--', path.join(current, 'node_modules'), path.join(partial, 'node_modules')]);
    }
    await rm(target, { recursive: true, force: true });
    await rename(partial, target);
  } finally {
    await rm(archive, { force: true });
    await rm(partial, { recursive: true, force: true });
  }

  const now = Date.now();
  const state: UpdateState = {
    state: 'trying',
    from: currentVersion,
    to: req.version,
    startedAt: new Date(now).toISOString(),
    deadline: new Date(now + req.deadlineSeconds * 1000).toISOString(),
    healthySeconds: req.healthySeconds,
    boots: 0,
    by: req.by,
  };
  await writeUpdateState(root, state);
  await pointAt(path.join(root, 'previous'), await readlink(path.join(root, 'current')));
  await pointAt(path.join(root, 'current'), path.join('releases', req.version));
  return state;
}

/** The new release is healthy: the update stands; releases other than current and previous go. */
export async function confirmRelease(root: string, state: UpdateState): Promise<UpdateState> {
  // Old releases go first, so whoever sees "confirmed" also sees them gone.
  const { current, previous, releases } = await releasesOnDisk(root);
  for (const r of releases)
    if (r !== current && r !== previous) await rm(path.join(root, 'releases', r), { recursive: true, force: true });
  const done: UpdateState = { ...state, state: 'confirmed', finishedAt: new Date().toISOString() };
  await writeUpdateState(root, done);
  return done;
}
