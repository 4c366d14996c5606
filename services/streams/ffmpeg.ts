// The ffmpeg side of a camera stream: the command line, and reading what ffmpeg
// says (stream info on stderr, progress on a pipe, closed segments on a pipe).
import type { Camera } from '../cameras/cameras.schemas.ts';
import { segmentPattern } from '../../appliance/data-dir.ts';

export interface RecorderArgs {
  camera: Camera;
  /** The camera's sub-stream: read for its live feed only, nothing recorded. */
  sub?: boolean;
  /** Folder of this camera's recordings: <media>/<camera>. */
  cameraDir: string;
  segmentSeconds: number;
  /** Distinguishes this run's files from an earlier run's in the same second. */
  runId: string;
  /** Push cameras: where their ffmpeg reads the RTMP push back from the ingest. */
  pushUrl?: string;
  /** How often ffmpeg reports progress: often enough to see a stall, rarely enough to cost little. */
  progressSeconds: number;
  /** The camera's audio codec as last seen (undefined: not known yet). */
  audioCodec?: string | null;
}

/** File descriptors of the extra pipes: progress blocks, and the CSV list of closed segments. */
export const PROGRESS_FD = 3;
export const SEGMENTS_FD = 4;

export function recorderArgs({
  camera,
  sub,
  cameraDir,
  segmentSeconds,
  runId,
  pushUrl,
  progressSeconds,
  audioCodec,
}: RecorderArgs): string[] {
  const source = sub && camera.subStream ? camera.subStream : camera.source;
  const input =
    source.kind === 'rtsp'
      ? ['-rtsp_transport', source.transport, '-timeout', '5000000' /* µs, socket I/O */, '-i', source.url]
      : source.kind === 'rtmp'
        ? ['-rw_timeout', '5000000', '-i', pushUrl ?? 'rtmp://127.0.0.1/no-ingest']
        : ['-re', '-stream_loop', '-1', '-i', source.path];
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'info',
    '-nostats',
    '-progress',
    `pipe:${PROGRESS_FD}`,
    '-stats_period',
    String(progressSeconds),
    '-fflags',
    '+genpts+discardcorrupt',
    ...input,
    // The recording; live view and snapshots read it as it is written (RecordingTail). A
    // sub-stream records nothing: its live output is fragmented MP4 on stdout instead.
    ...(sub ? liveOutput() : segmentOutput(cameraDir, segmentSeconds, runId, audioArgs(camera, audioCodec))),
  ];
}

/**
 * The camera's first audio track, if it has one (`?`: a camera without works as before): AAC is
 * copied; anything else (G.711 from most IP cameras and doorbells) becomes AAC, which MP4 and
 * browsers play. Only the audio is encoded; the video is always copied. An unknown codec is
 * taken as AAC: the stream's info then tells (CameraStream restarts at once if it was not).
 */
export function audioArgs(camera: Pick<Camera, 'audio'>, codec: string | null | undefined): string[] {
  if (!camera.audio) return ['-an'];
  return ['-map', '0:a:0?', ...(copiesAudio(codec) ? ['-c:a', 'copy'] : ['-c:a', 'aac', '-b:a', '64k'])];
}

/** Whether the recording copies a camera's sound in this codec as it is (unknown or none: yes). */
export function copiesAudio(codec: string | null | undefined): boolean {
  return codec === undefined || codec === null || codec === 'aac';
}

/**
 * A fragment per frame: a frame reaches live view and the detector as soon as the camera sent it
 * (a fragment holds its frames back until it is complete). The cost is a fragment header per
 * frame, about 1 % of a camera's bitrate.
 */
export const FRAGMENTS = `+frag_keyframe+frag_every_frame+empty_moov+default_base_moof`;

function liveOutput(): string[] {
  return ['-map', '0:v:0', '-c', 'copy', '-f', 'mp4', '-movflags', FRAGMENTS, '-flush_packets', '1', 'pipe:1'];
}

/** The recording: segments of stream-copied fragmented MP4, with their list on a pipe. */
function segmentOutput(cameraDir: string, segmentSeconds: number, runId: string, audio: string[]): string[] {
  return [
    '-map',
    '0:v:0',
    ...audio,
    '-c:v',
    'copy',
    '-f',
    'segment',
    '-segment_time',
    String(segmentSeconds),
    '-segment_format',
    'mp4',
    // Fragmented MP4, each fragment written out as soon as it is complete: the open file is
    // the live stream, and a file cut by a crash stays playable up to its last fragment.
    '-segment_format_options',
    `movflags=${FRAGMENTS}:flush_packets=1`,
    '-reset_timestamps',
    '1',
    '-avoid_negative_ts',
    'make_zero',
    '-strftime',
    '1',
    '-segment_list',
    `pipe:${SEGMENTS_FD}`,
    '-segment_list_type',
    'csv',
    segmentPattern(cameraDir, runId),
  ];
}

