// The site broker's topic tree, named once: what the box publishes, what devices and users may
// read and write, and where a device and the box's services talk. The broker's access rules,
// the services and the camera agent all build their topics here.

const ROOT = 'fogedge';

export const topics = {
  /** The box's own state, retained: online, or offline as its will. */
  status: `${ROOT}/status`,
  /** Everything about one camera: its status, switches, objects in view, snapshots. */
  camera: (camera: string) => `${ROOT}/cameras/${camera}`,
  cameras: `${ROOT}/cameras/#`,
  /** An event's messages: new, update, end, removed. */
  event: (camera: string, kind: string) => `${ROOT}/events/${camera}/${kind}`,
  events: `${ROOT}/events/#`,
  /** A review item's messages (a camera's period of activity): new, update, end. */
  review: (camera: string, kind: string) => `${ROOT}/reviews/${camera}/${kind}`,
  reviews: `${ROOT}/reviews/#`,
  /** One user's own topics (notifications). */
  user: (username: string) => `${ROOT}/users/${username}`,
  /** One device's own topics: it publishes under them; the box answers under `cmd/`. */
  device: (device: string) => `${ROOT}/devices/${device}`,
  devices: `${ROOT}/devices/#`,
  /** The site's mode: its id, retained; an app user switches it by publishing a mode's id to modeSet. */
  modeState: `${ROOT}/mode/state`,
  modeSet: `${ROOT}/mode/set`,
  /** Where the box sends to one device: fogedge/devices/<id>/cmd/<channel>. */
  deviceCommand: (device: string, channel: string) => `${ROOT}/devices/${device}/cmd/${channel}`,
} as const;

/** A channel under a device's topics (usp, agent/hello, a command channel): lower-case words joined by '/'. */
export const CHANNEL = /^[a-z0-9-]+(\/[a-z0-9-]+)*$/;

/** A camera's switch command, fogedge/cameras/<camera>/<switch>/set: [, camera, switch]. */
export const SWITCH_SET = /^fogedge\/cameras\/([a-z0-9-]+)\/([a-z]+)\/set$/;
/** The retained JPEG of a camera's best object of a label: fogedge/cameras/<camera>/<label>/snapshot. */
export const SNAPSHOT_TOPIC = /^fogedge\/cameras\/[a-z0-9-]+\/[^/]+\/snapshot$/;
/**
 * What a device sends to the box's services: fogedge/devices/<id>/usp and .../agent/<what>:
 * [, device, channel, reply-to]. A USP agent on MQTT 3.1.1 appends its reply topic as
 * `/reply-to=<topic, '/' as %2F>` (TR-369 R-MQTT.24); the receiver takes it from there (R-MQTT.25).
 */
export const AGENT_CHANNEL =
  /^fogedge\/devices\/([a-z0-9][a-z0-9_-]{0,63})\/(usp|agent\/[a-z0-9-]+)(?:\/reply-to=([^/]+))?$/;

/** The channel of a device's command topic (`fogedge/devices/<id>/cmd/<channel>`), if `topic` is one. */
export function commandChannelOf(device: string, topic: string): string | undefined {
  const prefix = topics.deviceCommand(device, '');
  const channel = topic.startsWith(prefix) ? topic.slice(prefix.length) : '';
  return CHANNEL.test(channel) ? channel : undefined;
}
