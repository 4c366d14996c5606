// "Test" for a camera URL before it is saved: one ffprobe of the stream, and what is wrong in
// the same words as a running camera's status (unreachable, unauthorized, no video track, ...).
import { execFile } from 'node:child_process';
import { redactText } from '../../lib/redact.ts';
import type { ProbeResult } from '../cameras/cameras.schemas.ts';
import { classifyFailure, SUPPORTED_CODECS } from './ffmpeg.ts';

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
}

const rate = (r: string | undefined): number | null => {
  const [n, d] = (r ?? '').split('/').map(Number);
  return n && d ? Math.round((n / d) * 100) / 100 : null;
};

export function probeCamera(
  ffprobePath: string,
  url: string,
  transport: 'tcp' | 'udp',
  timeoutMs = 10_000,
): Promise<ProbeResult> {
  // Only network protocols: what answers at the URL cannot point ffprobe at a local file.
  const args = [
    '-v',
    'error',
    '-protocol_whitelist',
    'rtsp,rtsps,rtp,udp,tcp,tls,srtp',
    '-rtsp_transport',
    transport,
    '-timeout',
    String(Math.round(timeoutMs * 800)),
    '-show_streams',
    '-of',
    'json',
    url,
  ];
  return new Promise((resolve) => {
    execFile(
      ffprobePath,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        const none = { codec: null, width: null, height: null, fps: null };
        if (err) {
          const killed = (err as { killed?: boolean }).killed;
          const failure = killed
            ? { reason: 'unreachable', detail: `the camera did not answer within ${timeoutMs / 1000} s` }
            : classifyFailure(redactText(stderr).split('\n'), typeof err.code === 'number' ? err.code : null);
          return resolve({ ok: false, ...failure, ...none });
        }
        const streams = (JSON.parse(stdout || '{}') as { streams?: FfprobeStream[] }).streams ?? [];
        const video = streams.find((s) => s.codec_type === 'video');
        if (!video)
          return resolve({ ok: false, reason: 'no video track', detail: 'the stream has no video track', ...none });
        const found = {
          codec: video.codec_name ?? null,
          width: video.width ?? null,
          height: video.height ?? null,
          fps: rate(video.avg_frame_rate) ?? rate(video.r_frame_rate),
        };
        if (!SUPPORTED_CODECS.has(found.codec ?? '')) {
          return resolve({
            ok: false,
            reason: 'codec not supported',
            detail: `the camera sends ${found.codec ?? 'an unknown codec'}; FogEdge records H.264 and H.265`,
            ...found,
          });
        }
        resolve({ ok: true, reason: null, detail: null, ...found });
      },
    );
  });
}
