// What the box publishes about its cameras, and the commands it takes for them: retained switch
// states, objects in view and Home Assistant discovery per camera; each event's messages; the
// best snapshot per label (a retained JPEG); a notification to each user who asked; and a
// camera's switch set over MQTT (.../<switch>/set), applied as that user through the cameras service.
import type { PublishPacket } from 'aedes';
import type { ServiceBroker } from 'moleculer';
import pLimit from 'p-limit';
import type { Caller } from '../../lib/actions.ts';
import { broadcast, call } from '../../lib/bus.ts';
import { can, type Role } from '../../lib/permissions.ts';
import { unlessRefused } from '../../lib/refusals.ts';
import type { Config } from '../../appliance/config.ts';
import { version } from '../../appliance/version.ts';
import type { Notifications } from '../accounts/accounts.schemas.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import type { ReviewItem } from '../events/events.schemas.ts';
import type { Identity } from './access-rules.ts';
import { discoveryConfigs, objectStates, onOff } from './home-assistant.ts';
import { wantsNotification } from './notifications.ts';
import { SWITCH_SET, topics } from '../../lib/topics.ts';

/** Per-camera switches over MQTT: .../<name>/set (ON|OFF) and the retained .../<name>/state. */
const SWITCHES: Record<string, { get(c: Camera): boolean; set(on: boolean): object }> = {
  detection: { get: (c) => c.detection.enabled, set: (on) => ({ detection: { enabled: on } }) },
  recording: {
    get: (c) => c.recording.mode !== 'off',
    set: (on) => ({ recording: { mode: on ? 'continuous' : 'off' } }),
  },
  notifications: { get: (c) => c.notifications !== false, set: (on) => ({ notifications: on }) },
};

export type LiveEvent = {
  id: string;
  camera: string;
  label: string;
  zones?: string[];
  stationary?: boolean;
  topScore: number;
  start: string;
  end?: string | null;
  hasSnapshot?: boolean;
  snapshotVersion?: number;
};

export type Publish = (
  topic: string,
  payload: unknown,
  options?: { retain?: boolean; qos?: 0 | 1; properties?: PublishPacket['properties'] },
) => Promise<void>;

const EVENT_KINDS: Record<string, string> = {
  'event.started': 'new',
  'event.updated': 'update',
  'event.ended': 'end',
  'event.removed': 'removed',
};

export class CameraTopics {
  /** Per camera: the retained topics the box keeps up to date (states, discovery) with their payloads. */
  private readonly retainedOf = new Map<string, Map<string, string>>();
  /** Per camera: its objects in view now, by event id; and its snapshot topics. */
  private readonly liveObjects = new Map<
    string,
    Map<string, { label: string; zones: string[]; stationary: boolean; topScore: number; snapshotVersion: number }>
  >();
  private readonly snapshotTopics = new Map<string, Set<string>>();
  /** Per open review item, the users already notified of it. */
  private readonly notified = new Map<string, Set<string>>();
  private readonly specs = new Map<string, Camera>();
  /** Per camera: its Home Assistant configs, made when the camera changes, not on each event. */
  private readonly discoveryOf = new Map<string, Map<string, string>>();
  /**
   * The retained topics change one update at a time: a camera's removal clearing them while an
   * earlier update is still publishing them would leave that camera retained for good.
   */
  private readonly retainedWork = pLimit(1);
  /** Users who want notifications; read again when someone changes theirs or users change. */
  private targets: Promise<Array<{ username: string; role: Role; notifications: Notifications }>> | undefined;
  /** While the site's mode names who is notified, only they are (each by their own rules); null: everyone. */
  private notifyUsers: string[] | null = null;

  constructor(
    private readonly config: Config,
    private readonly broker: ServiceBroker,
    private readonly log: ServiceBroker['logger'],
    private readonly publish: Publish,
  ) {}