export interface StreamInfo {
  codec: string;
  width: number | null;
  height: number | null;
  fps: number | null;
}

/** "Stream #0:0: Video: h264 (Main), yuv420p(progressive), 1280x720, 15 fps, ..." */
export function parseStreamInfo(line: string): StreamInfo | undefined {
  const m = /Stream #0:\d+.*?: Video: (\w+)(.*)$/.exec(line);
  if (!m) return undefined;
  const size = /, (\d{2,5})x(\d{2,5})/.exec(m[2]!);
  const fps = /, ([\d.]+) fps/.exec(m[2]!);
  return {
    codec: m[1]!,
    width: size ? Number(size[1]) : null,
    height: size ? Number(size[2]) : null,
    fps: fps ? Number(fps[1]) : null,
  };
}

/** "Stream #0:1: Audio: pcm_alaw, 8000 Hz, mono, s16, 64 kb/s": the codec. */
export function parseAudioInfo(line: string): string | undefined {
  return /Stream #0:\d+.*?: Audio: (\w+)/.exec(line)?.[1];
}

export const SUPPORTED_CODECS = new Set(['h264', 'hevc']);

export interface Progress {
  frame: number;
  bitrateKbps: number | null;
}

/** Splits ffmpeg's -progress output (key=value lines, each block ending in progress=...). */
export class ProgressReader {
  private buffer = '';
  private block: Record<string, string> = {};

  constructor(private readonly onProgress: (p: Progress) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq);
      this.block[key] = line.slice(eq + 1);
      if (key === 'progress') {
        const b = this.block;
        this.block = {};
        const bitrate = /([\d.]+)kbits\/s/.exec(b['bitrate'] ?? '');
        this.onProgress({ frame: Number(b['frame'] ?? 0), bitrateKbps: bitrate ? Number(bitrate[1]) : null });
      }
    }
  }
}

/** One line of ffmpeg's segment list: a segment file it has closed. */
export interface SegmentListEntry {
  file: string;
  /** Seconds from the start of this run's stream. */
  startOffset: number;
  endOffset: number;
}

/** Reads the CSV segment list: "name,start,end" per closed segment. */
export function parseSegmentLine(line: string): SegmentListEntry | undefined {
  const m = /^(.+\.mp4),([\d.]+),([\d.]+)$/.exec(line.trim());
  return m ? { file: m[1]!, startOffset: Number(m[2]), endOffset: Number(m[3]) } : undefined;
}

export interface Failure {
  reason:
    | 'unauthorized'
    | 'not found'
    | 'unreachable'
    | 'no video track'
    | 'not a video stream'
    | 'codec not supported'
    | 'stalled'
    | 'disk full'
    | 'exited';
  detail: string;
}

/** What went wrong, from ffmpeg's last messages, in words an installer can act on. */
export function classifyFailure(lines: string[], exitCode: number | null): Failure {
  const text = lines.join('\n');
  const rules: Array<[RegExp, Failure['reason'], string]> = [
    // The box's own disk, not the camera: said first, whatever else ffmpeg printed after it.
    [/No space left on device/i, 'disk full', 'the box could not write the recording: its disk is full'],
    [/401 Unauthorized/i, 'unauthorized', 'the camera refused the user name or password (401)'],
    [/404 Not Found|Stream not found/i, 'not found', 'the camera has no stream at that path (404)'],
    [/Connection refused/i, 'unreachable', 'nothing listens at that address and port (connection refused)'],
    [/No route to host|Network is unreachable/i, 'unreachable', 'no route to the camera'],
    [
      /Name or service not known|Temporary failure in name resolution|nodename nor servname/i,
      'unreachable',
      'the camera host name does not resolve',
    ],
    [/timed out|Connection timed out/i, 'unreachable', 'the camera did not answer in time'],
    [/matches no streams|does not contain any stream/i, 'no video track', 'the stream has no video track'],
    [
      /Invalid data found|method DESCRIBE failed|Protocol not found/i,
      'not a video stream',
      'what answers at that address is not an RTSP video stream',
    ],
  ];
  for (const [pattern, reason, detail] of rules) if (pattern.test(text)) return { reason, detail };
  // ffmpeg's "Last message repeated N times" says nothing; the message before it does.
  const last = lines.filter((l) => l.trim() && !/Last message repeated \d+ times/.test(l)).slice(-1)[0] ?? '';
  return {
    reason: 'exited',
    detail: `ffmpeg exited with code ${exitCode ?? 'signal'}${last ? `: ${last.trim()}` : ''}`,
  };
}
