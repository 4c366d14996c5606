// RTMP ingest for push cameras (our camera agent, OBS, any RTMP encoder): node-media-server
// takes the push at rtmp://box:1935/live/<camera>?key=<stream key>; a camera's own
// supervised ffmpeg then reads it back over loopback and records it like an RTSP camera.
// Unknown cameras and wrong keys are refused at publish; playing needs a signed URL that
// only this process can make, so nobody on the LAN watches through the RTMP port.
import { createHash, randomBytes } from 'node:crypto';
import { streamKeyMatches } from '../../lib/secrets.ts';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import type { LoggerInstance } from 'moleculer';

const require = createRequire(import.meta.url);

interface NmsSession {
  id: string;
  ip: string;
  streamApp: string;
  streamName: string;
  streamQuery: Record<string, string | string[] | undefined>;
  socket?: net.Socket;
  /** node-media-server's state of the stream path (its timeline, caches, the last publish). */
  broadcast?: { _lastDts: Record<number, number> };
}
interface Nms {
  on(event: string, listener: (session: NmsSession) => void): void;
  run(): Promise<void>;
  stop(): Promise<void>;
}

/** node-media-server's process-wide event emitter (what its `on` registers with). */
const nmsEvents = () =>
  (require('node-media-server/src/core/context.js') as { eventEmitter: EventEmitter }).eventEmitter;

/**
 * node-media-server throws out of its socket handler on some streams a pusher sends (a
 * timestamp past 32 bits while it relays them), which would end the whole box. Its parser is
 * made to return the error instead: that session's socket is ended, everyone else goes on.
 */
function guardParser(): void {
  const Rtmp = require('node-media-server/src/protocol/rtmp.js') as {
    prototype: { parserData(b: Buffer): string | null; guarded?: boolean };
  };
  if (Rtmp.prototype.guarded) return;
  const parse = Rtmp.prototype.parserData;
  Rtmp.prototype.parserData = function (this: unknown, buffer: Buffer) {
    try {
      return parse.call(this, buffer);
    } catch (err) {
      return `the stream cannot be relayed (${(err as Error).message})`;
    }
  };
  Rtmp.prototype.guarded = true;
}

export const PUSH_APP = 'live';
/** Signed play URLs stay valid this long; our ffmpeg uses one as soon as it is made. */
const PLAY_SIGNATURE_TTL_S = 3600;

/** Fails with a clear error when the port is taken (node-media-server would exit the process). */
function checkPortFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `RTMP port ${host}:${port} is not free (${err.code}); set video.rtmp.port to another port, or null to turn RTMP push off`,
        ),
      ),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

export interface RtmpIngestOptions {
  host: string;
  port: number;
  /** node-media-server keeps a small JSON store; it goes under the data root. */
  storeDir: string;
}

export class RtmpIngest extends EventEmitter<{ publish: [string]; unpublish: [string] }> {
  private nms: Nms | undefined;
  /** Per boot: signs our own play URLs. */
  private readonly playSecret = randomBytes(24).toString('hex');
  private readonly keyHashes = new Map<string, string>();
  private readonly publishers = new Map<string, { session: string; keyHash: string; socket?: net.Socket }>();

  constructor(
    private readonly options: RtmpIngestOptions,
    private readonly log: LoggerInstance,
  ) {
    super();
  }

  /** Which cameras may push, with the hash of each one's key. */
  allow(cameraId: string, keyHash: string | undefined): void {
    if (keyHash) this.keyHashes.set(cameraId, keyHash);
    else this.keyHashes.delete(cameraId);
    // A new key (or a camera removed) cuts off whoever pushes with the old one.
    const publisher = this.publishers.get(cameraId);
    if (publisher && publisher.keyHash !== keyHash) {
      this.log.info(`${cameraId}: stream key changed or camera removed, ending its RTMP push`);
      publisher.socket?.destroy();
    }
  }