  /** A camera's retained topics (switch states, objects in view, Home Assistant discovery) brought up to date. */
  publishCameras(id?: string): Promise<void> {
    // The list is read inside the turn: a camera removed before it is not brought back.
    return this.retainedWork(async () => {
      const cameras = await call(this.broker, 'cameras.specs', id ? { id } : {}).catch((err: Error) => {
        this.log.warn(
          `MQTT: the cameras' retained topics are not refreshed, the registry is not reachable: ${err.message}`,
        );
        return [];
      });
      const prefix = this.config.mqtt?.discoveryPrefix; // none when the broker is off
      for (const camera of cameras) {
        this.specs.set(camera.id, camera);
        const configs = prefix
          ? discoveryConfigs(prefix, camera, Object.keys(SWITCHES), version)
          : new Map<string, object>();
        this.discoveryOf.set(camera.id, new Map([...configs].map(([topic, value]) => [topic, JSON.stringify(value)])));
        await this.syncRetainedNow(camera.id);
      }
    });
  }

  /** Empty retained messages clear what was retained: states, snapshots, and the camera's entities in Home Assistant. */
  cameraRemoved(id: string): Promise<void> {
    return this.retainedWork(async () => {
      const cleared = [
        ...(this.retainedOf.get(id)?.keys() ?? []),
        ...(this.snapshotTopics.get(id) ?? []),
        `${topics.camera(id)}/status`,
      ];
      for (const map of [this.retainedOf, this.liveObjects, this.snapshotTopics, this.specs, this.discoveryOf])
        map.delete(id);
      for (const topic of cleared) await this.publish(topic, '', { retain: true });
    });
  }

  cameraStatus(id: string, status: unknown): Promise<void> {
    return this.publish(`${topics.camera(id)}/status`, status, { retain: true, qos: 1 });
  }

  /** An event started, changed or ended: its message and the objects in view. */
  async event(eventName: string, e: LiveEvent): Promise<void> {
    const kind = EVENT_KINDS[eventName];
    if (!kind) return;
    await this.publish(topics.event(e.camera, kind), e, { qos: 1 });
    await this.trackObject(e, kind === 'end' || kind === 'removed');
  }

  /**
   * A review item opened, changed or closed: its message, and a notification to each user the
   * item now concerns (once per item: a busy street is one notification, not one per person).
   */
  async review(kind: 'new' | 'update' | 'end', item: ReviewItem): Promise<void> {
    await this.publish(topics.review(item.camera, kind), item, { qos: 1 });
    if (kind === 'end') this.notified.delete(item.id);
    else {
      if (!this.specs.has(item.camera)) await this.publishCameras(item.camera);
      await this.notify(item);
    }
  }

  /** The site's mode says who is notified (null: everyone). */
  modeApplied(notifyUsers: string[] | null): void {
    this.notifyUsers = notifyUsers;
  }

  /** Who wants notifications may have changed. */
  accountsChanged(): void {
    this.targets = undefined;
  }

  /** Home Assistant restarted: it may have lost what was retained on its side. */
  homeAssistantOnline(): Promise<void> {
    for (const map of this.retainedOf.values()) map.clear();
    return this.publishCameras();
  }

  /** A switch command a user published (the broker's rules let only those who may manage cameras). */
  command(topic: string, payload: Buffer | string, who: Identity | undefined): void {
    const m = SWITCH_SET.exec(topic);
    const sw = m && SWITCHES[m[2]!];
    if (!m || !sw || who?.kind !== 'user') return;
    const value = payload.toString().trim().toUpperCase();
    if (value !== 'ON' && value !== 'OFF')
      return this.log.warn(`MQTT command ${topic}: "${value}" is neither ON nor OFF`);
    const caller: Caller = { username: who.username, role: who.role, via: 'mqtt' };
    this.broker
      .call('cameras.update', { id: m[1], ...sw.set(value === 'ON') }, { meta: { caller } })
      .catch((err: Error) => this.log.warn(`MQTT command ${topic} from "${who.username}" failed: ${err.message}`));
  }

  private syncRetained(id: string) {
    return this.retainedWork(() => this.syncRetainedNow(id));
  }

