// The one drop rule of the box's bounded durable queues (the cloud outbox, the ADMP uplink): when
// a newcomer does not fit, the items of lowest value go first, the oldest first within a value;
// never one worth more than the newcomer, nor one being sent. If that frees too little, nothing
// goes and the newcomer itself is refused.

export interface Room {
  /** Items and bytes that must be freed. */
  items: number;
  bytes: number;
}

/**
 * The items to drop so that `need` is freed, or undefined when the newcomer must be refused.
 * `queued` is in enqueue order, oldest first; `valueOf` ranks an item (low goes first).
 */
export function makeRoom<T>(
  queued: Iterable<T>,
  need: Room,
  newcomerValue: number,
  valueOf: (item: T) => number,
  bytesOf: (item: T) => number,
  beingSent: (item: T) => boolean = () => false,
): T[] | undefined {
  if (need.items <= 0 && need.bytes <= 0) return [];
  // A stable sort: within one value, enqueue order (oldest first) stays.
  const candidates = [...queued]
    .filter((i) => valueOf(i) <= newcomerValue && !beingSent(i))
    .sort((a, b) => valueOf(a) - valueOf(b));
  const dropped: T[] = [];
  let items = 0;
  let bytes = 0;
  for (const c of candidates) {
    if (items >= need.items && bytes >= need.bytes) break;
    dropped.push(c);
    items++;
    bytes += bytesOf(c);
  }
  return items >= need.items && bytes >= need.bytes ? dropped : undefined;
}
