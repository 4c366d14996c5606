// Review items: a camera's object events grouped into periods of activity, so a busy street is
// a handful of things to look at, not one per passer-by. An item opens with the first object that
// counts for review, takes every object that comes while it is open, and closes once none has
// been in view for `idleMs`; one that runs longer than `maxMs` closes, and what is still in view
// opens the next. It is an alert when one of its objects matches the camera's alert rules
// (labels, zones), otherwise a detection; objects outside the required zones are not reviewed.
// One camera's changes are made one at a time.
import type { LoggerInstance } from 'moleculer';
import { KeyTurns } from '../../lib/key-turns.ts';
import type { Collection } from '../../lib/store.ts';
import type { Camera } from '../cameras/cameras.schemas.ts';
import { HOLD_LABEL, type ReviewItem, type Severity, type StoredEvent } from './events.schemas.ts';

type Rules = Camera['review'];
type ReviewObject = ReviewItem['objects'][number];
export type ReviewNews = 'review.opened' | 'review.updated' | 'review.closed';

export interface ReviewStores {
  items: Collection<ReviewItem>;
  /** `<start ISO>!<id>` -> id: items in time order. */
  byStart: Collection<string>;
}

export interface ReviewTimes {
  idleMs: number;
  maxMs: number;
}

interface OpenItem {
  item: ReviewItem;
  /** Its objects still in view. */
  inView: Set<string>;
  /** When its last object to leave left. */
  lastEnd: string | undefined;
  idle: NodeJS.Timeout | undefined;
  tooLong: NodeJS.Timeout;
}

/** How an event counts for review under a camera's rules: alert, detection, or not at all. */
export function severityOf(e: Pick<StoredEvent, 'label' | 'zones'>, rules: Rules): Severity | undefined {
  // Footage someone (an automation) asked to keep is an alert wherever it is.
  if (e.label === HOLD_LABEL) return 'alert';
  const inAny = (zones: string[]) => zones.length === 0 || e.zones.some((z) => zones.includes(z));
  if (!inAny(rules.requiredZones)) return undefined;
  return rules.alertLabels.includes(e.label) && inAny(rules.alertZones) ? 'alert' : 'detection';
}

/** What an item says of itself follows from its objects. */
function summarize(item: ReviewItem): void {
  const { objects } = item;
  item.labels = [...new Set(objects.map((o) => o.label))];
  item.zones = [...new Set(objects.flatMap((o) => o.zones))];
  item.severity = objects.some((o) => o.severity === 'alert') ? 'alert' : 'detection';
  item.topScore = Math.max(...objects.map((o) => o.topScore));
  // The picture that stands for it: its surest alert object, else its surest object.
  const rank = (o: ReviewObject) => (o.severity === 'alert' ? 1 : 0) + o.topScore / 2;
  item.thumbnailEvent = objects.reduce((a, b) => (rank(b) > rank(a) ? b : a)).event;
}

export class ReviewItems {
  private readonly open = new Map<string, OpenItem>();
  private readonly turns = new KeyTurns();
  private stopped = false;

  constructor(
    private readonly stores: ReviewStores,
    private readonly rulesOf: (camera: string) => Promise<Rules | undefined>,
    private readonly announce: (name: ReviewNews, item: ReviewItem) => void,
    private readonly closed: (item: ReviewItem) => void,
    private readonly times: ReviewTimes,
    private readonly log: LoggerInstance,
  ) {}

  /** An event as stored after a start, update or end. */
  onEvent(e: StoredEvent): Promise<void> {
    return this.turns
      .run(e.camera, () => this.apply(e))
      .catch((err: Error) => {
        this.log.warn(`review: event ${e.id} not grouped: ${err.message}`);
      });
  }

  /** Items a stop left open end where they were last changed. */
  async closeLeftOpen(): Promise<ReviewItem[]> {
    const closed: ReviewItem[] = [];
    for (const item of await this.stores.items.values()) {
      if (item.end !== null) continue;
      const ended = { ...item, end: item.updatedAt, updatedAt: new Date().toISOString() };
      await this.stores.items.put(ended.id, ended);
      closed.push(ended);
    }
    return closed;
  }

