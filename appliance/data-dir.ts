// The data root's layout: one folder per concern, one LevelDB per service.
import path from 'node:path';
import type { Config } from './config.ts';

export const dataPaths = (config: Pick<Config, 'dataDir'>) => ({
  root: config.dataDir,
  db: (service: string) => path.join(config.dataDir, 'db', service),
  media: path.join(config.dataDir, 'media'),
  clips: path.join(config.dataDir, 'clips'),
  /** Files waiting for the cloud (sync). */
  outbox: path.join(config.dataDir, 'outbox'),
  /** Events' pictures: snapshots/<camera>/<event>.jpg. */
  snapshots: path.join(config.dataDir, 'snapshots'),
  /** Review items' previews: previews/<camera>/<item>.mp4. */
  previews: path.join(config.dataDir, 'previews'),
  /** Camera firmware images the box serves to its cameras during a campaign. */
  uspImages: path.join(config.dataDir, 'usp', 'images'),
  /** node-media-server's own small store (RTMP push). */
  rtmp: path.join(config.dataDir, 'rtmp'),
  tls: path.join(config.dataDir, 'tls'),
  /** Left by `fogedge unlock`: the running box lifts its sign-in lock-outs when it sees it. */
  unlockSignIns: path.join(config.dataDir, 'unlock-sign-ins'),
});

// Recording segments: media/<camera>/<YYYY-MM-DD>/<YYYY-MM-DD>T<HH-MM-SS>-<run>.mp4 (UTC).
// The run id keeps two ffmpeg runs that start in the same second from sharing a file.
export const segmentPattern = (cameraDir: string, runId: string) =>
  `${cameraDir}/%Y-%m-%d/%Y-%m-%dT%H-%M-%S-${runId}.mp4`;

export const dayDir = (t: number) => new Date(t).toISOString().slice(0, 10);

export const DAY_DIR = /^\d{4}-\d{2}-\d{2}$/;
export const SEGMENT_FILE = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-[a-z0-9]+\.mp4$/;

/** When a segment file began, from its name (ms since epoch, UTC), or NaN. */
export function startOfSegmentFile(file: string): number {
  const m = SEGMENT_FILE.exec(path.basename(file));
  return m ? Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`) : NaN;
}
