// How an MQTT sign-in ends, as a string a test can match: "connected", or "<CONNACK code>: <message>".
import mqtt, { type IClientOptions } from 'mqtt';

export const connectOutcome = (url: string, options: IClientOptions) =>
  mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options }).then(
    (c) => (c.end(true), 'connected'),
    (err: Error & { code?: number }) => `${err.code}: ${err.message}`,
  );
