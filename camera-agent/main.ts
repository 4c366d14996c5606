// The camera agent as a process (run by boot.ts, its bootloader loop): its identity on disk, the
// box's broker, the video push, commands, and USP firmware management. A reboot is an exit
// with code 0: the bootloader starts it again, from whichever slot boot.json names.
// Usage: tsx camera-agent/boot.ts --box 192.168.1.10 --id cam-porch --source clip.mp4 --vendor-key vendor.pub.pem --data ./agent-data
import { randomBytes, createPublicKey } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { writeDurably } from '../lib/durable-files.ts';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CameraAgent } from './camera-agent.ts';
import { MOTION_DEFAULTS, MotionSensor } from './motion-sensor.ts';
import { encodedHere, parseSource, sourceInput, VideoPush, type EncodedVideo } from './video-push.ts';

const { values: args } = parseArgs({
  options: {
    box: { type: 'string', default: process.env['FOGEDGE_BOX'] ?? '127.0.0.1' },
    'mqtt-port': { type: 'string', default: '1883' },
    /** 5 (default) or 3.1.1 */
    'mqtt-version': { type: 'string', default: '5' },
    id: { type: 'string' },
    secret: { type: 'string' },
    name: { type: 'string' },
    data: { type: 'string', default: './camera-agent-data' },
    source: { type: 'string' },
    'vendor-key': { type: 'string' },
    manufacturer: { type: 'string', default: 'FogEdge' },
    model: { type: 'string', default: 'fogcam-1' },
    serial: { type: 'string' },
    'factory-version': { type: 'string', default: '1.0.0' },
    'slot-mib': { type: 'string', default: '64' },
    'trial-seconds': { type: 'string', default: '300' },
    ffmpeg: { type: 'string', default: 'ffmpeg' },
    /** The camera's own motion events (its motion engine; here the box's motion detector on small frames). */
    motion: { type: 'boolean', default: false },
    'motion-quiet-seconds': { type: 'string', default: String(MOTION_DEFAULTS.quietSeconds) },
    /** Stand-in for broken firmware in demos and tests: these versions never report healthy. */
    'broken-versions': { type: 'string', default: '' },
  },
});

const log = (message: string) =>
  process.stderr.write(
    JSON.stringify({ time: new Date().toISOString(), level: 'info', mod: 'camera-agent', message }) + '\n',
  );
const fail = (message: string): never => {
  process.stderr.write(
    JSON.stringify({ time: new Date().toISOString(), level: 'fatal', mod: 'camera-agent', message }) + '\n',
  );
  process.exit(78); // EX_CONFIG: the bootloader does not restart in a loop
};

if (!args.source) fail('--source is required: a video file, rtsp://..., /dev/videoN, or pattern');
if (!args['vendor-key']) fail('--vendor-key is required: the PEM public key of the vendor that signs firmware images');
const dataDir = path.resolve(args.data!);
await mkdir(dataDir, { recursive: true });
const serial = args.serial ?? args.id ?? fail('--serial or --id is required');
const id = args.id ?? `cam-${serial.toLowerCase().replace(/[^a-z0-9_-]/g, '-')}`;

/** The camera's secret at the box: given, or made once and kept (it pairs in the box's pairing window). */
const identityFile = path.join(dataDir, 'identity.json');
const identity = JSON.parse(await readFile(identityFile, 'utf8').catch(() => 'null')) as {
  id: string;
  secret: string;
} | null;
const secret = args.secret ?? (identity?.id === id ? identity.secret : randomBytes(24).toString('base64url'));
if (identity?.id !== id || identity.secret !== secret)
  await writeDurably(identityFile, JSON.stringify({ id, secret }), { mode: 0o600 });

const streamFile = path.join(dataDir, 'stream.json');
let stream = JSON.parse(await readFile(streamFile, 'utf8').catch(() => 'null')) as {
  path: string;
  key: string;
  port: number | null;
} | null;
const vendorKey = createPublicKey(
  await readFile(path.resolve(args['vendor-key']!), 'utf8').catch(() =>
    fail(`cannot read the vendor key ${args['vendor-key']}`),
  ),
);
const latestJpeg = path.join(dataDir, 'latest.jpg');
// The video settings the box set (set-video), kept across reboots and firmware updates.
const videoFile = path.join(dataDir, 'video.json');
const savedVideo = JSON.parse(await readFile(videoFile, 'utf8').catch(() => 'null')) as Partial<EncodedVideo> | null;
const source = parseSource(args.source!);
const push = new VideoPush(
  savedVideo && encodedHere(source) ? { ...source, ...savedVideo } : source,
  args.ffmpeg!,
  log,
  args.motion,
  latestJpeg,
);
const quietSeconds = Number(args['motion-quiet-seconds']);
if (args['mqtt-version'] !== '5' && args['mqtt-version'] !== '3.1.1')
  fail(`--mqtt-version must be 5 or 3.1.1, not "${args['mqtt-version']}"`);
