// A camera's sound for its WebRTC viewers. Browsers take Opus or G.711 over WebRTC, not the
// AAC the box records, so one ffmpeg per camera and codec (audio only, while someone listens)
// decodes the feed's AAC and encodes it in 20 ms packets that every viewer's track sends.
// Sessions hand in the audio fragments they get; each is written once (by its time), whichever
// session it came from, so viewers may come and go without a gap.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fragmentTiming } from '../../lib/media/fragmented-mp4.ts';
import { LIVE_FMP4_STDIN, spawnSupervised } from '../../lib/media/supervised-process.ts';

export type AudioCodec = 'opus' | 'pcma' | 'pcmu';

/** Samples in one 20 ms packet at each codec's RTP clock. */
export const PACKET_SAMPLES: Record<AudioCodec, number> = { opus: 960, pcma: 160, pcmu: 160 };
export const CLOCK_RATE: Record<AudioCodec, number> = { opus: 48_000, pcma: 8000, pcmu: 8000 };

export class AudioFeed extends EventEmitter<{ packet: [Buffer]; idle: [] }> {
  private encoder: ChildProcess | undefined;
  private init: Buffer | undefined;
  /** The newest audio fragment written, by its start on the track's clock. */
  private lastStart = -1;
  private listening = 0;
  private readonly output: OggPackets | RawPackets;

  constructor(
    private readonly camera: string,
    readonly codec: AudioCodec,
    private readonly ffmpegPath: string,
  ) {
    super();
    this.output =
      codec === 'opus'
        ? new OggPackets((p) => this.emit('packet', p))
        : new RawPackets(160, (p) => this.emit('packet', p));
  }

  /** A viewer joins (true) or leaves (false); the encoder runs while anyone listens. */
  listen(joining: boolean): number {
    this.listening += joining ? 1 : -1;
    if (this.listening <= 0) {
      this.stop();
      this.emit('idle');
    }
    return this.listening;
  }

  /** The feed's init segment; a different one (the camera's format changed) starts the encoder again. */
  pushInit(init: Buffer): void {
    if (this.init?.equals(init)) return;
    this.stop();
    this.init = init;
  }

  /** An audio fragment, from any session of the camera; written once, in order. */
  pushFragment(moof: Buffer, mdat: Buffer): void {
    if (!this.init || this.listening <= 0) return;
    const start = fragmentTiming(moof, this.init)?.start;
    if (start === undefined || start <= this.lastStart) return;
    this.lastStart = start;
    const encoder = (this.encoder ??= this.start(this.init));
    if (!encoder.stdin?.writable) return;
    encoder.stdin.write(moof);
    encoder.stdin.write(mdat);
  }

  stop(): void {
    this.encoder?.kill('SIGKILL');
    this.encoder = undefined;
    this.lastStart = -1;
    this.output.reset();
  }

  private start(init: Buffer): ChildProcess {
    const out =
      this.codec === 'opus'
        ? ['-c:a', 'libopus', '-b:a', '32k', '-application', 'lowdelay', '-frame_duration', '20', '-ar', '48000']
        : ['-c:a', this.codec === 'pcma' ? 'pcm_alaw' : 'pcm_mulaw', '-ar', '8000'];
    const format =
      this.codec === 'opus'
        ? ['-f', 'ogg', '-page_duration', '20000']
        : ['-f', this.codec === 'pcma' ? 'alaw' : 'mulaw'];
    const child = spawnSupervised(
      this.ffmpegPath,
      [
        '-hide_banner',
        '-nostdin',
        '-loglevel',
        'error',
        ...LIVE_FMP4_STDIN,
        '-map',
        '0:a:0',
        '-ac',
        '1',
        ...out,
        ...format,
        '-flush_packets',
        '1',
        'pipe:1',
      ],
      { stdio: ['pipe', 'pipe', 'ignore'] },
      this.camera,
    );
    child.stdin!.on('error', () => undefined); // it died: the next fragment starts another
    child.stdout!.on('data', (chunk: Buffer) => this.output.push(chunk));
    child.on('exit', () => {
      if (this.encoder === child) this.stop();
    });
    child.stdin!.write(init);
    return child;
  }
}

/** Opus packets out of an Ogg stream (RFC 7845): the header packets are skipped. */
class OggPackets {
  private buffer: Buffer = Buffer.alloc(0);
  private partial: Buffer[] = [];

  constructor(private readonly onPacket: (packet: Buffer) => void) {}

  reset(): void {
    this.buffer = Buffer.alloc(0);
    this.partial = [];
  }

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      if (this.buffer.length < 27) return;
      if (this.buffer.toString('latin1', 0, 4) !== 'OggS') return this.reset(); // lost sync: start over
      const segments = this.buffer[26]!;
      const headerLength = 27 + segments;
      if (this.buffer.length < headerLength) return;
      const lacing = this.buffer.subarray(27, headerLength);
      const bodyLength = lacing.reduce((sum, v) => sum + v, 0);
      if (this.buffer.length < headerLength + bodyLength) return;
      let at = headerLength;
      for (const size of lacing) {
        this.partial.push(this.buffer.subarray(at, at + size));
        at += size;
        if (size < 255) {
          const packet = Buffer.concat(this.partial);
          this.partial = [];
          const head = packet.toString('latin1', 0, 8);
          if (head !== 'OpusHead' && head !== 'OpusTags') this.onPacket(packet);
        }
      }
      this.buffer = this.buffer.subarray(headerLength + bodyLength);
    }
  }
}

/** Fixed-size packets of a raw stream (G.711: one byte a sample). */
class RawPackets {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(
    private readonly size: number,
    private readonly onPacket: (packet: Buffer) => void,
  ) {}

  reset(): void {
    this.buffer = Buffer.alloc(0);
  }

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= this.size) {
      this.onPacket(this.buffer.subarray(0, this.size));
      this.buffer = this.buffer.subarray(this.size);
    }
  }
}
