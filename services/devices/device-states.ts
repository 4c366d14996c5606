// Each device's last message per topic, read as its type says (a contact is open or closed),
// for the automations' conditions and the web UI. Kept on disk, written at most once a second
// per device however fast it sends, so a chatty sensor costs the flash little.
import type { LoggerInstance } from 'moleculer';
import type { Collection } from '../../lib/store.ts';
import type { DeviceStates, DeviceType, StateEntry } from './devices.schemas.ts';

/** Topics kept per device; a device that sends under more has the rest ignored (told once). */
export const MAX_STATE_TOPICS = 32;
const FLUSH_MS = 1000;

const ON = new Set(['on', 'true', '1', 'open', 'opened', 'detected', 'motion', 'yes']);
const OFF = new Set(['off', 'false', '0', 'closed', 'close', 'clear', 'no']);

const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
const JSON_WORDS: Record<string, unknown> = { true: true, false: false, null: null };

/** JSON when it is JSON, else the text. Plain text is not handed to JSON.parse: its exception
 *  costs more than the rest of a message's handling, and sensors send plain text all the time. */
function parsed(payload: string): unknown {
  const text = payload.trim();
  const first = text[0];
  if (first === '{' || first === '[' || first === '"') {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  if (text in JSON_WORDS) return JSON_WORDS[text];
  return JSON_NUMBER.test(text) ? Number(text) : text;
}

/** A yes/no from what devices send: ON/OFF, true/false, 1/0, or the type's own words. */
function yesNo(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  const text = String(v).toLowerCase();
  return ON.has(text) ? true : OFF.has(text) ? false : undefined;
}

/** The first of these fields a JSON object has; any other value as it is. */
function field(v: unknown, ...names: string[]): unknown {
  if (v === null || typeof v !== 'object') return v;
  for (const n of names) if ((v as Record<string, unknown>)[n] !== undefined) return (v as Record<string, unknown>)[n];
  return undefined;
}

/** The payload as a value of the device's type, or why it is not one. */
export function readState(type: DeviceType, payload: string): { value: StateEntry['value']; problem?: string } {
  const v = parsed(payload);
  const not = (what: string) => ({ value: null, problem: `"${payload.slice(0, 40)}" is not ${what}` });
  switch (type) {
    case 'contact': {
      // zigbee2mqtt's {"contact": true} means the contact is closed.
      const contact = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)['contact'] : undefined;
      if (typeof contact === 'boolean') return { value: contact ? 'closed' : 'open' };
      const open = yesNo(field(v, 'state', 'door', 'window'));
      return open === undefined
        ? not('open or closed (open/closed, ON/OFF, {"contact": false})')
        : { value: open ? 'open' : 'closed' };
    }
    case 'motion': {
      const moving = yesNo(field(v, 'occupancy', 'motion', 'state'));
      return moving === undefined
        ? not('motion (ON/OFF, {"occupancy": true})')
        : { value: moving ? 'detected' : 'clear' };
    }
    case 'switch': {
      const on = yesNo(field(v, 'state', 'power'));
      return on === undefined ? not('on or off (ON/OFF, {"state": "ON"})') : { value: on ? 'on' : 'off' };
    }
    case 'temperature': {
      const t = Number(field(v, 'temperature', 'value'));
      return Number.isFinite(t) && String(field(v, 'temperature', 'value')).trim() !== ''
        ? { value: t }
        : not('a temperature');
    }
    default:
      return { value: typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : payload };
  }
}

export class DeviceStateStore {
  private readonly states = new Map<string, DeviceStates>();
  private readonly dirty = new Set<string>();
  private readonly tooMany = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Collection<DeviceStates>,
    private readonly log: LoggerInstance,
  ) {}

  async load(): Promise<void> {
    for await (const [id, states] of this.store.entries()) this.states.set(id, states);
  }

  get(id: string): DeviceStates {
    return this.states.get(id) ?? {};
  }

  all(): Record<string, DeviceStates> {
    return Object.fromEntries(this.states);
  }

  /** A device's message: its topic's state now. */
  received(
    id: string,
    type: DeviceType,
    topic: string,
    payload: string,
    retained: boolean,
    at: string,
  ): StateEntry | undefined {
    const states = this.states.get(id) ?? {};
    if (!(topic in states) && Object.keys(states).length >= MAX_STATE_TOPICS) {
      if (!this.tooMany.has(id))
        this.log.warn(
          `Device "${id}" sends under more than ${MAX_STATE_TOPICS} topics: only the first ${MAX_STATE_TOPICS} are kept as its states`,
        );
      this.tooMany.add(id);
      return undefined;
    }
    const entry: StateEntry = { payload, ...readState(type, payload), retained, at };
    states[topic] = entry;
    this.states.set(id, states);
    this.dirty.add(id);
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
    return entry;
  }

  async forget(id: string): Promise<void> {
    this.states.delete(id);
    this.dirty.delete(id);
    await this.store.del(id);
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const items = [...this.dirty].flatMap((id): Array<[string, DeviceStates]> => {
      const states = this.states.get(id);
      return states ? [[id, states]] : [];
    });
    this.dirty.clear();
    await this.store
      .putMany(items, { sync: false })
      .catch((err: Error) => this.log.warn(`states of ${items.length} devices not kept: ${err.message}`));
  }
}
