// Byte streams that cannot travel over the bus, handed between services of one node: the MQTT
// service takes sockets from the gateway's listeners (MQTT over WebSocket on the HTTP port), and
// the gateway takes the webrtc service's data channels (the API for a browser away from home).
// The taker registers its endpoint here when it starts; one registry per broker.
import type { Duplex } from 'node:stream';
import type { ServiceBroker } from 'moleculer';
import type { Caller } from './actions.ts';

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

/**
 * A message channel to a browser away from home (a WebRTC data channel of the webrtc service):
 * the gateway of the same node serves the box's API and its updates over it.
 */
export interface TunnelChannel {
  send(message: string | Buffer): void;
  /** Bytes handed to send and not yet on the wire. */
  buffered(): number;
  onMessage(listener: (message: string | Buffer) => void): void;
  onClose(listener: () => void): void;
  close(): void;
}

export interface TunnelEndpoint {
  /** Serves the channel as the caller (the paired browser's user), until it closes. */
  accept(channel: TunnelChannel, caller: Caller): void;
}

const tunnels = new WeakMap<ServiceBroker, TunnelEndpoint>();

export function tunnelEndpoint(broker: ServiceBroker): TunnelEndpoint | undefined {
  return tunnels.get(broker);
}

export function setTunnelEndpoint(broker: ServiceBroker, endpoint: TunnelEndpoint | undefined): void {
  if (endpoint) tunnels.set(broker, endpoint);
  else tunnels.delete(broker);
}