  /**
   * An event was deleted: it leaves its item (which then shows its next best object), and an
   * item left with none goes too. Returns the items gone, for their previews to go with them.
   */
  removeEvent(e: Pick<StoredEvent, 'id' | 'camera' | 'start'>): Promise<ReviewItem[]> {
    return this.turns.run(e.camera, async () => {
      const gone: ReviewItem[] = [];
      // Its item started at most reviewMaxSeconds before it (and not after it).
      const from = new Date(Date.parse(e.start) - this.times.maxMs - 60_000).toISOString();
      for await (const [key, id] of this.stores.byStart.entries({ gte: from, lt: `${e.start}~` })) {
        const open = this.open.get(e.camera);
        const item = open?.item.id === id ? open.item : await this.stores.items.get(id);
        if (!item?.objects.some((o) => o.event === e.id)) continue;
        item.objects = item.objects.filter((o) => o.event !== e.id);
        open?.inView.delete(e.id);
        if (item.objects.length) {
          summarize(item);
          await this.save(item, 'review.updated');
        } else {
          if (open?.item.id === id) {
            clearTimeout(open.idle);
            clearTimeout(open.tooLong);
            this.open.delete(e.camera);
          }
          await this.stores.byStart.del(key);
          await this.stores.items.del(id);
          gone.push(item);
        }
      }
      return gone;
    });
  }

  /** The service stops: timers go, changes under way finish; what is open is closed at the next start. */
  async stop(): Promise<void> {
    for (const o of this.open.values()) {
      clearTimeout(o.idle);
      clearTimeout(o.tooLong);
    }
    this.open.clear();
    this.stopped = true;
    await this.turns.settled();
  }

  private async apply(e: StoredEvent): Promise<void> {
    if (this.stopped) return; // what is open now is closed at the next start
    const open = this.open.get(e.camera);
    const member = open?.item.objects.find((o) => o.event === e.id);
    const rules = await this.rulesOf(e.camera);
    // A camera removed meanwhile: an object already in an item stays what it was.
    const severity = rules ? severityOf(e, rules) : member?.severity;
    if (!severity) return; // not for review (yet: it may enter a required zone later)
    const gone = e.end !== null;
    const object: ReviewObject = { event: e.id, label: e.label, zones: [...e.zones], severity, topScore: e.topScore };
    if (!open) {
      if (!gone) await this.openWith(e.camera, e.start, [object], new Set([e.id]));
      return; // one that ended before it ever counted opens nothing
    }
    const { item } = open;
    const before = JSON.stringify(item.objects);
    item.objects = member ? item.objects.map((o) => (o === member ? object : o)) : [...item.objects, object];
    summarize(item);
    if (gone) open.inView.delete(e.id);
    else open.inView.add(e.id);
    if (e.end && (open.lastEnd === undefined || e.end > open.lastEnd)) open.lastEnd = e.end;
    clearTimeout(open.idle);
    open.idle =
      open.inView.size === 0
        ? setTimeout(() => this.closeLater(e.camera, item.id), this.times.idleMs).unref()
        : undefined;
    if (JSON.stringify(item.objects) !== before) await this.save(item, 'review.updated');
  }

  private async openWith(camera: string, start: string, objects: ReviewObject[], inView: Set<string>): Promise<void> {
    const id = `${camera}-${Date.parse(start).toString(36)}`;
    const item: ReviewItem = {
      ...{ id, camera, start, end: null, objects, reviewed: false, hasPreview: false, updatedAt: '' },
      ...{ severity: 'detection', labels: [], zones: [], topScore: 0, thumbnailEvent: objects[0]!.event },
    };
    summarize(item);
    const tooLong = setTimeout(() => this.closeLater(camera, id, { split: true }), this.times.maxMs).unref();
    this.open.set(camera, { item, inView, lastEnd: undefined, idle: undefined, tooLong });
    await this.stores.byStart.put(`${item.start}!${item.id}`, item.id);
    await this.save(item, 'review.opened');
  }

  private closeLater(camera: string, id: string, options: { split?: boolean } = {}): void {
    this.close(camera, id, options).catch((err: Error) =>
      this.log.warn(`review item ${id} not closed: ${err.message}`),
    );
  }

  /** Closes the item once idle; or, too long, at once, and what is still in view opens the next. */
  private close(camera: string, id: string, options: { split?: boolean } = {}): Promise<void> {
    return this.turns.run(camera, async () => {
      if (this.stopped) return;
      const open = this.open.get(camera);
      if (open?.item.id !== id || (!options.split && open.inView.size > 0)) return; // someone came back meanwhile
      this.open.delete(camera);
      clearTimeout(open.idle);
      clearTimeout(open.tooLong);
      const now = new Date().toISOString();
      const item = { ...open.item, end: options.split && open.inView.size > 0 ? now : (open.lastEnd ?? now) };
      await this.save(item, 'review.closed');
      this.closed(item);
      const still = item.objects.filter((o) => open.inView.has(o.event));
      if (still.length) await this.openWith(camera, now, still, new Set(open.inView));
    });
  }

  private async save(item: ReviewItem, news: ReviewNews): Promise<void> {
    item.updatedAt = new Date().toISOString();
    await this.stores.items.put(item.id, item);
    this.announce(news, structuredClone(item));
  }
}
