// The detection decoders on a hardware video decoder (ffmpeg's hwaccel) when the box has one
// that works, in software otherwise. Tried once when the detector starts, on a short clip; what
// could not be used, and why, goes to detector.status and the log. (The model's execution
// provider is chosen the same way, in lib/vision/yolox.ts.)
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { nvidiaGpu, renderNode } from '../../lib/gpu-devices.ts';

const run = promisify(execFile);

/** Why an accelerator is not used. */
export interface NotUsed {
  name: string;
  why: string;
}

export interface DecoderChoice {
  /** `software`, or the ffmpeg hwaccel the detection decoders use. */
  decoder: string;
  /** Put before the decoder's input. */
  inputArgs: string[];
  notUsed: NotUsed[];
}

export const HWACCELS = ['vaapi', 'qsv', 'cuda'] as const;
export type Hwaccel = (typeof HWACCELS)[number];

/** The device each hwaccel opens when none is set: a GPU render node, the first NVIDIA GPU. */
function defaultDevice(hwaccel: Hwaccel): string | undefined {
  if (hwaccel === 'cuda') return nvidiaGpu() ? '0' : undefined;
  return renderNode();
}

/** Per ffmpeg, its test clip. */
const probeClips = new Map<string, Promise<Buffer>>();
/** A second of H.264 (made once by ffmpeg itself) to try a decoder on. */
function clip(ffmpegPath: string): Promise<Buffer> {
  let made = probeClips.get(ffmpegPath);
  if (made) return made;
  made = run(
    ffmpegPath,
    [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10'],
      ...['-frames:v', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'h264', 'pipe:1'],
    ],
    { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024, timeout: 20_000 },
  ).then(
    (r) => r.stdout,
    (err: Error) => {
      probeClips.delete(ffmpegPath); // tried again at the next start
      throw err;
    },
  );
  probeClips.set(ffmpegPath, made);
  return made;
}

/** Decodes the clip on `hwaccel`, frames kept on it, so a silent fallback to software fails. */
async function tryHwaccel(ffmpegPath: string, hwaccel: Hwaccel, device: string | undefined): Promise<string | null> {
  const input = await clip(ffmpegPath);
  const args = [
    ...['-hide_banner', '-loglevel', 'error', '-hwaccel', hwaccel],
    ...(device ? ['-hwaccel_device', device] : []),
    ...['-hwaccel_output_format', hwaccel, '-f', 'h264', '-i', 'pipe:0', '-f', 'null', '-'],
  ];
  return new Promise((resolve) => {
    const child = spawn(ffmpegPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.on('error', (err) => resolve(err.message));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stderr.trim().split('\n').filter(Boolean);
      resolve(
        code === 0
          ? null
          : (lines.find((l) => /fail|error|cannot|no /i.test(l)) ?? lines.at(-1) ?? `exit ${code ?? signal}`),
      );
    });
  });
}

/**
 * The detection decoders' hwaccel: `auto` takes the first that has a device here and decodes
 * the clip, `none` is software, a named one is tried alone. Software when none works.
 */
export async function chooseDecoder(
  ffmpegPath: string,
  setting: 'auto' | 'none' | Hwaccel,
  device: string | null,
): Promise<DecoderChoice> {
  if (setting === 'none') return { decoder: 'software', inputArgs: [], notUsed: [] };
  const notUsed: NotUsed[] = [];
  const listed = await run(ffmpegPath, ['-hide_banner', '-hwaccels']).then(
    (r) => new Set(r.stdout.split('\n').map((l) => l.trim())),
    () => new Set<string>(),
  );
  for (const hwaccel of setting === 'auto' ? HWACCELS : [setting]) {
    const dev = device ?? defaultDevice(hwaccel);
    if (!listed.has(hwaccel)) {
      notUsed.push({ name: hwaccel, why: `this ffmpeg has no ${hwaccel} (ffmpeg -hwaccels)` });
      continue;
    }
    // Auto tries only what has a device; a named one is tried anyway and says why it failed.
    if (!dev && setting === 'auto') {
      notUsed.push({
        name: hwaccel,
        why: hwaccel === 'cuda' ? 'no NVIDIA GPU (/dev/nvidia0)' : 'no GPU render node (/dev/dri/renderD*)',
      });
      continue;
    }
    // Whatever goes wrong in the trial (even making the clip) only rules this hwaccel out.
    const failed = await tryHwaccel(ffmpegPath, hwaccel, dev).catch(
      (err: Error) => `the test clip could not be made or decoded: ${err.message.split('\n')[0]}`,
    );
    if (failed === null)
      return { decoder: hwaccel, inputArgs: ['-hwaccel', hwaccel, ...(dev ? ['-hwaccel_device', dev] : [])], notUsed };
    notUsed.push({ name: hwaccel, why: `a test decode failed: ${failed}` });
  }
  return { decoder: 'software', inputArgs: [], notUsed };
}
