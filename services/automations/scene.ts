// What each camera has in view now, from the events: counts of objects per label (and per zone)
// that change, and objects that have stayed (loitering), as facts for the automations.
import type { StoredEvent } from '../events/events.schemas.ts';
import type { Fact } from './triggers.ts';

interface InView {
  event: StoredEvent;
  /** Loiter triggers' seconds already told for this object. */
  loitered: Set<number>;
}

export class Scene {
  private readonly inView = new Map<string, InView>();

  /** An event started, changed or ended: the counts that changed with it. */
  update(e: StoredEvent): Fact[] {
    const before = this.counts(e.camera);
    if (e.end) this.inView.delete(e.id);
    else {
      const known = this.inView.get(e.id);
      this.inView.set(e.id, { event: e, loitered: known?.loitered ?? new Set() });
    }
    const after = this.counts(e.camera);
    const facts: Fact[] = [];
    for (const key of new Set([...before.keys(), ...after.keys()])) {
      const [b, a] = [before.get(key) ?? 0, after.get(key) ?? 0];
      if (a === b) continue;
      const [label, zone] = key.split('\n') as [string, string];
      facts.push({ kind: 'count', camera: e.camera, label, zone: zone || null, before: b, after: a });
    }
    return facts;
  }

  /** Objects in view for at least one of these lengths (s) that were not told of yet, each once per length. */
  loitering(lengths: number[], now = Date.now()): Fact[] {
    const facts: Fact[] = [];
    for (const o of this.inView.values()) {
      const stayed = (now - Date.parse(o.event.start)) / 1000;
      for (const seconds of lengths) {
        if (stayed < seconds || o.loitered.has(seconds)) continue;
        o.loitered.add(seconds);
        facts.push({ kind: 'event', on: 'loiter', event: o.event, loiterSeconds: seconds });
      }
    }
    return facts;
  }

  get busy(): boolean {
    return this.inView.size > 0;
  }

  private counts(camera: string): Map<string, number> {
    const out = new Map<string, number>();
    const add = (key: string) => out.set(key, (out.get(key) ?? 0) + 1);
    for (const { event } of this.inView.values()) {
      if (event.camera !== camera) continue;
      add(`${event.label}\n`);
      for (const zone of event.zones) add(`${event.label}\n${zone}`);
    }
    return out;
  }
}