if (!(quietSeconds > 0))
  fail(`--motion-quiet-seconds must be a number of seconds above 0, not "${args['motion-quiet-seconds']}"`);
const pushUrl = (s: NonNullable<typeof stream>) =>
  `rtmp://${args.box}:${s.port ?? 1935}${s.path}?key=${encodeURIComponent(s.key)}`;
const broken = new Set(args['broken-versions']!.split(',').filter(Boolean));

let exiting = false;
const reboot = async (why: string) => {
  if (exiting) return;
  exiting = true;
  log(`rebooting: ${why}`);
  push.stop();
  await agent.stop();
  process.exit(0);
};

const agent: CameraAgent = await CameraAgent.start({
  id,
  secret,
  name: args.name,
  mqttUrl: `mqtt://${args.box}:${args['mqtt-port']}`,
  mqttVersion: args['mqtt-version'] === '3.1.1' ? 4 : 5,
  dataDir,
  vendorKey,
  info: { manufacturer: args.manufacturer!, modelName: args.model!, serialNumber: serial },
  factoryVersion: args['factory-version']!,
  agentVersion: '0.1.0',
  slotBytes: Number(args['slot-mib']) * 1024 * 1024,
  trialSeconds: Number(args['trial-seconds']),
  healthy: () => push.healthy && !broken.has(agent?.slots.version ?? ''),
  hasStreamKey: () => Boolean(stream),
  onStream: (s) => {
    stream = s;
    // Kept whole or not at all: a cut write must not cost the camera its key at the next start.
    writeDurably(streamFile, JSON.stringify(s), { mode: 0o600 }).catch((err: Error) =>
      log(`stream key not saved (${err.message}); it is asked for again at the next start`),
    );
    log(`stream key received: pushing to ${s.path}`);
    push.start(pushUrl(s));
  },
  reboot: (why) => void reboot(why),
  log,
  async command(cmd) {
    switch (cmd.command) {
      case 'restart-stream':
        push.restart();
        return { restarted: true };
      case 'set-video':
        push.setVideo({
          ...(typeof cmd['width'] === 'number' ? { width: cmd['width'] } : {}),
          ...(typeof cmd['height'] === 'number' ? { height: cmd['height'] } : {}),
          ...(typeof cmd['bitrateKbps'] === 'number' ? { bitrateKbps: cmd['bitrateKbps'] } : {}),
        });
        if (encodedHere(push.video)) {
          const { width, height, bitrateKbps } = push.video;
          // Whole or not at all: a reboot (the reason it is kept) may come at any moment.
          await writeDurably(videoFile, JSON.stringify({ width, height, bitrateKbps }));
        }
        return push.video;
      case 'snapshot':
        return { jpegBase64: (await snapshot()).toString('base64') };
      case 'reboot':
        setTimeout(() => void reboot('asked by the box'), 100);
        return { rebooting: true };
      default:
        throw new Error(`No such command: ${cmd.command}`);
    }
  },
});
// A key the box no longer takes (its camera was made anew): ask for another.
push.on('refused', (why: string) => {
  log(`the box refuses the stream key (${why}); asking for a new one`);
  agent.askForStreamKey();
});
if (stream) push.start(pushUrl(stream));

// Motion start and end to the box, which makes them events of this camera.
if (args.motion) {
  const sensor = new MotionSensor({ ...MOTION_DEFAULTS, quietSeconds });
  push.on('frame', (frame) => sensor.frame(frame));
  sensor.on('motion', (report) => {
    log(`motion ${report.state} (${report.id})`);
    agent.publish('agent/motion', JSON.stringify(report));
  });
}

/** One JPEG of the source, as it is now: from the push itself when it encodes (one reader of a V4L2 device). */
async function snapshot(): Promise<Buffer> {
  if (encodedHere(push.video)) {
    const jpeg = await readFile(latestJpeg).catch(() => undefined);
    if (!jpeg || !push.healthy) throw new Error('No picture yet: the video is not running');
    return jpeg;
  }
  return new Promise((resolve, reject) => {
    const ff = spawn(
      args.ffmpeg!,
      [
        '-hide_banner',
        '-loglevel',
        'error',
        ...sourceInput(push.video),
        '-frames:v',
        '1',
        '-f',
        'image2',
        '-c:v',
        'mjpeg',
        '-',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const chunks: Buffer[] = [];
    ff.stdout.on('data', (c: Buffer) => chunks.push(c));
    ff.on('exit', (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`snapshot failed (ffmpeg ${code})`)),
    );
  });
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    exiting = true;
    push.stop();
    void agent.stop().finally(() => process.exit(143));
  });
}
