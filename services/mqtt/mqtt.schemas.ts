// What the MQTT service tells others.
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

declare module '../../lib/bus.ts' {
  interface Events {
    /** A device's last connection to the broker closed: the services that talk to it know it is offline. */
    'mqtt.device.disconnected': { device: string };
  }
}
