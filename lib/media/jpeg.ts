// One picture out of ffmpeg: the first frame of what is piped in (an fMP4 fragment with its init
// segment, or a JPEG), through an optional filter, as a JPEG. No camera connection, ~0.1 s.
import { spawn } from 'node:child_process';

export interface JpegOptions {
  /** What is piped in: `mp4` (init + fragment) or `jpeg_pipe`. */
  format: 'mp4' | 'jpeg_pipe';
  /** An ffmpeg video filter, e.g. drawbox. */
  filter?: string;
  timeoutMs?: number;
}

export function ffmpegJpeg(ffmpegPath: string, input: Buffer | Buffer[], options: JpegOptions): Promise<Buffer> {
  const args = ['-v', 'error', '-f', options.format, '-i', 'pipe:0'];
  if (options.filter) args.push('-vf', options.filter);
  args.push('-frames:v', '1', '-f', 'image2', '-c:v', 'mjpeg', '-q:v', '3', 'pipe:1');
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath, args);
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 5000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.on('error', () => undefined); // ffmpeg may stop reading once it has its frame
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const jpeg = Buffer.concat(out);
      if (code === 0 && jpeg.length > 0) resolve(jpeg);
      else reject(new Error(`picture decode failed (${code ?? 'killed'}): ${err.trim().split('\n')[0] ?? ''}`));
    });
    child.stdin.end(Buffer.isBuffer(input) ? input : Buffer.concat(input));
  });
}
