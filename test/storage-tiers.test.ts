// Storage tiers: recordings move from the hot disk to an archive filesystem the test mounts
// (a tmpfs, bind-mounted so it can be unmounted and come back with its files), stay indexed and
// playable through the same API, survive the archive going away and a box killed mid-move.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Store } from '../lib/store.ts';
import { SegmentIndex } from '../services/recorder/segment-index.ts';
import { ArchiveTier, type ArchiveOptions } from '../services/recorder/archive-tier.ts';
import { Retention } from '../services/recorder/retention.ts';
import type { Segment } from '../services/recorder/recorder.schemas.ts';
import { tempDir } from './helpers/box.ts';
import { firstAdminSession, freePort, getJson, startedNode, waitUntil } from './helpers/processes.ts';
import { playable } from './helpers/video.ts';
import { launch, shot, videoAdvances } from './helpers/browser.ts';

const run = promisify(execFile);
const DAY = 86_400_000;
const NOW = Date.parse('2026-11-22T12:00:00Z');
const sha = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

/** Mounts a failed test left: unmounted at the end whatever happened. */
const mounted = new Set<() => Promise<void>>();
test.after(async () => {
  for (const done of mounted) await done();
});

/** A filesystem of its own at `dir`: a tmpfs under `store`, bind-mounted, so an unmount keeps its files. */
async function mountedArchive(sizeMiB = 64) {
  const base = await tempDir('fogedge-tier-');
  const store = path.join(base, 'store');
  const dir = path.join(base, 'archive');
  await mkdir(store);
  await mkdir(dir);
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'fogedge-archive', store]);
  const mount = () => run('mount', ['--bind', store, dir]);
  await mount();
  const done = async () => {
    mounted.delete(done);
    await run('umount', ['-l', dir]).catch(() => undefined);
    await run('umount', ['-l', store]).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  };
  mounted.add(done);
  return { base, dir, unmount: () => run('umount', ['-l', dir]), remount: mount, done };
}

async function fixture(archiveDir: string, options: Partial<ArchiveOptions> = {}) {
  const dir = await tempDir();
  const media = path.join(dir, 'media');
  const store = await Store.open(path.join(dir, 'db'));
  const index = new SegmentIndex(store.collection<Segment>('segments'), store.collection<Segment>('archived'));
  const journal = store.collection<Segment>('archive-journal');
  const archive = new ArchiveTier(
    {
      dir: archiveDir,
      requireMount: true,
      minFreeBytes: 0,
      quotaBytes: null,
      bytesPerSecond: null,
      afterMs: DAY,
      ...options,
    },
    media,
    index,
    journal,
    () => index.totalBytes('archive'),
    (status) => changes.push(status.state),
  );
  const changes: string[] = [];
  await archive.check();
  const add = async (camera: string, start: number, bytes = 1000) => {
    const day = new Date(start).toISOString().slice(0, 10);
    const name = `${new Date(start).toISOString().slice(0, 19).replace(/:/g, '-')}-run.mp4`;
    await mkdir(path.join(media, camera, day), { recursive: true });
    await writeFile(path.join(media, camera, day, name), Buffer.alloc(bytes, start % 251));
    const s: Segment = { camera, path: path.join(camera, day, name), start, end: start + 10_000, bytes };
    await index.add(s);
    return s;
  };
  const retention = (more: Partial<ConstructorParameters<typeof Retention>[2]> = {}, free?: () => Promise<number>) =>
    new Retention(index, media, { retainDays: () => 30, quotaBytes: null, minFreeBytes: 0, archive, ...more }, free);
  const done = async () => (await store.close(), await rm(dir, { recursive: true, force: true }));
  return { media, index, journal, archive, changes, add, retention, done };
}

