// One supervised ffmpeg per camera: started, watched (progress, stalls), restarted
// with backoff, stopped without leaving a process behind.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { LoggerInstance } from 'moleculer';
import { probeDuration } from '../../lib/ffprobe.ts';
import { trimToLastFragment } from '../../lib/media/fragmented-mp4.ts';
import { LiveFeed } from './live-feed.ts';
import { lastKeyframe, RecordingTail } from './recording-tail.ts';
import type { RtmpIngest } from './rtmp-ingest.ts';
import { NotReadyError } from '../../lib/errors.ts';
import { dayDir, startOfSegmentFile as startOfName } from '../../appliance/data-dir.ts';
import type { Camera, CameraStatus } from '../cameras/cameras.schemas.ts';
import type { Segment } from '../recorder/recorder.schemas.ts';
import { redactText } from '../../lib/redact.ts';
import {
  classifyFailure,
  copiesAudio,
  parseAudioInfo,
  parseSegmentLine,
  parseStreamInfo,
  PROGRESS_FD,
  ProgressReader,
  recorderArgs,
  SEGMENTS_FD,
  SUPPORTED_CODECS,
  type Failure,
  type StreamInfo,
} from './ffmpeg.ts';
import { spawnSupervised } from '../../lib/media/supervised-process.ts';
import { ffmpegJpeg } from '../../lib/media/jpeg.ts';

export interface StreamOptions {
  /** Where push cameras arrive; undefined when RTMP push is off. */
  ingest?: RtmpIngest;
  ffmpegPath: string;
  ffprobePath: string;
  mediaDir: string;
  segmentSeconds: number;
  stallSeconds: number;
  restartMinMs: number;
  restartMaxMs: number;
}

const STOP_GRACE_MS = 3000;
const FIRST_FRAGMENT_WAIT_MS = 5000;
const STDERR_LINES_KEPT = 30;

export class CameraStream extends EventEmitter<{ status: [CameraStatus]; segment: [Segment] }> {
  private child: ChildProcess | undefined;
  private stopping = false;
  /** Between deciding to start ffmpeg and having its process. */
  private spawning = false;
  private attempts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Fires when no new frame came for stallSeconds; pushed back on each progress report. */
  private watchdog: NodeJS.Timeout | undefined;
  /** Day folders known to exist: made once, not at every segment. */
  private dayDirsMade = new Set<string>();
  private stderrTail: string[] = [];
  private info: StreamInfo | undefined;
  /** The camera's audio codec as last seen; null: it sends none; undefined: not known yet. */
  private audioCodec: string | null | undefined;
  /** Whether ffmpeg's stderr is in its "Input #0" section now (stream lines there are the camera's). */
  private readingInput = false;
  /** The run copies audio it turned out it cannot copy: started again at once, no backoff. */
  private restartNow = false;
  private lastFrame = 0;
  private lastProgressAt = 0;
  private killedFor: Failure | undefined;
  private openFile: string | undefined;
  /** The segment file before the open one: a snapshot's fallback while the new one has no fragment yet. */
  private previousFile: string | undefined;
  /** Files of this run already reported closed. */
  private reported = new Set<string>();
  private current: CameraStatus;
  /**
   * The stream as fMP4 (live view, detection, snapshots) across restarts: read from the
   * recording while someone watches; a sub-stream's from its ffmpeg's pipe.
   */
  readonly feed = new LiveFeed((wanted) => (wanted ? this.tail?.start(this.openFile) : this.tail?.stop()));
  private readonly tail: RecordingTail | undefined;

  constructor(
    readonly camera: Camera,
    private readonly options: StreamOptions,
    private readonly log: LoggerInstance,
    /** The camera's sub-stream: a live feed only, nothing recorded. */
    readonly sub = false,
  ) {
    super();
    this.current = this.blankStatus('starting');
    if (!sub)
      this.tail = new RecordingTail(this.feed, (err) => this.log.warn(`${this.name}: live view: ${err.message}`));
  }

  /** For the log: the camera, and which of its streams. */
  private get name(): string {
    return this.sub ? `${this.camera.id} (sub-stream)` : this.camera.id;
  }

  get status(): CameraStatus {
    return this.current;
  }

