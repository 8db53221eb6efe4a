import type { Duplex } from "node:stream";

/**
 * A listener that destroys the stream it is called on. One function shared by every socket,
 * where a closure per socket (and `once`'s wrapper and state) would cost a tunnel's sockets
 * ~1 KB of heap between them for the tunnel's life.
 */
export function destroySelf(this: Duplex): void {
  this.destroy();
}