test('by age: hot segments past the archive age move, whole, and stay listed in order', async () => {
  const m = await mountedArchive();
  const f = await fixture(m.dir);
  assert.is(f.archive.status.state, 'ok');
  const old = await f.add('front', NOW - 3 * DAY, 300_000);
  const older = await f.add('front', NOW - 4 * DAY, 200_000);
  const recent = await f.add('front', NOW - 3_600_000);
  const hashes = { old: await sha(path.join(f.media, old.path)), older: await sha(path.join(f.media, older.path)) };
  const r = await f.retention().run(NOW);
  assert.is(r.moved, 2);
  assert.is(r.byAge, 0);
  assert.is(await sha(path.join(m.dir, old.path)), hashes.old);
  assert.is(await sha(path.join(m.dir, older.path)), hashes.older);
  assert.not.ok(existsSync(path.join(f.media, old.path)), 'no copy left on the hot disk');
  assert.ok(existsSync(path.join(f.media, recent.path)));
  const listed = await f.index.list('front', 0, NOW + DAY);
  assert.equal(
    listed.map((s) => [s.start, s.tier ?? 'hot']),
    [
      [older.start, 'archive'],
      [old.start, 'archive'],
      [recent.start, 'hot'],
    ],
  );
  assert.is(await f.index.totalBytes('archive'), 500_000);
  assert.is(await f.index.totalBytes('hot'), 1000);
  assert.equal(await f.index.usage(), {
    front: { bytes: 501_000, segments: 3, oldest: older.start, archivedBytes: 500_000 },
  });
  assert.is(await f.journal.get('moving'), undefined);
  assert.equal(await readdir(path.join(m.dir, 'front', path.basename(path.dirname(old.path)))), [
    path.basename(old.path),
  ]);
  // Past the camera's days, footage goes from the archive as from the hot disk.
  const gone = await f.retention({ retainDays: () => 3.5 }).run(NOW);
  assert.is(gone.byAge, 1);
  assert.not.ok(existsSync(path.join(m.dir, older.path)));
  await f.done();
  await m.done();
});

test('for space: the oldest hot segment moves before anything is deleted; the archive keeps its own quota', async () => {
  const m = await mountedArchive();
  const f = await fixture(m.dir, { quotaBytes: 6000, afterMs: 30 * DAY });
  const all: Segment[] = [];
  for (let i = 0; i < 5; i++) all.push(await f.add('cam', NOW - (10 - i) * 60_000, 2000));
  // The pretend hot disk has 1000 bytes free plus what leaves it (a real disk cannot be filled here).
  const free = async () => 1000 + (10_000 - (await f.index.totalBytes('hot')));
  const r = await f.retention({ minFreeBytes: 6000 }, free).run(NOW);
  assert.is(r.moved, 3, 'three moves bring 1000 free bytes to 7000 >= 6000');
  assert.is(r.bySpace, 0, 'nothing deleted while the archive had room');
  assert.equal(
    (await f.index.list('cam', 0, NOW)).map((s) => s.tier ?? 'hot'),
    ['archive', 'archive', 'archive', 'hot', 'hot'],
  );
  // The archive's quota: the next move would pass it, so its oldest goes first, and the hot disk's
  // oldest then deletes when the archive is full.
  const r2 = await f.retention({ minFreeBytes: 8000 }, free).run(NOW);
  assert.ok(r2.moved + r2.bySpace >= 1, JSON.stringify(r2));
  assert.ok((await f.index.totalBytes('archive')) <= 6000, 'the archive stays within its quota');
  await f.done();
  await m.done();
});