  /** The newest keyframe as JPEG, from the running stream (or the file it is being recorded to). */
  async snapshot(): Promise<{ jpeg: Buffer; frameAt: string }> {
    // Just started: the first fragment ends at the next keyframe, a few seconds at most.
    const deadline = Date.now() + FIRST_FRAGMENT_WAIT_MS;
    let latest = await this.latestKeyframe();
    while (!latest && ['starting', 'online'].includes(this.current.state) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      latest = await this.latestKeyframe();
    }
    if (this.current.state !== 'online' || !latest) {
      throw new NotReadyError(
        `Camera "${this.camera.id}" has no picture yet (${this.current.state}${this.current.reason ? `: ${this.current.reason}` : ''})`,
        'NO_PICTURE',
        {
          state: this.current.state,
          reason: this.current.reason,
        },
      );
    }
    return {
      jpeg: await ffmpegJpeg(this.options.ffmpegPath, [latest.init, ...latest.parts], { format: 'mp4' }),
      frameAt: new Date(latest.at).toISOString(),
    };
  }

  private async latestKeyframe(): Promise<{ init: Buffer; parts: Buffer[]; at: number } | undefined> {
    const { init, keyframe } = this.feed;
    if (init && keyframe) return { init, ...keyframe };
    if (this.sub || !this.openFile) return undefined;
    return (
      (await lastKeyframe(this.openFile)) ?? (this.previousFile ? await lastKeyframe(this.previousFile) : undefined)
    );
  }

  private get cameraDir(): string {
    return path.join(this.options.mediaDir, this.camera.id);
  }

  start(): void {
    this.stopping = false;
    if (!this.camera.enabled || (this.camera.recording.mode === 'off' && !this.sub)) {
      this.setStatus({
        ...this.blankStatus('disabled'),
        reason: this.camera.enabled ? 'recording is off' : 'camera disabled',
      });
      return;
    }
    if (!this.sub && this.waitingForPush()) return;
    void this.spawn();
  }

  /** A push camera started pushing: read it. */
  onPublish(): void {
    if (this.stopping || this.child || this.spawning || this.current.state === 'disabled') return;
    clearTimeout(this.restartTimer);
    this.attempts = 0;
    void this.spawn();
  }

  /** A push camera stopped pushing: close the segment, wait for it to come back. */
  onUnpublish(): void {
    clearTimeout(this.restartTimer);
    if (this.child)
      this.child.kill('SIGINT'); // onExit sees no push and waits
    else this.waitingForPush();
  }

