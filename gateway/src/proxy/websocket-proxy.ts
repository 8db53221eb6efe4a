import { Agent, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { answerRaw, ChatError, type Logger } from "@chat/shared";
import { createProxyServer } from "http-proxy-3";
import type { GatewayConfig } from "../config.ts";
import type { GatewayMetrics } from "../metrics.ts";
import type { Upstream, UpstreamPool } from "../upstreams/pool.ts";
import type { SourcePort, SourcePorts } from "../upstreams/source-ports.ts";
import { destroySelf } from "./destroy-self.ts";
import { RetryBudget } from "./retry-budget.ts";

const MAX_SOURCE_PORT_TRIES = 20;

/**
 * Hands http-proxy connections it did not open: each upgrade's socket is connected first, so
 * the gateway can try another node when one fails before 101, while the client socket is
 * still untouched. One agent serves every upgrade (an agent per upgrade would live as long
 * as its tunnel): http.request takes its socket synchronously, within `handOff`.
 */
class HandOffAgent extends Agent {
  #next: Socket | undefined;

  constructor() {
    super({ keepAlive: false }); // upgrades must not share keep-alive sockets
  }

  /** Runs `start`, whose request gets `socket` as its connection. */
  handOff(socket: Socket, start: () => void): void {
    this.#next = socket;
    try {
      start();
    } finally {
      this.#next = undefined;
    }
  }

  override createConnection(): Socket {
    const socket = this.#next;
    this.#next = undefined;
    if (!socket) throw new Error("no connected socket to hand off");
    return socket;
  }
}

/** WebSocket upgrades: fewest open connections (P2C), connect retries, an idle bound on tunnels. */
export function createWebSocketProxy(deps: {
  pool: UpstreamPool;
  config: GatewayConfig;
  metrics: GatewayMetrics;
  log: Logger;
  sources: SourcePorts;
}) {
  const { pool, config, metrics, log, sources } = deps;
  const proxy = createProxyServer({ xfwd: true, ws: true });
  const budget = new RetryBudget(config.RETRY_BUDGET_RATIO, config.RETRY_BUDGET_MIN_PER_S);
  const agent = new HandOffAgent();
  // A client that vanishes mid-handshake must not crash the worker.
  proxy.on("error", (error) => log.debug({ err: error }, "websocket proxy error"));

  async function handle(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    // The client socket's errors already destroy it: admission listens from its first byte.
    budget.recordRequest();
    const tried = new Set<Upstream>();
    for (let attempt = 0; attempt < config.MAX_ATTEMPTS && !client.destroyed; attempt++) {
      const upstream = pool.pick("stream", tried);
      if (!upstream) break;
      if (attempt > 0 && !budget.tryRetry()) break;
      if (attempt > 0) metrics.retries.inc({ reason: "upgrade-connect" });
      tried.add(upstream);
      const socket = await connectTo(upstream).catch(() => undefined);
      if (!socket) {
        pool.eject(upstream);
        metrics.ejections.inc({ upstream: upstream.address });
        continue;
      }
      tunnel(req, client, head, upstream, socket);
      return;
    }
    if (!client.destroyed)
      answerRaw(
        client,
        new ChatError("unavailable", "no node could take the connection; retry", {
          retryAfter: 1,
        }),
      );
  }

  function tunnel(
    req: IncomingMessage,
    client: Duplex,
    head: Buffer,
    upstream: Upstream,
    socket: Socket,
  ): void {
    upstream.streams++;
    metrics.openWebSockets.inc({ upstream: upstream.address });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      upstream.streams--;
      metrics.openWebSockets.dec({ upstream: upstream.address });
      socket.destroy();
    };
    // "close" comes once: plain listeners, without `once`'s wrapper and state per socket.
    client.on("close", release);
    socket.on("close", () => client.destroy());
    agent.handOff(socket, () =>
      proxy.ws(req, client, head, { target: { host: upstream.host, port: upstream.port }, agent }),
    );
    // http-proxy turns socket timeouts off; an established tunnel gets an idle bound instead.
    for (const side of [client as Socket, socket]) {
      side.setTimeout(config.STREAM_IDLE_TIMEOUT_MS);
      side.on("timeout", destroySelf);
    }
  }

  /** Connects from the next source port; one held by another socket is skipped, not the node's fault. */
  async function connectTo(upstream: Upstream): Promise<Socket> {
    for (let tries = 1; ; tries++) {
      try {
        return await connectFrom(upstream, sources.take());
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const localClash = code === "EADDRINUSE" || code === "EADDRNOTAVAIL";
        if (!localClash || tries >= MAX_SOURCE_PORT_TRIES) throw error;
      }
    }
  }

  function connectFrom(upstream: Upstream, source: SourcePort | undefined): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: upstream.host, port: upstream.port, ...source });
      const timer = setTimeout(
        () => socket.destroy(new Error("connect timeout")),
        config.CONNECT_TIMEOUT_MS,
      );
      const failed = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once("error", failed);
      socket.once("connect", () => {
        clearTimeout(timer);
        // The tunnel outlives this promise: leave no listener holding its closure (and timer).
        socket.off("error", failed);
        socket.on("error", destroySelf); // later errors end the tunnel, never the worker
        resolve(socket);
      });
    });
  }

  return { handle, close: () => proxy.close() };
}
