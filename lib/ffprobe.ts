// Asks ffprobe how long a media file plays; used for segments a crash cut short.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Seconds of media in the file, or 0 when it holds no complete fragment. */
export async function probeDuration(ffprobePath: string, file: string): Promise<number> {
  try {
    const { stdout } = await run(
      ffprobePath,
      ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file],
      { timeout: 15_000 },
    );
    const seconds = Number.parseFloat(stdout.trim());
    return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  } catch {
    return 0; // unreadable: nothing playable in it
  }
}