test('an archive that is not mounted: nothing moves, its entries stay, the hot disk goes on by itself', async () => {
  const m = await mountedArchive();
  const f = await fixture(m.dir, { afterMs: 0 });
  const first = await f.add('cam', NOW - 60_000);
  assert.is((await f.retention().run(NOW)).moved, 1);
  await m.unmount();
  assert.ok(await f.archive.check(), 'a change of state');
  assert.is(f.archive.status.state, 'unmounted');
  assert.match(f.archive.status.reason!, /nothing is mounted/);
  const later = await f.add('cam', NOW - 30_000);
  const r = await f.retention().run(NOW);
  assert.is(r.moved, 0, 'nothing is copied onto the box disk under the mount point');
  assert.equal(await readdir(m.dir), []);
  // Its footage stays indexed (the heal at start leaves it alone) and is not deleted by age.
  assert.is(await f.index.dropMissing({ hot: f.media }), 0);
  assert.is((await f.retention({ retainDays: () => 0.00001 }).run(NOW)).byAge, 1, 'only the hot one goes');
  assert.equal(
    (await f.index.list('cam', 0, NOW)).map((s) => s.start),
    [first.start],
  );
  assert.not.ok(existsSync(path.join(f.media, later.path)));
  // Back: its files are there again.
  await m.remount();
  await f.archive.check();
  assert.is(f.archive.status.state, 'ok');
  assert.ok(existsSync(f.archive.pathOf(first)));
  // A plain folder is not an archive when a mount is required.
  const plain = await tempDir();
  const g = await fixture(plain);
  assert.is(g.archive.status.state, 'unmounted');
  await g.done();
  await rm(plain, { recursive: true, force: true });
  await f.done();
  await m.done();
});

test('the archive going away mid-move: the move fails, the hot copy stays, and the change is told', async () => {
  const m = await mountedArchive();
  // 3 MB at 1 MB/s: the unmount lands mid-copy.
  const f = await fixture(m.dir, { afterMs: 0, bytesPerSecond: 1_000_000 });
  assert.equal(f.changes, ['ok']);
  const s = await f.add('cam', NOW - 60_000, 3_000_000);
  const moving = f.archive.spill(s);
  await new Promise((r) => setTimeout(r, 500));
  await m.unmount();
  assert.is(await moving, false);
  assert.is(f.archive.status.state, 'unmounted');
  // The System page and health hear of it from this, not only from the next periodic check.
  assert.equal(f.changes, ['ok', 'unmounted']);
  assert.not.ok(await f.archive.check(), 'already known');
  assert.ok(existsSync(path.join(f.media, s.path)));
  assert.is((await f.index.list('cam', 0, NOW))[0]!.tier, undefined);
  assert.is(await f.journal.get('moving'), undefined);
  assert.equal(await readdir(m.dir), [], 'nothing written under the bare mount point');
  await f.done();
  await m.done();
});

test('a move cut by a power cut is finished or undone at the next start, never half in both places', async () => {
  const m = await mountedArchive();
  const f = await fixture(m.dir);
  const s = await f.add('cam', NOW - 3 * DAY, 50_000);
  const target = f.archive.pathOf(s);
  await mkdir(path.dirname(target), { recursive: true });
  // Cut mid-copy: a partial file and the journal.
  await f.journal.put('moving', s);
  await writeFile(`${target}.partial`, Buffer.alloc(1000));
  assert.is(await f.archive.settle(), 'undone');
  assert.not.ok(existsSync(`${target}.partial`));
  assert.ok(existsSync(path.join(f.media, s.path)));
  assert.is((await f.index.list('cam', 0, NOW))[0]!.tier, undefined);
  // Cut after the rename: the archive copy is whole (flushed before it got its name).
  await f.journal.put('moving', s);
  await writeFile(target, await readFile(path.join(f.media, s.path)));
  assert.is(await f.archive.settle(), 'finished');
  assert.not.ok(existsSync(path.join(f.media, s.path)));
  assert.equal(
    (await f.index.list('cam', 0, NOW)).map((x) => x.tier),
    ['archive'],
  );
  assert.is(await f.journal.get('moving'), undefined);
  // While the archive is away, the journal waits (the hot copy is the one played).
  const t = await f.add('cam', NOW - 2 * DAY, 1000);
  await f.journal.put('moving', t);
  await m.unmount();
  await f.archive.check();
  assert.is(await f.archive.settle(), 'waiting');
  assert.ok(existsSync(path.join(f.media, t.path)));
  await f.done();
  await m.done();
});

