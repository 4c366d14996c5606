// The box's one config file (YAML or JSON), its schema and defaults, and the
// environment overrides. Read once at start; an invalid file stops the box.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { redactUrl } from '../lib/redact.ts';
import { defaultLockFile } from '../lib/update-lock.ts';
import { projectPath } from '../lib/project-root.ts';

/** Every service a box can run; `services` / SERVICES picks a subset per node. */
export const SERVICE_NAMES = [
  'api',
  'accounts',
  'system',
  'cameras',
  'streams',
  'recorder',
  'detector',
  'events',
  'devices',
  'mqtt',
  'sync',
  'admp',
  'usp',
  'modes',
  'automations',
  'webrtc',
  'push',
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/**
 * The box's id when none is set: balena's device UUID when it runs on balena (a container's host
 * name changes with every release), else the host name.
 */
export function defaultBoxId(env: NodeJS.ProcessEnv = process.env, hostname = os.hostname()): string {
  const from = (value: string) =>
    value
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+/, '')
      .slice(0, 63);
  return (env['BALENA_DEVICE_UUID'] && from(env['BALENA_DEVICE_UUID'])) || from(hostname) || 'fogedge';
}

/** Most bytes a store may take, at least 1 MiB; null: no quota, only the free-space floor. */
const QuotaBytes = z
  .number()
  .int()
  .min(1024 * 1024)
  .nullable()
  .default(null);
/** Free space a disk always keeps, bytes; 1 GiB unless set. */
const FloorBytes = z
  .number()
  .int()
  .min(0)
  .default(1024 ** 3);