  isPublishing(cameraId: string): boolean {
    return this.publishers.has(cameraId);
  }

  /** Where the camera's own ffmpeg reads the push back. */
  playUrl(cameraId: string): string {
    const path = `/${PUSH_APP}/${cameraId}`;
    const exp = Math.floor(Date.now() / 1000) + PLAY_SIGNATURE_TTL_S;
    // node-media-server's signed-URL scheme: sign=<expiry>-md5(path-expiry-secret).
    const sign = `${exp}-${createHash('md5').update(`${path}-${exp}-${this.playSecret}`).digest('hex')}`;
    return `rtmp://127.0.0.1:${this.options.port}${path}?sign=${sign}`;
  }

  async start(): Promise<void> {
    await checkPortFree(this.options.host, this.options.port);
    const NodeMediaServer = require('node-media-server') as new (config: object) => Nms;
    guardParser();
    // Its log goes into ours (it would print to stdout): its errors are refused clients, a warning here.
    const nmsLogger = require('node-media-server/src/core/logger.js') as {
      log: (message: string, level?: string) => void;
    };
    nmsLogger.log = (message, level = 'info') => {
      if (level === 'error' || level === 'warn') this.log.warn(`rtmp: ${message}`);
      else this.log.debug(`rtmp: ${message}`);
    };
    this.nms = new NodeMediaServer({
      bind: this.options.host,
      rtmp: { port: this.options.port, chunk_size: 60000, gop_cache: true, ping: 30, ping_timeout: 60 },
      auth: { play: true, publish: false, secret: this.playSecret },
      store: { path: this.options.storeDir },
    });
    // node-media-server's events go through one emitter for the whole process, which outlives
    // a stopped server: our listener is taken off at stop, or a restarted ingest would be
    // judged by this one's old keys as well.
    this.nms.on('prePublish', this.onPrePublish);
    await this.nms.run();
    this.log.info(`RTMP push ingest on ${this.options.host}:${this.options.port}`);
  }

  async stop(): Promise<void> {
    nmsEvents().off('prePublish', this.onPrePublish);
    await this.nms?.stop();
    this.nms = undefined;
    this.publishers.clear();
  }

  private readonly onPrePublish = (session: NmsSession) => this.checkPublisher(session);

  private checkPublisher(session: NmsSession): void {
    const camera = session.streamName;
    const key = session.streamQuery['key'];
    const expected = this.keyHashes.get(camera);
    let refusal: string | undefined;
    if (session.streamApp !== PUSH_APP)
      refusal = `unknown application "${session.streamApp}" (push to /${PUSH_APP}/<camera>)`;
    else if (!expected) refusal = `no push camera "${camera}"`;
    else if (typeof key !== 'string' || !streamKeyMatches(key, expected))
      refusal = `wrong or missing stream key for camera "${camera}"`;
    else if (this.publishers.has(camera)) refusal = `camera "${camera}" is already pushing`;
    if (refusal) {
      this.log.warn(`RTMP push from ${session.ip} refused: ${refusal}`);
      session.socket?.destroy(); // node-media-server has no refusal hook: the connection goes
      return;
    }
    // node-media-server "resumes" a push from the same address within 30 s, shifting its
    // timestamps past the last one's; one bad last timestamp then poisons every push after it.
    // Each push is its own timeline here (the box's reader restarts with it): no shift.
    if (session.broadcast) session.broadcast._lastDts = {};
    this.publishers.set(camera, { session: session.id, keyHash: expected!, socket: session.socket });
    this.log.info(`${camera}: pushing RTMP from ${session.ip}`);
    // The socket's close, not node-media-server's donePublish (which waits 30 s for a resume).
    session.socket?.once('close', () => {
      if (this.publishers.get(camera)?.session !== session.id) return;
      this.publishers.delete(camera);
      this.log.info(`${camera}: RTMP push ended`);
      this.emit('unpublish', camera);
    });
    this.emit('publish', camera);
  }
}