test('the box: segments move while it records, play through the same API; an unmount is reported and recording goes on; a kill mid-move loses nothing', async () => {
  const m = await mountedArchive(256);
  const dataDir = await tempDir();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    FOGEDGE_DATA_DIR: dataDir,
    PORT: String(port),
    FOGEDGE__HTTP__HOST: '127.0.0.1',
    FOGEDGE__VIDEO__SEGMENTSECONDS: '2',
    FOGEDGE__VIDEO__MINFREEBYTES: '0',
    FOGEDGE__VIDEO__RETENTIONINTERVALSECONDS: '1',
    FOGEDGE__VIDEO__ARCHIVE__PATH: m.dir,
    FOGEDGE__VIDEO__ARCHIVE__AFTERHOURS: '0',
    FOGEDGE__VIDEO__ARCHIVE__MINFREEBYTES: '0',
  };
  let node = await startedNode(env); // the demo camera: the bundled street clip
  const token = await firstAdminSession(base, 'admin', 'tier-password-1');
  const auth = { headers: { authorization: `Bearer ${token}` } };
  const api = async (p: string) => getJson(`${base}/api/v1${p}`, auth);
  const t0 = new Date(Date.now() - 60_000).toISOString();
  const t1 = () => new Date(Date.now() + 60_000).toISOString();
  type Listed = { path: string; start: string; end: string; tier?: string };
  const segments = async () => (await api(`/cameras/demo/segments?from=${t0}&to=${t1()}`)).json as Listed[];

  const moved = await waitUntil(
    'three segments in the archive',
    async () => {
      const list = await segments();
      return list.filter((s) => s.tier === 'archive').length >= 3 ? list : undefined;
    },
    60_000,
    500,
  );
  // One recording without gaps, across both tiers.
  const timeline = (await api(`/cameras/demo/timeline?from=${moved[0]!.start}&to=${moved.at(-1)!.end}`)).json;
  assert.is(timeline.ranges.length, 1, JSON.stringify(timeline));
  // An archived segment through the API is the file in the archive, byte for byte, and plays.
  const archived = moved.find((s) => s.tier === 'archive')!;
  const res = await fetch(`${base}/api/v1/recordings/${archived.path}`, auth);
  assert.is(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  assert.ok(body.equals(await readFile(path.join(m.dir, archived.path))));
  assert.not.ok(existsSync(path.join(dataDir, 'media', archived.path)));
  const copy = path.join(dataDir, 'fetched.mp4');
  await writeFile(copy, body);
  assert.ok((await playable(copy)).seconds >= 1);
  const playlist = await api(`/cameras/demo/playback.m3u8?from=${archived.start}&to=${archived.end}`);
  assert.is(playlist.status, 200, playlist.text);
  assert.match(playlist.text, new RegExp(archived.path.replace(/[.]/g, '\\.')));
  const storage = (await api('/system/storage')).json;
  assert.is(storage.archive.state, 'ok');
  assert.ok(storage.archive.recordingsBytes > 0);
  assert.is(storage.archive.path, m.dir);
  // In the browser: archived footage plays on the Recordings page; the System page shows the tier.
  const browser = await launch();
  const context = await browser.newContext();
  await context.addCookies([{ name: 'fogedge_session', value: token!, url: base }]);
  const page = await context.newPage();
  await page.goto(`${base}/recordings?camera=demo&at=${encodeURIComponent(archived.start)}`);
  await videoAdvances(page, 'video.playback', 1, 30_000);
  await page.goto(`${base}/system`);
  await page.waitForSelector('.archive[data-state=ok]');

  // The NAS goes away: reported, its footage answers 503 with the reason, recording goes on.
  await m.unmount();
  const recorder = await waitUntil(
    'health to report the archive',
    async () => {
      const h = await getJson(`${base}/api/v1/health`);
      const r = h.json?.services?.find((s: { name: string }) => s.name === 'recorder');
      return h.status === 503 && r?.status === 'degraded' ? r : undefined;
    },
    15_000,
    300,
  );
  assert.match(recorder.instances[0].error, /archive unmounted: nothing is mounted on/);
  assert.is((await api('/system/storage')).json.archive.state, 'unmounted');
  // The open System page hears it (no reload) and says what it means.
  const problem = await page.waitForSelector('.archive[data-state=unmounted] .problem');
  assert.match(String(await problem.textContent()), /nothing is mounted on .* cannot be played until it is back/);
  await shot(page, 'system-archive-unmounted');
  await browser.close();
  const away = await fetch(`${base}/api/v1/recordings/${archived.path}`, auth);
  assert.is(away.status, 503);
  assert.match(await away.text(), /in the archive .* cannot be read now: nothing is mounted/);
  const awayFrom = Date.now();
  const onHot = await waitUntil(
    'new segments on the hot disk while the archive is away',
    async () => {
      const list = await segments();
      return list.filter((s) => !s.tier && Date.parse(s.start) > awayFrom).length >= 2 ? list : undefined;
    },
    30_000,
    500,
  );
  assert.ok(
    onHot.some((s) => s.path === archived.path && s.tier === 'archive'),
    'its footage is still listed',
  );
  assert.equal(await readdir(m.dir), [], 'nothing written under the bare mount point');
  await m.remount();
  await waitUntil(
    'the archive back and the footage recorded while it was away moved',
    async () => {
      const list = await segments();
      return (await api('/system/storage')).json.archive.state === 'ok' &&
        list.filter((s) => !s.tier && Date.parse(s.end) < awayFrom + 4000).length === 0
        ? true
        : undefined;
    },
    30_000,
    500,
  );
  assert.is((await fetch(`${base}/api/v1/recordings/${archived.path}`, auth)).status, 200);
  await node.kill('SIGTERM');

  // Killed mid-move: a slow copy (64 KiB/s) is caught with its partial file on the archive.
  node = await startedNode({ ...env, FOGEDGE__VIDEO__ARCHIVE__MOVEBYTESPERSECOND: String(64 * 1024) });
  const partial = await waitUntil(
    'a move under way',
    async () => {
      for (const f of await readdir(m.dir, { recursive: true }))
        if (String(f).endsWith('.partial')) return String(f).replace(/\.partial$/, '');
      return undefined;
    },
    30_000,
    100,
  );
  await node.kill('SIGKILL');
  node = await startedNode({ ...env, FOGEDGE__VIDEO__DEMOCAMERA: 'false' });
  assert.ok(
    node.lines.some((l) => /archive: the move a stop interrupted was (undone|finished)/.test(l)),
    'the journal was settled',
  );
  const files = (await readdir(m.dir, { recursive: true })).map(String);
  assert.not.ok(
    files.some((f) => f.endsWith('.partial')),
    'no partial file left',
  );
  const inArchive = existsSync(path.join(m.dir, partial));
  const onHotDisk = existsSync(path.join(dataDir, 'media', partial));
  assert.ok(inArchive !== onHotDisk, `the cut segment is in exactly one place (${inArchive}, ${onHotDisk})`);
  const after = await segments();
  const cut = after.find((s) => s.path === partial);
  assert.ok(cut, 'still indexed');
  assert.is(cut!.tier === 'archive', inArchive, 'indexed where it is');
  const again = await fetch(`${base}/api/v1/recordings/${partial}`, auth);
  assert.is(again.status, 200);
  await writeFile(copy, Buffer.from(await again.arrayBuffer()));
  assert.ok((await playable(copy)).seconds >= 1);
  await node.kill('SIGTERM');
  await rm(dataDir, { recursive: true, force: true });
  await m.done();
});

test.run();
