// Work a service does at its own start but that others must hear (events it announces): services
// of one node start together, and one not yet started misses a broadcast. So it runs once the
// whole node is up ($broker.started), or at once for a service started later (a restart).
import type { ServiceBroker } from 'moleculer';

export function afterNodeStart(broker: ServiceBroker, work: () => void): void {
  if (broker.started) work();
  else
    (broker as unknown as { localBus: { once(event: string, fn: () => void): void } }).localBus.once(
      '$broker.started',
      work,
    );
}
