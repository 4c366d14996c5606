// The camera agent's life between two reboots: boot (the slot on trial, or a rollback), sign in
// to the box's broker with the camera's own credentials (with a last will), announce its USP
// endpoint, tell the controller it booted, serve USP, publish its status, and confirm a new
// firmware healthy once it is connected (and streaming, when it streams), or reboot at the
// trial's deadline so the bootloader rolls it back.
import type { KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { encodeRecord, USP_CONTENT_TYPE } from '../lib/usp/codec.ts';
import { FirmwareSlots } from './firmware-slots.ts';
import { UspAgent } from './usp/agent.ts';
import { deviceModel, type DeviceInfo } from './usp/device-model.ts';
import { topics } from '../lib/topics.ts';

const STATUS_EVERY_MS = 30_000;

export interface CameraAgentOptions {
  /** The camera's device id at the box (its MQTT user name) and its secret. */
  id: string;
  secret: string;
  mqttUrl: string;
  /** MQTT 5 (the default; TR-369 R-MQTT.1) or 3.1.1 (4), for brokers and tests of the older one. */
  mqttVersion?: 4 | 5;
  dataDir: string;
  /** A name for its camera at the box, on first contact. */
  name?: string;
  /** Whether it holds a stream key the box gave it (else it asks for one). */
  hasStreamKey: () => boolean;
  /** The box's answer to its hello: where and with which key to push video. */
  onStream?: (stream: { path: string; key: string; port: number | null }) => void;
  /** Commands other than USP (snapshot, restart-stream, set-video, reboot); the result is sent back. */
  command?: (command: { command: string } & Record<string, unknown>) => Promise<unknown>;
  vendorKey: KeyObject;
  info: DeviceInfo;
  factoryVersion: string;
  agentVersion: string;
  slotBytes: number;
  /** A new firmware has this long to become healthy, s. */
  trialSeconds: number;
  /** Whether the camera works (stream up); checked before a new firmware is confirmed. */
  healthy: () => boolean;
  /** Reboot: the process exits and its bootloader starts it again. */
  reboot: (why: string) => void;
  log?: (message: string) => void;
}

export class CameraAgent {
  readonly endpointId: string;
  /** The box's USP controller, named in its welcome. */
  controllerId: string | null = null;
  private client: MqttClient | undefined;
  private trialTimer: NodeJS.Timeout | undefined;
  private confirmTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();

  private constructor(
    private readonly o: CameraAgentOptions,
    readonly slots: FirmwareSlots,
    readonly usp: UspAgent,
  ) {
    this.endpointId = usp.endpointId;
  }

  private get topic() {
    return topics.device(this.o.id);
  }

  /** Where the controller's records come from (its Response Topic, on MQTT 5); the box's usp channel until one came. */
  private controllerTopic: string | undefined;

  /**
   * A USP Record to the controller, saying where it is answered (R-MQTT.24): on MQTT 5 with the
   * Response Topic and Content Type properties, on 3.1.1 with /reply-to=<topic, '/' as %2F>.
   */
  private sendRecord(bytes: Uint8Array) {
    const replyTo = `${this.topic}/cmd/usp`;
    const payload = Buffer.from(bytes);
    if (this.o.mqttVersion === 4)
      return void this.client?.publish(`${this.topic}/usp/reply-to=${encodeURIComponent(replyTo)}`, payload, {
        qos: 1,
      });
    this.client?.publish(this.controllerTopic ?? `${this.topic}/usp`, payload, {
      qos: 1,
      properties: { contentType: USP_CONTENT_TYPE, responseTopic: replyTo },
    });
  }

  static async start(o: CameraAgentOptions): Promise<CameraAgent> {
    const log = o.log ?? (() => {});
    const slots = await FirmwareSlots.open(`${o.dataDir}/firmware`, {
      vendorKey: o.vendorKey,
      model: o.info.modelName,
      slotBytes: o.slotBytes,
      factoryVersion: o.factoryVersion,
    });
    const boot = await slots.beginBoot();
    log(
      `booting slot ${boot.active} (version ${slots.version})${boot.trying ? `, on trial until ${boot.trying.deadline}` : ''}${boot.lastBoot.rolledBack ? `; rolled back: ${boot.bootFailureLog}` : ''}`,
    );
    // The endpoint id: OUI-less "os::" form from the model and serial (TR-369 endpoint id schemes).
    const endpointId = `os::${o.info.modelName}-${o.info.serialNumber}`;
    let self: CameraAgent | undefined;
    const model = deviceModel({
      info: o.info,
      endpointId,
      agentVersion: o.agentVersion,
      slots,
      trialSeconds: o.trialSeconds,
      agentObjects: () => self?.usp.agentObjects() ?? [],
      transferComplete: (params) =>
        self?.usp.event('Device.LocalAgent.', 'TransferComplete!', params, self.controllerId),
      restart: (why) => o.reboot(why),
    });
    const usp = new UspAgent(endpointId, model, (_to, bytes) => self?.sendRecord(bytes), log);
    self = new CameraAgent(o, slots, usp);
    self.connect();
    return self;
  }

  /** Asks for a stream key again (the box refused the one it had). */
  askForStreamKey() {
    this.publish('agent/hello', JSON.stringify({ needStreamKey: true, name: this.o.name }));
  }

  publish(sub: string, payload: Buffer | string, retain = false) {
    this.client?.publish(`${this.topic}/${sub}`, payload, { qos: 1, retain });
  }

  private status() {
    return JSON.stringify({
      online: true,
      version: this.slots.version,
      endpointId: this.endpointId,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      healthy: this.o.healthy(),
    });
  }

  private connect() {
    const o = this.o;
    const log = o.log ?? (() => {});
    // A refused sign-in (not yet allowed by the installer) is tried again by mqtt.js every few seconds.
    const client = mqtt.connect(o.mqttUrl, {
      protocolVersion: o.mqttVersion ?? 5,
      clientId: o.id,
      username: o.id,
      password: o.secret,
      reconnectPeriod: 2000,
      // Refused (pending until the installer allows it, or denied): keep knocking.
      reconnectOnConnackError: true,
      will: {
        topic: `${this.topic}/status`,
        payload: Buffer.from(JSON.stringify({ online: false })),
        qos: 1,
        retain: true,
      },
    });
    this.client = client;
    client.on('error', (err) => log(`mqtt: ${err.message}`));
    client.on('message', (topic, payload, packet) => {
      if (topic === `${this.topic}/cmd/usp`) {
        // The controller's Response Topic (R-MQTT.25): only ever one of this device's own topics.
        const responseTopic = packet.properties?.responseTopic;
        if (responseTopic?.startsWith(`${this.topic}/`) && !/[#+]/.test(responseTopic))
          this.controllerTopic = responseTopic;
        return void this.usp.receive(payload);
      }
      if (topic === `${this.topic}/cmd/agent/welcome`) return this.onWelcome(payload);
      if (topic === `${this.topic}/cmd/agent/command`) return void this.onCommand(payload);
    });
    client.on('connect', () => {
      log('connected to the box');
      client.subscribe([`${this.topic}/cmd/usp`, `${this.topic}/cmd/agent/#`], { qos: 1 }, () => {
        // The box answers with its controller's id (and a stream key when this camera needs one).
        this.publish('agent/hello', JSON.stringify({ needStreamKey: !o.hasStreamKey(), name: o.name }));
      });
      this.publish('status', this.status(), true);
      this.watchTrial();
    });
    // Uptime and stream health, retained, every half minute.
    this.statusTimer = setInterval(
      () => this.client?.connected && this.publish('status', this.status(), true),
      STATUS_EVERY_MS,
    );
    // On trial: not confirmed by the deadline means a reboot, and the bootloader rolls back.
    const trying = this.slots.state.trying;
    if (trying) {
      this.trialTimer = setTimeout(
        () => o.reboot(`version ${this.slots.version} not healthy by ${trying.deadline}`),
        Math.max(0, Date.parse(trying.deadline) - Date.now()),
      );
    }
  }

  private onWelcome(payload: Buffer) {
    let welcome: { controllerId?: string; stream?: { path: string; key: string; port: number | null } };
    try {
      welcome = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    if (welcome.stream) this.o.onStream?.(welcome.stream);
    if (!welcome.controllerId) return;
    const first = this.controllerId !== welcome.controllerId;
    this.controllerId = welcome.controllerId;
    // Where the controller reaches this endpoint, after every connection (the controller counts
    // it offline from the moment its last one went); then, once, what happened at boot (Device.Boot!).
    this.sendRecord(
      encodeRecord(this.endpointId, this.controllerId, {
        mqttConnect: { subscribedTopic: `${this.topic}/cmd/usp`, version: this.o.mqttVersion === 4 ? 'V3_1_1' : 'V5' },
      }),
    );
    if (!first) return;
    const last = this.slots.state.lastBoot;
    this.usp.event(
      'Device.',
      'Boot!',
      {
        CommandKey: last.commandKey,
        Cause: last.cause,
        FirmwareUpdated: String(last.firmwareUpdated && !last.rolledBack),
        ParameterMap: JSON.stringify({
          'Device.DeviceInfo.SoftwareVersion': this.slots.version,
          'Device.DeviceInfo.FirmwareImage.1.BootFailureLog': this.slots.state.bootFailureLog,
        }),
      },
      this.controllerId,
    );
  }

  private async onCommand(payload: Buffer) {
    let cmd: { id?: unknown; command?: unknown } & Record<string, unknown>;
    try {
      cmd = JSON.parse(payload.toString('utf8'));
    } catch {
      return this.publish('agent/reply', JSON.stringify({ id: null, ok: false, error: 'The command is not JSON' }));
    }
    const id = typeof cmd.id === 'string' ? cmd.id : null;
    if (typeof cmd.command !== 'string' || !this.o.command)
      return this.publish('agent/reply', JSON.stringify({ id, ok: false, error: 'No such command' }));
    try {
      const result = await this.o.command(cmd as { command: string });
      this.publish('agent/reply', JSON.stringify({ id, ok: true, result: result ?? null }));
    } catch (err) {
      this.publish('agent/reply', JSON.stringify({ id, ok: false, error: (err as Error).message }));
    }
  }

  /** Confirms a firmware on trial once the camera is connected and healthy. */
  private watchTrial() {
    if (!this.slots.state.trying) return;
    clearInterval(this.confirmTimer);
    this.confirmTimer = setInterval(() => {
      if (!this.client?.connected || !this.o.healthy()) return;
      clearInterval(this.confirmTimer);
      clearTimeout(this.trialTimer);
      void this.slots.confirm().then(() => {
        (this.o.log ?? (() => {}))(`version ${this.slots.version} confirmed healthy`);
        this.publish('status', this.status(), true);
      });
    }, 500);
  }

  async stop(): Promise<void> {
    clearTimeout(this.trialTimer);
    clearInterval(this.confirmTimer);
    clearInterval(this.statusTimer);
    // A clean stop says so; a crash leaves it to the will.
    if (this.client?.connected)
      await this.client
        .publishAsync(`${this.topic}/status`, JSON.stringify({ online: false }), { qos: 1, retain: true })
        .catch(() => undefined);
    await this.client?.endAsync(true).catch(() => undefined);
  }
}