export const ConfigSchema = z.strictObject({
  /** Moleculer node id; default hostname-pid. */
  nodeId: z.string().min(1).optional(),
  /** null: every service in this process, no external server. */
  transporter: z
    .string()
    .regex(/^nats:\/\/\S+$/, 'a NATS URL such as nats://127.0.0.1:4222')
    .nullable()
    .default(null),
  /** The services this node runs. */
  services: z
    .array(z.enum(SERVICE_NAMES))
    .min(1)
    .default([...SERVICE_NAMES]),
  /**
   * The services the whole deployment runs, over all its nodes: health judges these (one with no
   * instance is degraded) and leaves the others out, so a box without remote management, or a
   * split of a few services, is ok. Default: all.
   */
  deployment: z
    .strictObject({
      services: z
        .array(z.enum(SERVICE_NAMES))
        .min(1)
        .default([...SERVICE_NAMES]),
    })
    .prefault({}),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  /** Data root: db/, media/, outbox/, tls/ live under it. */
  dataDir: z.string().min(1).default('./data'),
  http: z
    .strictObject({
      host: z.string().min(1).default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Largest accepted request body, bytes. */
      bodyLimitBytes: z
        .number()
        .int()
        .min(1024)
        .max(64 * 1024 * 1024)
        .default(1024 * 1024),
      /** PEM files; when set the API and web UI are served over HTTPS only. */
      tls: z
        .strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) })
        .nullable()
        .default(null),
    })
    .prefault({}),
  auth: z
    .strictObject({
      sessionTtlHours: z
        .number()
        .min(1)
        .max(24 * 90)
        .default(24 * 7),
      /** Failed logins allowed per remote address, then per account, in one window. */
      maxFailuresPerAddress: z.number().int().min(1).max(1000).default(20),
      maxFailuresPerAccount: z.number().int().min(1).max(1000).default(10),
      failureWindowMinutes: z
        .number()
        .min(1)
        .max(24 * 60)
        .default(15),
    })
    .prefault({}),
  video: z
    .strictObject({
      /** The ffmpeg binary: Debian's by default. */
      ffmpegPath: z.string().min(1).default('ffmpeg'),
      ffprobePath: z.string().min(1).default('ffprobe'),
      /** Recording segment length, s (cut at the next keyframe after it). */
      segmentSeconds: z.number().int().min(1).max(600).default(10),
      /** No new frame for this long: the stream is stalled and restarted, s. */
      stallSeconds: z.number().min(2).max(300).default(10),
      restartMinMs: z.number().int().min(100).max(60_000).default(1000),
      restartMaxMs: z.number().int().min(1000).max(600_000).default(30_000),
      /**
       * Most bytes everything the box stores may take: recordings, clips, snapshots, stores, the
       * outbox (cached clips go first, then the oldest recordings); null: only the free-space floor.
       */
      quotaBytes: QuotaBytes,
      /** Free space the disk always keeps, bytes (cached clips go first, then the oldest recordings). */
      minFreeBytes: FloorBytes,
      /** Most bytes cached clips may take; a longer clip is refused with the reason (507). */
      clipCacheBytes: z
        .number()
        .int()
        .min(1024 * 1024)
        .default(512 * 1024 ** 2),
      /** A cached clip nobody asked for in this long goes, hours. */
      clipCacheHours: z
        .number()
        .min(0.01)
        .max(24 * 365)
        .default(24),
      /** Retention of recordings whose camera was removed, days. */
      removedCameraRetainDays: z.number().min(0.01).max(3650).default(7),
      /**
       * Events mode: footage waits this long past its pre-roll for an event to claim it before it
       * goes (an event is stored a little after it starts), s.
       */
      eventClaimSeconds: z.number().min(1).max(3600).default(60),
      /** Live viewers one camera may have at once (on its node); one more is refused with 429. */
      maxViewersPerCamera: z.number().int().min(1).max(1000).default(20),
      /** Live viewers one user may have at once, over all cameras (a grid of every camera is one each). */
      maxViewersPerUser: z.number().int().min(1).max(1000).default(40),
      /**
       * The archive tier: a second disk or a NAS mount. Segments older than afterHours (or the
       * oldest, when the hot disk runs short) move there and stay playable; null: one disk.
       */
      archive: z
        .strictObject({
          path: z.string().min(1),
          /** Segments move once they are this old, hours (0: as soon as they close). */
          afterHours: z
            .number()
            .min(0)
            .max(24 * 3650)
            .default(24),
          /**
           * The path must be a mount of its own (another filesystem than its parent folder), so an
           * unmounted NAS is seen as such and never fills the box's own disk.
           */
          requireMount: z.boolean().default(true),
          /** Free space the archive keeps; below it the archive's oldest segments go, bytes. */
          minFreeBytes: FloorBytes,
          /** Most bytes archived recordings may take; null: only the free-space floor. */
          quotaBytes: QuotaBytes,
          /** Copy rate cap, so moves never starve recording of the disk, bytes/s; null: none. */
          moveBytesPerSecond: z
            .number()
            .int()
            .min(64 * 1024)
            .nullable()
            .default(32 * 1024 ** 2),
        })
        .nullable()
        .default(null),
      /** How often retention runs, s. */
      retentionIntervalSeconds: z.number().min(1).max(3600).default(60),
      /** How often the recordings index looks for segments it lacks (cut by a crash), s. */
      healIntervalSeconds: z.number().min(1).max(3600).default(60),
      /** RTMP push ingest (node-media-server) for push cameras; null: off. */
      rtmp: z
        .strictObject({
          host: z.string().min(1).default('0.0.0.0'),
          port: z.number().int().min(1).max(65535).default(1935),
        })
        .nullable()
        .prefault({}),
      /** A camera that streams the bundled street clip, so a new box shows video at once. */
      demoCamera: z.boolean().default(true),
    })
    .prefault({}),
  detector: z
    .strictObject({
      /** Off: no camera is detected on, whatever its own setting (a box without CPU to spare). */
      enabled: z.boolean().default(true),
      /** A YOLOX-format ONNX model; its labels in <model>.labels beside it, or labelsPath. */
      modelPath: z.string().min(1).default(projectPath('models', 'yolox_nano.onnx')),
      labelsPath: z.string().min(1).nullable().default(null),
      /** Lowest score of a detection, unless the camera sets one for the label. */
      minScore: z.number().min(0.05).max(1).default(0.5),
      /** Threads of one inference. */
      threads: z.number().int().min(1).max(64).default(1),
      /** onnxruntime execution providers to try, in order, the CPU after them; auto: any this
       *  build has that proves faster than the CPU. detector.status says which one runs. */
      executionProviders: z
        .union([
          z.literal('auto'),
          z
            .array(
              z.enum([
                'cpu',
                'cuda',
                'tensorrt',
                'openvino',
                'coreml',
                'dml',
                'webgpu',
                'rocm',
                'migraphx',
                'qnn',
                'xnnpack',
              ]),
            )
            .min(1),
        ])
        .default('auto'),
      /** The detection decoders' hardware decoding (ffmpeg -hwaccel): auto takes one whose
       *  device is here and that decodes a test clip; none is software. */
      hwaccel: z.enum(['auto', 'none', 'vaapi', 'qsv', 'cuda']).default('auto'),
      /** Its device (a /dev/dri render node, a CUDA GPU's index); null: found by itself. */
      hwaccelDevice: z.string().min(1).nullable().default(null),
      /** Inferences run at once for all cameras of a node; null: one a core. */
      concurrentInferences: z.number().int().min(1).max(64).nullable().default(null),
      /** Width of event snapshots, px. */
      snapshotWidth: z.number().int().min(160).max(3840).default(960),
      /** A stationary object is re-checked this often without motion, s. */
      stationaryCheckSeconds: z.number().min(1).max(600).default(5),
      /** An object still for this long ends its event (a parked car makes one event), s. */
      stationaryEndSeconds: z.number().min(1).max(3600).default(30),
      /** Event clips start this long before the object was seen and end this long after, s. */
      preRollSeconds: z.number().min(0).max(120).default(5),
      postRollSeconds: z.number().min(0).max(120).default(5),
      /** A review item closes once nothing has been in view for this long, s. */
      reviewIdleSeconds: z.number().min(1).max(600).default(5),
      /** A review item longer than this closes, and what is still in view opens the next one, s. */
      reviewMaxSeconds: z.number().min(10).max(86_400).default(300),
    })
    .prefault({}),
  /** The local MQTT broker; null: none on this box. */
  mqtt: z
    .strictObject({
      host: z.string().min(1).default('0.0.0.0'),
      port: z.number().int().min(1).max(65535).default(1883),
      /** A PUBLISH with a larger payload is refused and its client disconnected, bytes. */
      maxPayloadBytes: z
        .number()
        .int()
        .min(1024)
        .max(256 * 1024 * 1024)
        .default(1024 * 1024),
      /** Messages kept for one offline persistent session; past it the oldest are dropped (logged). */
      maxQueuedPerClient: z.number().int().min(1).max(1_000_000).default(1000),
      /** Before sign-in a packet (the CONNECT, with its will) may be at most this large, bytes. */
      maxConnectBytes: z
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(64 * 1024),
      /** Connections not signed in yet that the broker holds at once; more are closed at accept. */
      maxPendingConnections: z.number().int().min(1).max(100_000).default(256),
      /** Subscriptions one client may hold; more are refused (SUBACK 0x80). */
      maxSubscriptionsPerClient: z.number().int().min(1).max(100_000).default(500),
      /**
       * A device's messages that reach the box's services (its state, the automations' triggers)
       * per second at most; the broker still delivers the rest to subscribers. A flood is told once a minute.
       */
      deviceMessagesPerSecond: z.number().int().min(1).max(10_000).default(20),
      /** Home Assistant MQTT discovery topics' prefix; null: no discovery. */
      discoveryPrefix: z
        .string()
        .regex(/^[\w-]+$/, 'one topic level')
        .nullable()
        .default('homeassistant'),
      /**
       * Bytes the broker holds for one client that reads slower than messages come; past it
       * (or mqtt.drainTimeoutMs without reading) the client is disconnected. Nobody else waits
       * for a slow reader. At least twice mqtt.maxPayloadBytes is used.
       */
      maxClientBufferBytes: z
        .number()
        .int()
        .min(64 * 1024)
        .max(1024 ** 3)
        .default(8 * 1024 * 1024),
      /** A client that does not read its messages for this long is disconnected, ms. */
      drainTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
      /**
       * After a crash of the box, the last wills of clients that were connected go out unless the
       * client is back within this long (aedes sweeps wills at 4 heartbeats), s.
       */
      willGraceSeconds: z.number().int().min(4).max(3600).default(60),
      /** MQTT 5: topic aliases a client may set up on its connection (0: none). */
      topicAliasMaximum: z.number().int().min(0).max(65535).default(64),
      /** MQTT 5: the longest session expiry a client may ask for (longer is cut to this), s. */
      sessionExpiryLimitSeconds: z
        .number()
        .int()
        .min(1)
        .max(0xfffffffe)
        .default(7 * 86_400),
      /** MQTT 5: disconnected sessions waiting to expire (and delayed wills) held at once; past it they end at once. */
      maxPendingSessions: z.number().int().min(1).max(1_000_000).default(10_000),
      /** null: no TLS listener. */
      tlsPort: z.number().int().min(1).max(65535).nullable().default(8883),
      /** PEM files; null: a self-signed certificate made at first start (data/tls/mqtt.crt). */
      tls: z
        .strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) })
        .nullable()
        .default(null),
    })
    .nullable()
    .prefault({}),
  /** Where the site is: sunrise and sunset for automations; null: no sun triggers. */
  site: z
    .strictObject({ latitude: z.number().min(-90).max(90), longitude: z.number().min(-180).max(180) })
    .nullable()
    .default(null),
  /** Automations (they are made by API; these bound them). */
  automations: z
    .strictObject({
      /**
       * Where a webhook action may call: URL prefixes the admin allows (e.g. http://192.168.1.30/hooks/).
       * Empty: no webhooks, so no automation can make the box call an address of its choosing.
       */
      webhookAllow: z
        .array(z.url({ protocol: /^https?$/ }))
        .max(32)
        .default([]),
      /** Runs kept per automation, with their traces. */
      tracesKept: z.number().int().min(1).max(1000).default(20),
      /** An automation that runs more often than this in a minute is stopped and flagged (a loop). */
      maxRunsPerMinute: z.number().int().min(2).max(10_000).default(30),
      /** Automations a site may have. */
      maxAutomations: z.number().int().min(1).max(100_000).default(2000),
    })
    .prefault({}),
  /** WebRTC live view (WHEP): the camera's H.264 as it is, at low latency. */
  webrtc: z
    .strictObject({
      /**
       * STUN and TURN servers for viewers beyond the LAN, as RTCIceServer URLs ("stun:host:3478",
       * "turn:user:password@host:3478"); none needed on the LAN.
       */
      iceServers: z
        .array(z.string().regex(/^(stun|turns?):/, 'a stun:, turn: or turns: URL'))
        .max(8)
        .default([]),
      /** UDP ports the box's side of a session may take; null: any the system gives. */
      ports: z
        .strictObject({ min: z.number().int().min(1024).max(65535), max: z.number().int().min(1024).max(65535) })
        .nullable()
        .default(null),
      /** Sessions the box holds at once (each also counts as a live viewer of its camera). */
      maxSessions: z.number().int().min(1).max(1000).default(32),
      /** Offers one user may make in a minute; more are refused with 429 (a page reloading in a loop). */
      offersPerMinute: z.number().int().min(1).max(10_000).default(60),
      /** How long an offer may wait for its answer (ICE gathering, the camera's first keyframe), ms. */
      answerTimeoutMs: z.number().int().min(500).max(60_000).default(8000),
      /** Remote sessions (signalled through the operator) the box holds at once, out of maxSessions. */
      maxRemoteSessions: z.number().int().min(0).max(1000).default(8),
    })
    .prefault({}),
  /** Cloud sync: what the outbox may hold and how it sends (targets and the plan are set by API). */
  sync: z
    .strictObject({
      /** This box's folder in every bucket: <boxId>/<camera>/<date>/<event>/... */
      boxId: z
        .string()
        .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, '1-63 lower-case letters, digits, dash')
        .default(() => defaultBoxId()),
      /** Most bytes waiting to go up; past it the lowest-value, oldest items go first (logged). */
      maxQueueBytes: z
        .number()
        .int()
        .min(1024 * 1024)
        .default(2 * 1024 ** 3),
      /** Items up to this size always go whole; larger ones as multipart (S3) or block (Azure) uploads that resume, bytes. */
      multipartThresholdBytes: z
        .number()
        .int()
        .min(5 * 1024 * 1024)
        .default(16 * 1024 * 1024),
      /** ...unless the target's measured rate sends them whole in this many seconds (up to 64 MiB). */
      wholeUploadSeconds: z.number().min(0).max(600).default(10),
      /** Part size; S3 needs at least 5 MiB. */
      partBytes: z
        .number()
        .int()
        .min(5 * 1024 * 1024)
        .max(512 * 1024 * 1024)
        .default(8 * 1024 * 1024),
      /** Uploads at once per target. */
      concurrency: z.number().int().min(1).max(16).default(2),
      /** Backoff after a failure: from retryMinMs doubling up to retryMaxMs, with jitter. */
      retryMinMs: z.number().int().min(10).max(600_000).default(2000),
      retryMaxMs: z.number().int().min(100).max(3_600_000).default(300_000),
      /** Recordings queued for upload are not deleted by age or quota until sent (the free-space floor still applies). */
      retentionWaitsForUpload: z.boolean().default(true),
      /** Audit entries are sent in batches: at most this long after the first one, s. */
      auditBatchSeconds: z.number().min(1).max(86_400).default(300),
      /** How often recordings past the plan's recordingsRetainDays are looked for in the cloud, s. */
      offsiteSweepSeconds: z.number().min(1).max(86_400).default(3600),
    })
    .prefault({}),
  /** Web Push of the notifications to the browsers users subscribe (the app, at home or away). */
  push: z
    .strictObject({
      /**
       * Push services the box may send to, as URL prefixes: a subscription elsewhere is refused, so
       * no one can make the box post to an address of their choosing. The browsers' own services
       * by default.
       */
      endpointAllow: z
        .array(z.url({ protocol: /^https$/ }))
        .max(32)
        .default([
          'https://fcm.googleapis.com/',
          'https://updates.push.services.mozilla.com/',
          'https://web.push.apple.com/',
        ]),
      /** A CA (PEM file) to trust for push services beyond the system's; null: the system's only. */
      caFile: z.string().min(1).nullable().default(null),
      /** Whom the push services may write to about this box (VAPID's subject: mailto: or https:). */
      contact: z
        .string()
        .regex(/^(mailto:|https:\/\/)\S+$/)
        .default('mailto:push@fogedge.invalid'),
      /** Subscriptions one user may have. */
      maxPerUser: z.number().int().min(1).max(100).default(10),
    })
    .prefault({}),
  /** The uplink to the operator's device-management platform (ADMP); off until the box is provisioned. */
  admp: z
    .strictObject({
      /** The provisioning file (JSON or YAML), relative to the data root; FOGEDGE_ADMP_* override it. */
      provisioningFile: z.string().min(1).nullable().default(null),
      /** Health and telemetry go up this often unless the operator's desired config says otherwise, s. */
      telemetrySeconds: z.number().min(1).max(86_400).default(60),
      /** What waits while the uplink is down; past either bound the lowest-value, oldest messages go first. */
      maxQueueItems: z.number().int().min(10).max(10_000_000).default(100_000),
      maxQueueBytes: z
        .number()
        .int()
        .min(64 * 1024)
        .default(64 * 1024 * 1024),
      /**
       * Messages handed to the broker before their acknowledgement; never more than the broker's
       * receive maximum (MQTT 5). Over MQTT 3.1.1 keep it within the broker's limit (Mosquitto: 20).
       */
      inFlight: z.number().int().min(1).max(1000).default(16),
      /** A command older than this (by its sentAt) is refused as expired: a reboot must not land hours late, s. */
      commandMaxAgeSeconds: z
        .number()
        .min(1)
        .max(7 * 86_400)
        .default(600),
      /** A command sent this far in the future (by its sentAt) is refused: the operator's clock is off, s. */
      commandMaxSkewSeconds: z.number().min(0).max(3600).default(60),
      /** The first wait before connecting again; it doubles after each failure (with jitter) up to reconnectMaxMs. */
      reconnectMs: z.number().int().min(100).max(600_000).default(5000),
      reconnectMaxMs: z.number().int().min(100).max(3_600_000).default(300_000),
    })
    .prefault({}),
  /** The USP controller of the box's camera agents. */
  usp: z
    .strictObject({
      /** Base of the firmware image URL the cameras fetch; null: http://<the box's LAN address>:<http.port>. */
      imageBaseUrl: z
        .url({ protocol: /^https?$/ })
        .nullable()
        .default(null),
      /**
       * Where a firmware campaign may fetch camera images from: URL prefixes of the vendors'
       * download servers. Empty: campaigns are refused until the installer names one, so no user
       * can make the box fetch an address of their choosing.
       */
      firmwareSources: z
        .array(z.url({ protocol: /^https?$/ }))
        .max(32)
        .default([]),
    })
    .prefault({}),
  /** The box's own updates (release archives, under appliance/release-runner.mjs). */
  update: z
    .strictObject({
      /** Where release archives may be fetched from: URL prefixes (the operator's servers). Empty: none. */
      releaseSources: z
        .array(z.url({ protocol: /^https?$/ }))
        .max(32)
        .default([]),
      /** Public keys (PEM, Ed25519) whose signatures on a release the box takes. Empty: no release is installed. */
      releaseKeys: z
        .array(z.string().regex(/-----BEGIN PUBLIC KEY-----/, 'a PEM public key'))
        .max(8)
        .default([]),
      /**
       * balena's update lock, held during firmware campaigns and the box's own update so that a
       * fleet release does not restart the box in the middle; null: none. Default: balena's
       * /tmp/balena/updates.lock when the box runs on balena, else none.
       */
      lockFile: z
        .string()
        .min(1)
        .nullable()
        .default(() => defaultLockFile()),
    })
    .prefault({}),
  bus: z
    .strictObject({
      requestTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
      retries: z.number().int().min(0).max(10).default(3),
      heartbeatIntervalS: z.number().min(1).max(60).default(1),
      heartbeatTimeoutS: z.number().min(2).max(300).default(3),
    })
    .prefault({}),
  /** The System page's charts: a sample of the node's figures this often, the newest `samples` kept (a day). */
  history: z
    .strictObject({
      everySeconds: z.number().min(1).max(3600).default(60),
      samples: z.number().int().min(10).max(100_000).default(1440),
    })
    .prefault({}),
});