  private async syncRetainedNow(id: string) {
    const camera = this.specs.get(id);
    if (!camera) return;
    const next = new Map<string, string>();
    for (const [name, sw] of Object.entries(SWITCHES))
      next.set(`${topics.camera(id)}/${name}/state`, onOff(sw.get(camera)));
    for (const [topic, value] of objectStates(camera, this.liveObjects.get(id)?.values() ?? [])) next.set(topic, value);
    for (const [topic, value] of this.discoveryOf.get(id) ?? []) next.set(topic, value);
    const before = this.retainedOf.get(id) ?? new Map<string, string>();
    this.retainedOf.set(id, next);
    for (const [topic, value] of next)
      if (before.get(topic) !== value) await this.publish(topic, value, { retain: true, qos: 1 });
    for (const topic of before.keys()) if (!next.has(topic)) await this.publish(topic, '', { retain: true }); // a label or zone gone
  }

  /**
   * A review item to each user who asked for one of its objects and has not heard of it yet:
   * fogedge/users/<username>/notifications (QoS 1), naming the object that matched.
   */
  private async notify(item: ReviewItem) {
    if (this.specs.get(item.camera)?.notifications === false) return;
    this.targets ??= call(this.broker, 'accounts.notificationTargets', {}).catch((err: Error) => {
      this.log.warn(
        `MQTT: nobody is notified of ${item.camera}'s activity, the accounts service is not reachable: ${err.message}`,
      );
      return [];
    });
    const name = this.specs.get(item.camera)?.name ?? item.camera;
    const now = new Date().toISOString(); // rules by time of day: when the object came
    const told = this.notified.get(item.id) ?? new Set<string>();
    this.notified.set(item.id, told);
    for (const user of await this.targets) {
      if (told.has(user.username) || !can(user.role, 'events.view')) continue;
      if (this.notifyUsers && !this.notifyUsers.includes(user.username)) continue;
      // The newest object first: the one that made the item concern this user.
      const object = [...item.objects]
        .reverse()
        .find((o) => wantsNotification(user.notifications, { ...o, camera: item.camera, start: now }));
      if (!object) continue;
      told.add(user.username);
      const event = { id: object.event, camera: item.camera, label: object.label, zones: object.zones };
      const title = `${object.label} at ${name}`;
      await this.publish(`${topics.user(user.username)}/notifications`, { title, event, review: item }, { qos: 1 });
      // The other channels (Web Push) carry the same.
      void broadcast(this.broker, 'user.notified', {
        username: user.username,
        title,
        camera: item.camera,
        event: object.event,
        review: item.id,
      });
    }
  }

  /** Objects in view follow the events; a new snapshot becomes .../<label>/snapshot (retained JPEG). */
  private async trackObject(e: LiveEvent, gone: boolean) {
    const objects = this.liveObjects.get(e.camera) ?? new Map();
    this.liveObjects.set(e.camera, objects);
    const before = objects.get(e.id);
    if (gone || e.end) objects.delete(e.id);
    else
      objects.set(e.id, {
        label: e.label,
        zones: e.zones ?? [],
        stationary: Boolean(e.stationary),
        topScore: e.topScore,
        snapshotVersion: e.snapshotVersion ?? 0,
      });
    if (!this.specs.has(e.camera)) await this.publishCameras(e.camera);
    else await this.syncRetained(e.camera);
    if (gone || !e.hasSnapshot || (before && before.snapshotVersion === (e.snapshotVersion ?? 0))) return;
    const snap = await unlessRefused(call(this.broker, 'events.snapshot', { id: e.id })).catch((err: Error) => {
      this.log.warn(`MQTT: the snapshot of event ${e.id} is not published: ${err.message}`);
      return undefined;
    });
    if (!snap) return;
    const topic = `${topics.camera(e.camera)}/${e.label}/snapshot`;
    this.snapshotTopics.set(e.camera, (this.snapshotTopics.get(e.camera) ?? new Set()).add(topic));
    await this.publish(topic, Buffer.from(snap.jpegBase64, 'base64'), { retain: true });
  }
}
