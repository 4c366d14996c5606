// MQTT test helpers: how a sign-in ends, what a SUBACK granted, a message from mosquitto_pub, a
// CONNECT as bytes for a bare socket.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';

const run = promisify(execFile);

/** How an MQTT sign-in ends, as a string a test can match: "connected", or "<CONNACK code>: <message>". */
export const connectOutcome = (url: string, options: IClientOptions) =>
  // A generous bound: on a loaded machine a CONNACK can take seconds; the outcome is what is asserted.
  mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 30_000, ...options }).then(
    (c) => (c.end(true), 'connected'),
    (err: Error & { code?: number }) => `${err.code}: ${err.message}`,
  );

/** A 3.1.1 CONNECT (clean session) as bytes, for a test that speaks to the broker over a bare socket. */
export function connectPacket(
  clientId: string,
  options: { username?: string; password?: string; keepalive?: number } = {},
): Buffer {
  const { username, password, keepalive = 0 } = options;
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password: Buffer.from(password) }),
  });
}

/**
 * The code the SUBACK gives each filter: the QoS granted, or a refusal (0x80; MQTT 5: its reason).
 * mqtt.js calls a refusal an error; the packet says which filter.
 */
export const subackOf = (client: MqttClient, topics: string[], qos: 0 | 1 = 0) =>
  new Promise<number[]>((resolve) => {
    const onPacket = (packet: { cmd: string; granted?: Array<number | { qos: number }> }) => {
      if (packet.cmd !== 'suback') return;
      client.off('packetreceive', onPacket as never);
      resolve((packet.granted ?? []).map((g) => (typeof g === 'number' ? g : g.qos)));
    };
    client.on('packetreceive', onPacket as never);
    client.subscribe(topics, { qos }, () => undefined);
  });

/**
 * Debian's mosquitto_pub, as a third-party client sends one message: resolves once it has
 * (rejects with its output when the broker refused it).
 */
export function mosquittoPub(
  port: number,
  m: {
    user: string;
    password: string;
    topic: string;
    message: string;
    version?: 'mqttv311' | 'mqttv5';
    clientId?: string;
  },
) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-V', m.version ?? 'mqttv5', '-u', m.user, '-P', m.password];
  if (m.clientId) args.push('-i', m.clientId);
  return run('mosquitto_pub', [...args, '-t', m.topic, '-m', m.message], { timeout: 15_000 });
}
