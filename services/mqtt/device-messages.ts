// What devices publish under their own topics, onto the bus for the box's services (their
// states, the automations' triggers), at most so many per device per second: a device that
// floods the broker floods nobody else. The broker still delivers every message to subscribers.
// A message goes on at once; under a flood they go as one bus event every BATCH_MS at most: a bus
// event (and the states and automations it reaches) costs more than a message's routing in the broker.
import type { LoggerInstance } from 'moleculer';
import { DEVICE_MESSAGE_BYTES, type DeviceMessage } from './mqtt.schemas.ts';

interface Bucket {
  tokens: number;
  at: number;
  dropped: number;
  toldAt: number;
}

/** The least time between two bus events of device messages. */
export const BATCH_MS = 20;

export class DeviceMessages {
  private readonly buckets = new Map<string, Bucket>();
  private batch: DeviceMessage[] = [];
  private sentAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly perSecond: number,
    private readonly send: (messages: DeviceMessage[]) => void,
    private readonly log: LoggerInstance,
  ) {}

  /** A device published `payload` to fogedge/devices/<device>/<topic>. */
  published(device: string, topic: string, payload: Buffer, retain: boolean): void {
    const now = Date.now();
    let b = this.buckets.get(device);
    if (!b) this.buckets.set(device, (b = { tokens: this.perSecond, at: now, dropped: 0, toldAt: 0 }));
    // Up to one second's worth at once, refilled as time passes.
    b.tokens = Math.min(this.perSecond, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      b.dropped++;
      if (now - b.toldAt >= 60_000) {
        this.log.warn(
          `Device "${device}" sends more than ${this.perSecond} messages a second (mqtt.deviceMessagesPerSecond): ${b.dropped} did not reach the box's services (states, automations); the broker delivered them`,
        );
        b.toldAt = now;
        b.dropped = 0;
      }
      return;
    }
    b.tokens -= 1;
    // At the next turn at the soonest: the messages of one read go together.
    this.timer ??= setTimeout(() => this.flush(), Math.max(0, this.sentAt + BATCH_MS - now));
    this.batch.push({
      device,
      topic,
      payload: payload.subarray(0, DEVICE_MESSAGE_BYTES).toString('utf8'),
      retain,
      at: new Date(now).toISOString(),
    });
  }

  private flush(): void {
    const messages = this.batch;
    this.batch = [];
    this.timer = undefined;
    this.sentAt = Date.now();
    this.send(messages);
  }

  /** What is held goes now (the broker is stopping). */
  close(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.flush();
  }

  forget(device: string): void {
    this.buckets.delete(device);
  }
}
