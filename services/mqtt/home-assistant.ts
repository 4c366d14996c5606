// What each camera looks like over MQTT beyond its events: the objects in view now (motion,
// occupancy, counts per label and per zone) and Home Assistant's discovery configs, so a
// camera shows up in Home Assistant with its sensors, snapshots and switches by itself.
import type { Camera } from '../cameras/cameras.schemas.ts';
import { CAMERA_MOTION } from '../events/events.schemas.ts';
import { topics } from '../../lib/topics.ts';

export const onOff = (on: boolean) => (on ? 'ON' : 'OFF');

/** The label of a camera's own motion events (camera agents): motion, not an object. */

interface LiveObject {
  label: string;
  zones: string[];
  stationary: boolean;
}

/** Retained topic → payload for a camera's live objects: the values the box publishes. */
export function objectStates(
  camera: Pick<Camera, 'id' | 'detection'>,
  objects: Iterable<LiveObject>,
): Map<string, string> {
  const base = topics.camera(camera.id);
  const list = [...objects];
  const out = new Map<string, string>();
  // Motion: something tracked is moving, or the camera itself reports motion (label "motion");
  // occupancy: an object is there, moving or not.
  out.set(`${base}/motion`, onOff(list.some((o) => !o.stationary)));
  out.set(`${base}/occupancy`, onOff(list.some((o) => o.label !== CAMERA_MOTION)));
  for (const label of camera.detection.labels) {
    out.set(`${base}/${label}/count`, String(list.filter((o) => o.label === label).length));
    for (const zone of camera.detection.zones) {
      out.set(
        `${base}/zones/${zone.name}/${label}/count`,
        String(list.filter((o) => o.label === label && o.zones.includes(zone.name)).length),
      );
    }
  }
  return out;
}

/** Home Assistant MQTT discovery: config topic → config, for one camera with these ON/OFF switches. */
export function discoveryConfigs(
  prefix: string,
  camera: Pick<Camera, 'id' | 'name' | 'detection'>,
  switches: string[],
  version: string,
): Map<string, object> {
  const node = `fogedge_${camera.id.replace(/-/g, '_')}`;
  const base = topics.camera(camera.id);
  const boxOnline = { topic: topics.status, payload_available: 'online', payload_not_available: 'offline' };
  const common = {
    device: { identifiers: [node], name: camera.name, manufacturer: 'FogEdge', model: 'Camera', sw_version: version },
    // Who made the config (Home Assistant shows it, and logs it with errors).
    origin: { name: 'FogEdge', sw_version: version },
    availability: [boxOnline],
  };
  // What the camera sees is there while the box is up AND the camera is online; its switches
  // (settings of the box) while the box is up.
  const seen = {
    availability_mode: 'all',
    availability: [
      boxOnline,
      { topic: `${base}/status`, value_template: "{{ 'online' if value_json.state == 'online' else 'offline' }}" },
    ],
  };
  // default_entity_id, not object_id (deprecated, gone in Home Assistant 2026.4): the domain is part of it.
  const entity = (component: string, object: string, config: object): [string, object] => [
    `${prefix}/${component}/${node}/${object}/config`,
    { ...common, unique_id: `${node}_${object}`, default_entity_id: `${component}.${node}_${object}`, ...config },
  ];
  return new Map([
    entity('binary_sensor', 'motion', {
      ...seen,
      name: 'Motion',
      device_class: 'motion',
      state_topic: `${base}/motion`,
    }),
    entity('binary_sensor', 'occupancy', {
      ...seen,
      name: 'Occupancy',
      device_class: 'occupancy',
      state_topic: `${base}/occupancy`,
    }),
    ...camera.detection.labels.flatMap((label) => [
      entity('sensor', `${label}_count`, {
        ...seen,
        name: `${label} count`,
        state_topic: `${base}/${label}/count`,
        state_class: 'measurement',
        icon: 'mdi:counter',
      }),
      entity('camera', `${label}_snapshot`, { ...seen, name: `${label} snapshot`, topic: `${base}/${label}/snapshot` }),
    ]),
    ...switches.map((name) =>
      entity('switch', name, {
        name: name[0]!.toUpperCase() + name.slice(1),
        command_topic: `${base}/${name}/set`,
        state_topic: `${base}/${name}/state`,
        payload_on: 'ON',
        payload_off: 'OFF',
      }),
    ),
  ]);
}

/** Home Assistant MQTT discovery: the site's mode as a select entity (its options: the modes' ids). */
export function modeSelectConfig(prefix: string, options: string[], version: string): [string, object] {
  const node = 'fogedge_site';
  return [
    `${prefix}/select/${node}/mode/config`,
    {
      device: { identifiers: [node], name: 'FogEdge', manufacturer: 'FogEdge', model: 'Box', sw_version: version },
      origin: { name: 'FogEdge', sw_version: version },
      availability: [{ topic: topics.status, payload_available: 'online', payload_not_available: 'offline' }],
      unique_id: `${node}_mode`,
      default_entity_id: `select.${node}_mode`,
      name: 'Mode',
      icon: 'mdi:shield-home',
      command_topic: topics.modeSet,
      state_topic: topics.modeState,
      options,
    },
  ];
}
