// Byte streams a service of this node takes from the gateway's listeners (MQTT over WebSocket on
// the HTTP port). A socket cannot travel over the bus, so the service registers its endpoint here
// when it starts and the gateway of the same node looks it up; one registry per broker.
import type { Duplex } from 'node:stream';
import type { ServiceBroker } from 'moleculer';

export interface StreamEndpoint {
  /** Takes the connection over; it signs its client in itself. */
  accept(stream: Duplex): void;
  /** The largest message one may send: the WebSocket frame limit. */
  maxMessageBytes: number;
}

export type StreamEndpointName = 'mqtt';

const registries = new WeakMap<ServiceBroker, Map<StreamEndpointName, StreamEndpoint>>();

export function streamEndpoints(broker: ServiceBroker): Map<StreamEndpointName, StreamEndpoint> {
  let registry = registries.get(broker);
  if (!registry) registries.set(broker, (registry = new Map()));
  return registry;
}
