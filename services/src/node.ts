import type { AddressInfo } from "node:net";
import type { Logger } from "@chat/shared";
import { createAdaptorServer, type ServerType } from "@hono/node-server";
import { WebSocketServer } from "ws";
import type { NodeConfig } from "./config.ts";
import { DeliveryHub } from "./delivery/hub.ts";
import { RedisBus } from "./delivery/redis-bus.ts";
import { createApp } from "./http/app.ts";
import type { NodeServices } from "./http/context.ts";
import { TokenIssuer } from "./identity/tokens.ts";
import { Drainer } from "./lifecycle/drainer.ts";
import { SendRateLimiter } from "./limits/rate-limiter.ts";
import { Chat } from "./messages/chat.ts";
import { createNodeMetrics } from "./metrics.ts";
import { Presence } from "./presence/presence.ts";
import { Database } from "./storage/database.ts";
import { MessageStore } from "./storage/message-store.ts";
import { migrate } from "./storage/migrate.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChatNode {
  readonly services: NodeServices;
  /** Migrates, connects and listens; resolves with the bound port. */
  start(): Promise<number>;
  /** Drains (readiness false, streams told to reconnect, in-flight finished) and closes. */
  stop(): Promise<void>;
}

/** The composition root: builds every part of a node from its config, in dependency order. */
export function createChatNode(config: NodeConfig, log: Logger): ChatNode {
  const metrics = createNodeMetrics(config.NODE_ID);
  const db = new Database(config, metrics, log);
  const bus = new RedisBus(config.REDIS_URL, config.NODE_ID, metrics, log);
  const store = new MessageStore(db, metrics);
  const hub = new DeliveryHub({ store, bus, config, metrics, log });
  const limiter = new SendRateLimiter({
    redis: bus.commands,
    limit: config.RATE_LIMIT_SENDS,
    windowMs: config.RATE_LIMIT_WINDOW_MS,
    metrics,
    log,
  });
  const chat = new Chat(store, hub, limiter);
  const tokens = new TokenIssuer({ secret: config.TOKEN_SECRET, ttlSeconds: config.TOKEN_TTL_S });
  const drainer = new Drainer(metrics);
  const presence = new Presence({ bus, nodeId: config.NODE_ID, config, log, metrics });
  const services: NodeServices = {
    config,
    log,
    metrics,
    db,
    bus,
    store,
    chat,
    tokens,
    drainer,
    presence,
  };
  let server: ServerType | undefined;

  return {
    services,
    async start() {
      await migrateWhenReachable(db, config.STARTUP_TIMEOUT_MS, log);
      await db.warm();
      db.startMonitor();
      hub.start((room, diff) => presence.received(room, diff));
      await presence.start();
      const app = createApp(services);
      const bound = await new Promise<AddressInfo>((resolve, reject) => {
        const websocket = { server: createWebSocketServer(config) };
        // createAdaptorServer rather than serve(): serve() cannot pass a listen backlog.
        const created = createAdaptorServer({ fetch: app.fetch, hostname: config.HOST, websocket });
        server = created;
        created.once("error", reject);
        created.listen(
          { port: config.PORT, host: config.HOST, backlog: config.LISTEN_BACKLOG },
          () => resolve(created.address() as AddressInfo),
        );
      });
      server?.on("error", (error) => log.error({ err: error }, "HTTP server error"));
      return bound.port;
    },
    async stop() {
      drainer.drain();
      await presence.stop();
      await sleep(config.DRAIN_GRACE_MS);
      const closed = new Promise<void>((resolve) =>
        server ? server.close(() => resolve()) : resolve(),
      );
      await Promise.race([
        Promise.all([drainer.idle(config.DRAIN_TIMEOUT_MS), closed]),
        sleep(config.DRAIN_TIMEOUT_MS),
      ]);
      if (server && "closeAllConnections" in server) server.closeAllConnections();
      await hub.close();
      await db.close();
    },
  };
}

/** Nodes may start before Postgres accepts connections (compose, a restart): retry until the bound. */
async function migrateWhenReachable(db: Database, timeoutMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await db.checkRoles(); // after a failover the writer may be the promoted replica
      await migrate(db.primary, log);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      log.warn({ err: error }, "cannot migrate yet; retrying");
      await sleep(500);
    }
  }
}

/** Subprotocols the socket protocols speak; a client offering others gets the first it offered. */
const KNOWN_SUBPROTOCOLS = ["actioncable-v1-json", "phoenix"];

function createWebSocketServer(config: NodeConfig): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    maxPayload: config.MAX_FRAME_BYTES,
    perMessageDeflate: false, // CPU per frame is what limits connections per core
    handleProtocols: (offered) =>
      KNOWN_SUBPROTOCOLS.find((p) => offered.has(p)) ?? [...offered][0] ?? false,
  });
}
