import type { Logger } from "@chat/shared";
import type { HttpBindings } from "@hono/node-server";
import type { Hono } from "hono";
import type { NodeConfig } from "../config.ts";
import type { RedisBus } from "../delivery/redis-bus.ts";
import type { AuthVariables } from "../identity/auth.ts";
import type { TokenIssuer } from "../identity/tokens.ts";
import type { Drainer } from "../lifecycle/drainer.ts";
import type { Chat } from "../messages/chat.ts";
import type { NodeMetrics } from "../metrics.ts";
import type { Presence } from "../presence/presence.ts";
import type { Database } from "../storage/database.ts";
import type { MessageStore } from "../storage/message-store.ts";

/** Everything a route needs, built once by the composition root (node.ts). */
export interface NodeServices {
  config: NodeConfig;
  log: Logger;
  metrics: NodeMetrics;
  db: Database;
  bus: RedisBus;
  store: MessageStore;
  chat: Chat;
  tokens: TokenIssuer;
  drainer: Drainer;
  presence: Presence;
}

/** Node's request and response (partial: a WebSocket upgrade has no response). */
export type AppEnv = { Bindings: Partial<HttpBindings>; Variables: AuthVariables };
export type App = Hono<AppEnv>;
