// A picture small enough to ride inside a push message (RFC 8291 leaves about 3,990 bytes for the
// whole JSON): the event's thumbnail made smaller until it fits, or none.
import { spawn } from 'node:child_process';

/** Base64 of at most this many bytes fits beside the rest of the message. */
export const MAX_PICTURE_BYTES = 2600;
const TRIES: Array<{ width: number; quality: number }> = [
  { width: 192, quality: 8 },
  { width: 160, quality: 14 },
  { width: 112, quality: 20 },
];

function scaled(jpeg: Buffer, ffmpeg: string, width: number, quality: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'image2pipe',
      '-i',
      'pipe:0',
      '-vf',
      `scale=${width}:-2`,
      '-q:v',
      String(quality),
      '-f',
      'image2',
      '-c:v',
      'mjpeg',
      'pipe:1',
    ]);
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`ffmpeg exited ${code}`)),
    );
    child.stdin.on('error', () => undefined);
    child.stdin.end(jpeg);
  });
}

export async function smallPicture(jpeg: Buffer, ffmpeg: string): Promise<Buffer | null> {
  for (const { width, quality } of TRIES) {
    const small = await scaled(jpeg, ffmpeg, width, quality);
    if (small.length <= MAX_PICTURE_BYTES) return small;
  }
  return null;
}
