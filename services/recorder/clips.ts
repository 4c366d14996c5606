// Clip export: the segments of a time range joined into one MP4 by ffmpeg's concat demuxer,
// stream copy (no transcoding), cut to the range at keyframes.
import { execFile } from 'node:child_process';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Segment } from './segment-index.ts';

const run = promisify(execFile);

export interface ClipRequest {
  camera: string;
  from: number; // ms
  to: number;
}

/** Clip files are named by what they hold, so a repeated request reuses the file. */
export const clipName = (r: ClipRequest) => `${r.camera}-${r.from}-${r.to}.mp4`;
export const CLIP_NAME = /^[a-z0-9][a-z0-9-]{0,31}-\d{13}-\d{13}\.mp4$/;

export async function exportClip(ffmpegPath: string, mediaDir: string, clipsDir: string, request: ClipRequest, segments: Segment[]): Promise<{ file: string; bytes: number }> {
  await mkdir(clipsDir, { recursive: true });
  const file = path.join(clipsDir, clipName(request));
  const existing = await stat(file).catch(() => null);
  if (existing) return { file, bytes: existing.size };
  // ffconcat: each segment with the part of it that falls in the range.
  const lines = ['ffconcat version 1.0'];
  for (const s of segments) {
    lines.push(`file '${path.join(mediaDir, s.path).replace(/'/g, "'\\''")}'`);
    if (request.from > s.start) lines.push(`inpoint ${((request.from - s.start) / 1000).toFixed(3)}`);
    if (request.to < s.end) lines.push(`outpoint ${((request.to - s.start) / 1000).toFixed(3)}`);
  }
  const list = `${file}.txt`;
  const partial = `${file}.partial.mp4`;
  await writeFile(list, lines.join('\n') + '\n');
  try {
    await run(ffmpegPath, ['-v', 'error', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-map', '0:v:0', '-c', 'copy', '-movflags', '+faststart', partial], { timeout: 120_000 });
    // Only a finished file gets the real name: a crash never leaves a half clip to serve.
    await run('mv', [partial, file]);
  } finally {
    await rm(list, { force: true });
    await rm(partial, { force: true });
  }
  return { file, bytes: (await stat(file)).size };
}
