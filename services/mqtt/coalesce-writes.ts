// Packets to one client within one turn of the event loop go out in one write: the fan-out of a
// publish to many subscribers otherwise costs a system call per packet per subscriber (mqtt-packet
// corks each packet only until the next tick). Held at most until the loop's check phase.
import type { Duplex } from 'node:stream';

export function coalesceWrites(stream: Duplex): void {
  const write = stream.write;
  let held = false;
  const release = () => {
    held = false;
    if (!stream.destroyed) stream.uncork();
  };
  stream.write = function (this: Duplex, ...args: Parameters<Duplex['write']>) {
    if (!held) {
      held = true;
      stream.cork();
      setImmediate(release);
    }
    return write.apply(this, args);
  } as Duplex['write'];
}
