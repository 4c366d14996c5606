// Footage an automation keeps: an event of the label "hold" on the camera, from the pre-roll
// until its end, so that retention keeps it and the sync plan sends it as it sends alerts. The
// ends are on disk: one due while the box was off comes at the next start, once.
import type { LoggerInstance, ServiceBroker } from 'moleculer';
import { call } from '../../lib/bus.ts';
import type { Collection } from '../../lib/store.ts';
import { HOLD_LABEL, type ObjectEvent } from '../events/events.schemas.ts';

interface Hold {
  start: ObjectEvent;
  endAt: number;
}

export class Holds {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly store: Collection<Hold>,
    private readonly broker: ServiceBroker,
    private readonly log: LoggerInstance,
  ) {}

  /** The holds that were on when the box stopped: each ends when due (now, if it is past). */
  async resume(): Promise<void> {
    for await (const [id, hold] of this.store.entries()) this.arm(id, hold);
  }

  /** Starts a hold on a camera: its event, with the camera's picture now. Answers the event's id. */
  async start(camera: string, preRollSeconds: number, seconds: number, by: string): Promise<string> {
    const now = Date.now();
    const id = `hold-${camera}-${now.toString(36)}`.slice(0, 80);
    const picture = await call(this.broker, 'streams.snapshot', { id: camera }, { timeout: 5000, retries: 0 }).catch(
      (err: Error) => {
        this.log.warn(`Hold on ${camera} (${by}): no picture of the camera now: ${err.message}`);
        return undefined;
      },
    );
    const start: ObjectEvent = {
      type: 'start',
      id,
      camera,
      label: HOLD_LABEL,
      topScore: 1,
      box: [0, 0, 1, 1],
      zones: [],
      start: new Date(now - preRollSeconds * 1000).toISOString(),
      end: null,
      stationary: false,
      ...(picture ? { snapshot: picture.jpegBase64 } : {}),
    };
    await call(this.broker, 'events.record', start, { retries: 2 });
    const { snapshot: _, ...kept } = start;
    const hold: Hold = { start: kept, endAt: now + seconds * 1000 };
    await this.store.put(id, hold, { sync: true });
    this.arm(id, hold);
    return id;
  }

  stop(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private arm(id: string, hold: Hold) {
    const timer = setTimeout(() => void this.end(id, hold), Math.max(0, hold.endAt - Date.now()));
    this.timers.set(id, timer);
  }

  private async end(id: string, hold: Hold) {
    this.timers.delete(id);
    const end = new Date(Math.min(hold.endAt, Date.now())).toISOString();
    try {
      await call(this.broker, 'events.record', { ...hold.start, type: 'end', end }, { retries: 2 });
      await this.store.del(id, { sync: true });
    } catch (err) {
      // The events service is away: try again in a minute (the record stays on disk meanwhile).
      this.log.warn(`Hold ${id}: its end is not recorded yet: ${(err as Error).message}`);
      const timer = setTimeout(() => void this.end(id, hold), 60_000);
      this.timers.set(id, timer);
    }
  }
}
