import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A long-haul link in user space: a TCP relay that holds every chunk for half the round trip
 * in each direction and makes each new connection cost one round trip before its first byte,
 * as a TCP handshake does. It stands in for `tc netem` where the kernel lacks it
 * (CONFIG_NET_SCH_NETEM); it does not model loss, bandwidth or slow start.
 */
export interface DelayLink {
  port: number;
  /** Connections opened through the link: what crossed the long haul. */
  connections: number;
  /** Bytes carried towards the origin and back. */
  bytesUp: number;
  bytesDown: number;
  close(): Promise<void>;
}

export async function startDelayLink(
  target: { host: string; port: number },
  rttMs: number,
): Promise<DelayLink> {
  const oneWay = rttMs / 2;
  const link: DelayLink = {
    port: 0,
    connections: 0,
    bytesUp: 0,
    bytesDown: 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    link.connections++;
    const handshakeDone = performance.now() + rttMs;
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on("close", () => sockets.delete(socket));
    }
    relay(
      client,
      upstream,
      () => Math.max(performance.now(), handshakeDone) + oneWay,
      (n) => {
        link.bytesUp += n;
      },
    );
    relay(
      upstream,
      client,
      () => performance.now() + oneWay,
      (n) => {
        link.bytesDown += n;
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  link.port = typeof address === "object" && address ? address.port : 0;
  const close = link.close;
  link.close = async () => {
    for (const socket of sockets) socket.destroy();
    await close();
  };
  return link;
}

/** Forwards `from` to `to`, each chunk (and the end) at the time `deliverAt` gives it. */
function relay(
  from: Socket,
  to: Socket,
  deliverAt: () => number,
  count: (bytes: number) => void,
): void {
  let last = 0;
  const later = (action: () => void) => {
    // Chunks keep their order: never deliver before the one before.
    last = Math.max(last, deliverAt());
    setTimeout(action, Math.max(0, last - performance.now()));
  };
  from.on("data", (chunk) => {
    count(chunk.length);
    later(() => {
      if (!to.destroyed) to.write(chunk);
    });
  });
  from.on("end", () => later(() => to.end()));
}