export type Config = z.output<typeof ConfigSchema>;

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`Invalid configuration (${source}):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Short names a Moleculer user expects, then any key as FOGEDGE__SECTION__KEY. */
const ENV_ALIASES: Record<string, string[]> = {
  NODEID: ['nodeId'],
  TRANSPORTER: ['transporter'],
  SERVICES: ['services'],
  DEPLOYMENT: ['deployment', 'services'],
  LOGLEVEL: ['logLevel'],
  FOGEDGE_DATA_DIR: ['dataDir'],
  PORT: ['http', 'port'],
};

const ENV_PREFIX = 'FOGEDGE__';

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const { raw, source } = readConfigFile(env, cwd);
  const origins = new Map<string, string>();
  applyEnv(raw, env, origins);
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      source,
      parsed.error.issues.map((issue) => describeIssue(issue, raw, origins)),
    );
  }
  return { ...parsed.data, dataDir: path.resolve(cwd, parsed.data.dataDir) };
}

/**
 * The config file: the one FOGEDGE_CONFIG names; else ./fogedge.yaml; else fogedge.yaml in the data
 * root FOGEDGE_DATA_DIR names, where an installer's settings outlive the release folders that
 * updates and rollbacks switch between.
 */
function readConfigFile(env: Env, cwd: string): { raw: Record<string, unknown>; source: string } {
  const explicit = env['FOGEDGE_CONFIG'];
  const candidates = explicit
    ? [path.resolve(cwd, explicit)]
    : [
        path.resolve(cwd, 'fogedge.yaml'),
        ...(env['FOGEDGE_DATA_DIR'] ? [path.resolve(cwd, env['FOGEDGE_DATA_DIR'], 'fogedge.yaml')] : []),
      ];
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    if (explicit)
      throw new ConfigError(candidates[0]!, [`FOGEDGE_CONFIG names a file that does not exist: ${candidates[0]}`]);
    return { raw: {}, source: 'defaults and environment' };
  }
  const doc = YAML.parseDocument(readFileSync(file, 'utf8'), { prettyErrors: true });
  if (doc.errors.length > 0)
    throw new ConfigError(
      file,
      doc.errors.map((e) => e.message),
    );
  const value: unknown = doc.toJS() ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(file, [`the file must hold a mapping of keys, got ${JSON.stringify(value)}`]);
  }
  return { raw: value as Record<string, unknown>, source: file };
}

function applyEnv(raw: Record<string, unknown>, env: Env, origins: Map<string, string>): void {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    let keyPath = ENV_ALIASES[name];
    if (!keyPath && name.startsWith(ENV_PREFIX)) keyPath = schemaPath(name.slice(ENV_PREFIX.length).split('__'));
    if (!keyPath) continue;
    const isList = keyPath.join('.') === 'services' || keyPath.join('.') === 'deployment.services';
    const parsed = isList
      ? value
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : parseScalar(value);
    setPath(raw, keyPath, parsed);
    origins.set(keyPath.join('.'), name);
  }
}

/** Env values are text: read them as YAML scalars so "8080" is a number, "null" is null. */
function parseScalar(value: string): unknown {
  try {
    return YAML.parse(value);
  } catch {
    return value; // not YAML (e.g. "a: b: c"): keep the text, the schema will judge it
  }
}

/** Map FOGEDGE__HTTP__BODYLIMITBYTES onto http.bodyLimitBytes, case-insensitively. */
function schemaPath(segments: string[]): string[] {
  const out: string[] = [];
  let shape: Record<string, z.ZodType> | undefined = ConfigSchema.shape;
  for (const segment of segments) {
    const key: string = (shape && Object.keys(shape).find((k) => k.toLowerCase() === segment.toLowerCase())) ?? segment;
    out.push(key);
    shape = shape?.[key] ? objectShape(shape[key]) : undefined;
  }
  return out;
}

function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let inner: unknown = schema;
  // Unwrap default/prefault/nullable/optional down to the object, if any.
  while (inner instanceof z.ZodType && !(inner instanceof z.ZodObject) && 'unwrap' in inner) {
    inner = (inner as unknown as { unwrap(): unknown }).unwrap();
  }
  return inner instanceof z.ZodObject ? (inner.shape as Record<string, z.ZodType>) : undefined;
}

function setPath(target: Record<string, unknown>, keyPath: string[], value: unknown): void {
  let node = target;
  keyPath.slice(0, -1).forEach((key) => {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  });
  node[keyPath[keyPath.length - 1]!] = value;
}

function valueAt(raw: unknown, keyPath: PropertyKey[]): unknown {
  return keyPath.reduce<unknown>(
    (node, key) => (node && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[key] : undefined),
    raw,
  );
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, origins: Map<string, string>): string {
  if (issue.code === 'unrecognized_keys') {
    const where = issue.path.length ? issue.path.join('.') + '.' : '';
    const known = Object.keys(shapeAt(issue.path) ?? {});
    return issue.keys.map((k) => `${where}${k}: unknown key (expected one of: ${known.join(', ')})`).join('\n  ');
  }
  const key = issue.path.join('.') || '(root)';
  const origin = origins.get(issue.path.filter((p) => typeof p === 'string').join('.'));
  const got = JSON.stringify(valueAt(raw, issue.path)) ?? 'nothing';
  return `${key}: got ${got}${origin ? ` (from ${origin})` : ''}; ${issue.message}`;
}

function shapeAt(keyPath: PropertyKey[]): Record<string, z.ZodType> | undefined {
  let shape: Record<string, z.ZodType> | undefined = ConfigSchema.shape;
  for (const key of keyPath) shape = shape?.[String(key)] ? objectShape(shape[String(key)]!) : undefined;
  return shape;
}

/** The config as the API shows it: nothing secret (NATS credentials) leaves the box. */
export function redactedConfig(config: Config): Config {
  return { ...config, transporter: config.transporter ? redactUrl(config.transporter) : null };
}
