// node-datachannel forgets a track's or data channel's native wrapper only once its "closed"
// callback has run; one collected as garbage before that stays on its list, and cleanup() (when
// the service stops) closes it again from freed memory, which crashes the process. So each is
// held here until it has closed, and gets its one "closed" callback here.
import type { DataChannel, Track } from 'node-datachannel';

/** Tracks and data channels not yet closed. */
const open = new Set<Track | DataChannel>();

export function keepUntilClosed(channel: Track | DataChannel, onClosed?: () => void): void {
  open.add(channel);
  channel.onClosed(() => {
    open.delete(channel);
    onClosed?.();
  });
}