  /** True (and the status says why) when this is a push camera that is not pushing now. */
  private waitingForPush(): boolean {
    if (this.camera.source.kind !== 'rtmp') return false;
    const ingest = this.options.ingest;
    if (ingest?.isPublishing(this.camera.id)) return false;
    this.setStatus({
      ...this.blankStatus('offline'),
      reason: ingest ? 'waiting for push' : 'push off',
      detail: ingest
        ? `waiting for the camera to push RTMP to /live/${this.camera.id} with its stream key`
        : 'RTMP push is turned off on this box (video.rtmp is null)',
    });
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.watchdog);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT'); // ffmpeg closes the current segment cleanly
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    this.feed.end();
    this.tail?.stop();
    this.setStatus({ ...this.blankStatus('disabled'), reason: 'stopped' });
  }

  private blankStatus(state: CameraStatus['state']): CameraStatus {
    return {
      state,
      reason: null,
      detail: null,
      since: new Date().toISOString(),
      codec: this.info?.codec ?? null,
      width: this.info?.width ?? null,
      height: this.info?.height ?? null,
      fps: this.info?.fps ?? null,
      audio: this.camera.audio ? (this.audioCodec ?? null) : null,
      bitrateKbps: null,
      lastFrameAt: this.current?.lastFrameAt ?? null,
      restarts: this.current?.restarts ?? 0,
    };
  }

  private setStatus(next: CameraStatus): void {
    const changed = next.state !== this.current.state || next.reason !== this.current.reason;
    this.current = next;
    if (changed) this.emit('status', next);
  }

  private async ensureDayDirs(now = Date.now()): Promise<void> {
    // Today's and tomorrow's: ffmpeg opens files at midnight without us.
    const missing = [dayDir(now), dayDir(now + 86_400_000)].filter((d) => !this.dayDirsMade.has(d));
    await Promise.all(missing.map((d) => mkdir(path.join(this.cameraDir, d), { recursive: true })));
    for (const d of missing) this.dayDirsMade.add(d);
  }

  private async spawn(): Promise<void> {
    this.spawning = true;
    await this.ensureDayDirs().finally(() => (this.spawning = false));
    if (this.stopping) return;
    const runId = Date.now().toString(36);
    const pushUrl =
      this.camera.source.kind === 'rtmp' && !this.sub ? this.options.ingest?.playUrl(this.camera.id) : undefined;
    // Two reports per stall time: a stall is seen, and a late report leaves half of it to spare.
    // Reports wake the box: every 2 s they were most of its CPU while recording (bench:record).
    const progressSeconds = this.options.stallSeconds / 2;
    const args = recorderArgs({
      camera: this.camera,
      sub: this.sub,
      cameraDir: this.cameraDir,
      segmentSeconds: this.options.segmentSeconds,
      runId,
      pushUrl,
      progressSeconds,
      audioCodec: this.audioCodec,
    });
    this.stderrTail = [];
    this.readingInput = false;
    this.restartNow = false;
    this.killedFor = undefined;
    this.openFile = undefined;
    this.previousFile = undefined;
    this.reported = new Set();
    this.lastFrame = 0;
    this.lastProgressAt = Date.now();
    this.setStatus({ ...this.blankStatus('starting') });

    const child = spawnSupervised(
      this.options.ffmpegPath,
      args,
      {
        stdio: ['ignore', this.sub ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, TZ: 'UTC' },
      },
      this.camera.id,
    );
    this.child = child;
    // A sub-stream's live output: always read, ffmpeg blocks on a full pipe.
    const feed = this.feed;
    child.stdout?.on('data', (chunk: Buffer) => feed.push(chunk));
    child.on('error', (err) => this.log.error(`${this.name}: cannot start ffmpeg: ${err.message}`));

    let stderrRest = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (stderrRest + chunk).split('\n');
      stderrRest = lines.pop() ?? '';
      for (const raw of lines) this.onStderr(redactText(raw));
    });
    const progress = new ProgressReader((p) => this.onProgress(p));
    (child.stdio[PROGRESS_FD] as NodeJS.ReadableStream).setEncoding('utf8');
    (child.stdio[PROGRESS_FD] as NodeJS.ReadableStream).on('data', (c: string) => progress.push(c));
    let listRest = '';
    (child.stdio[SEGMENTS_FD] as NodeJS.ReadableStream).setEncoding('utf8');
    (child.stdio[SEGMENTS_FD] as NodeJS.ReadableStream).on('data', (chunk: string) => {
      const lines = (listRest + chunk).split('\n');
      listRest = lines.pop() ?? '';
      for (const line of lines) void this.onSegmentLine(line);
    });

    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.onStall(child), this.options.stallSeconds * 1000);
    child.on('exit', (code) => void this.onExit(child, code));
  }

  private onStderr(line: string): void {
    this.stderrTail.push(line);
    if (this.stderrTail.length > STDERR_LINES_KEPT) this.stderrTail.shift();
    const opening = /Opening '(.+\.mp4)' for writing/.exec(line);
    if (opening) {
      this.previousFile = this.openFile;
      this.openFile = opening[1]!;
      this.tail?.follow(this.openFile);
    }
    if (/^Input #/.test(line)) this.readingInput = true;
    else if (/^(Output #|Stream mapping)/.test(line)) this.readingInput = false;
    if (this.readingInput && !this.sub) this.onInputAudio(line);
    const info = !this.info || this.current.state === 'starting' ? parseStreamInfo(line) : undefined;
    if (info) {
      this.info = info;
      if (!SUPPORTED_CODECS.has(info.codec)) {
        this.killedFor = {
          reason: 'codec not supported',
          detail: `the camera sends ${info.codec}; FogEdge records H.264 and H.265`,
        };
        this.child?.kill('SIGKILL');
      }
    }
  }

  /** The camera's audio, from the input's stream lines: if this run copies what MP4 cannot hold, again at once. */
  private onInputAudio(line: string): void {
    if (/Stream #0:\d+.*?: Video:/.test(line) && this.audioCodec === undefined) this.audioCodec = null;
    const codec = parseAudioInfo(line);
    if (!codec) return;
    const copied = copiesAudio(this.audioCodec);
    this.audioCodec = codec;
    this.current = { ...this.current, audio: this.camera.audio ? codec : null };
    if (this.camera.audio && copied && !copiesAudio(codec)) {
      this.restartNow = true;
      this.child?.kill('SIGKILL');
    }
  }

  private onProgress(p: { frame: number; bitrateKbps: number | null }): void {
    if (p.frame <= this.lastFrame) return;
    this.lastFrame = p.frame;
    this.lastProgressAt = Date.now();
    this.watchdog?.refresh();
    const base = this.current.state === 'online' ? this.current : { ...this.blankStatus('online') };
    this.attempts = 0;
    this.setStatus({
      ...base,
      state: 'online',
      reason: null,
      detail: null,
      lastFrameAt: new Date().toISOString(),
      bitrateKbps: p.bitrateKbps ?? this.current.bitrateKbps,
    });
  }

  private onStall(child: ChildProcess): void {
    if (this.child !== child || this.stopping || this.killedFor) return;
    const quietMs = Date.now() - this.lastProgressAt;
    this.killedFor = { reason: 'stalled', detail: `no new frame for ${Math.round(quietMs / 1000)} s` };
    this.log.warn(`${this.name}: ${this.killedFor.detail}, restarting`);
    child.kill('SIGKILL');
  }

  private async onSegmentLine(line: string): Promise<void> {
    const seg = parseSegmentLine(line);
    if (!seg) return;
    await this.emitSegment(seg.file, (seg.endOffset - seg.startOffset) * 1000);
    await this.ensureDayDirs();
  }

  /** A segment starts when its file was opened (the name says when) and lasts what it holds. */
  private async emitSegment(file: string, durationMs: number): Promise<void> {
    this.reported.add(file);
    const start = startOfName(file);
    const rel = path.join(this.camera.id, dayDir(start), file);
    const bytes = await stat(path.join(this.options.mediaDir, rel)).then(
      (s) => s.size,
      () => 0,
    );
    if (Number.isNaN(start) || bytes <= 0 || durationMs <= 0) return;
    // bits per ms = kbit/s; the segment muxer gives ffmpeg's progress no bitrate of its own.
    this.current = { ...this.current, bitrateKbps: Math.round((bytes * 8) / durationMs) };
    this.emit('segment', { camera: this.camera.id, path: rel, start, end: start + Math.round(durationMs), bytes });
  }

  private async onExit(child: ChildProcess, code: number | null): Promise<void> {
    if (this.child === child) {
      clearTimeout(this.watchdog);
      this.child = undefined;
    }
    // A segment cut short (kill, crash of the camera) is still playable: index what it holds.
    const file = this.openFile && path.basename(this.openFile);
    if (this.openFile && file && !this.reported.has(file)) {
      // Killed mid-write: cut the torn last fragment so the file plays to its end.
      const kept = await trimToLastFragment(this.openFile).catch(() => 0);
      if (kept > 0) await this.emitSegment(file, (await probeDuration(this.options.ffprobePath, this.openFile)) * 1000);
    }
    if (this.stopping || (!this.sub && this.waitingForPush())) return;
    if (this.restartNow) return void this.spawn();
    const failure = this.killedFor ?? classifyFailure(this.stderrTail, code);
    const delay =
      Math.min(this.options.restartMaxMs, this.options.restartMinMs * 2 ** this.attempts) * (0.8 + Math.random() * 0.4);
    this.attempts++;
    this.log.warn(`${this.name}: offline (${failure.reason}: ${failure.detail}); retry in ${Math.round(delay)} ms`);
    this.setStatus({
      ...this.blankStatus('offline'),
      reason: failure.reason,
      detail: failure.detail,
      restarts: this.current.restarts + 1,
    });
    this.restartTimer = setTimeout(() => void this.spawn(), delay);
  }
}
