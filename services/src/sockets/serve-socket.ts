import { ChatError, type User } from "@chat/shared";
import { upgradeWebSocket } from "@hono/node-server";
import type { Context, MiddlewareHandler } from "hono";
import type { WSContext, WSEvents } from "hono/ws";
import type { WebSocket } from "ws";
import { clientAddress } from "../http/client-address.ts";
import type { App, AppEnv, NodeServices } from "../http/context.ts";
import { ANONYMOUS } from "../identity/tokens.ts";
import type { Transport } from "../lifecycle/drainer.ts";
import {
  type SocketConnection as Connection,
  SocketConnection,
  type SocketProtocol,
  type SocketSettings,
} from "./connection.ts";

export interface SocketRoute {
  path: string;
  transport: Transport;
  /** Builds the protocol for a new connection, given the upgrade request's query params. */
  open(connection: Connection, query: Record<string, string>): SocketProtocol;
  /** How a bad token is refused: Phoenix refuses the upgrade (403); Action Cable accepts, then disconnects. */
  onBadToken?: "refuse-upgrade" | "accept-as-invalid";
}

/** Serves a WebSocket protocol at `path`, with the Origin allowlist and token check before the upgrade. */
export function serveSocket(app: App, services: NodeServices, route: SocketRoute): void {
  const settings = socketSettings(services, route.transport);
  app.get(
    route.path,
    checkOrigin(services.config.ALLOWED_ORIGINS),
    authenticateSocket(services, route),
    (c, next) => {
      // Read what the connection needs from the full context now: the upgrade's handlers
      // live as long as the socket, and get only a detached context.
      const { context, release } = detachedUpgrade(c);
      const events = new SocketEvents(settings, route, {
        user: c.get("user"),
        address: clientAddress(c),
        query: c.req.query(),
        release,
      });
      return upgradeWebSocket(() => events)(context, next);
    },
  );
}

function socketSettings(services: NodeServices, transport: Transport): SocketSettings {
  const { config } = services;
  return {
    transport,
    maxBufferBytes: config.MAX_SOCKET_BUFFER_BYTES,
    framesPerSecond: config.SOCKET_FRAMES_PER_SECOND,
    frameBurst: config.SOCKET_FRAME_BURST,
    drainer: services.drainer,
    metrics: services.metrics,
    log: services.log,
  };
}

/** What a connection is opened with; `release` lets go of the upgrade's request. */
interface Upgrade {
  user: User;
  address: string;
  query: Record<string, string>;
  release(): void;
}

/**
 * One socket's handlers, as methods rather than closures: @hono/node-server keeps them for
 * the socket's lifetime and calls them on this object (four closures and their scope cost
 * ~300 B per socket). The upgrade's details are let go once the socket opens.
 */
class SocketEvents implements WSEvents {
  readonly #settings: SocketSettings;
  readonly #route: SocketRoute;
  #opening: Upgrade | undefined;
  #connection: SocketConnection | undefined;

  constructor(settings: SocketSettings, route: SocketRoute, upgrade: Upgrade) {
    this.#settings = settings;
    this.#route = route;
    this.#opening = upgrade;
  }

  onOpen(_event: Event, ws: WSContext): void {
    const upgrade = this.#opening;
    if (!upgrade) return;
    this.#opening = undefined;
    upgrade.release();
    // The helper keeps the upgrade's parsed URL on `ws` for the socket's life (~280 B, a
    // twentieth of a connection); nothing reads it once the socket is open.
    ws.url = null;
    const connection = new SocketConnection(
      ws.raw as WebSocket,
      this.#settings,
      upgrade.user,
      upgrade.address,
    );
    this.#connection = connection;
    connection.attach(this.#route.open(connection, upgrade.query));
  }

  onMessage(event: MessageEvent): void {
    this.#connection?.receive(event.data as string | ArrayBuffer);
  }

  onClose(): void {
    this.#connection?.ended();
  }

  onError(event: Event): void {
    const error = (event as Event & { error?: unknown }).error;
    this.#settings.log.debug({ err: error }, "socket error");
  }
}

/**
 * What @hono/node-server's `upgradeWebSocket` reads from a context: the Upgrade header, the
 * URL and the server's bindings (which it marks for its server side to check). Its socket
 * handlers keep what they are given for the socket's lifetime. The full context would keep
 * each connection's Request, Headers, Responses, URLs and bound methods (~3.7 KB); `release`,
 * once the socket is open, lets go of the bindings' upgrade IncomingMessage (~1 KB) and the
 * request's URL and header. It assigns rather than deletes: a delete turns the bindings into
 * a dictionary (448 B instead of ~60).
 */
function detachedUpgrade(c: Context<AppEnv>): { context: Context; release: () => void } {
  const bindings = c.env;
  const upgrade = c.req.header("upgrade");
  const context: { env: object; req: object | undefined } = {
    env: bindings,
    req: {
      url: c.req.url,
      header: (name: string) => (name.toLowerCase() === "upgrade" ? upgrade : undefined),
    },
  };
  const release = () => {
    bindings.incoming = undefined;
    context.req = undefined;
  };
  return { context: context as unknown as Context, release };
}

/**
 * Browsers always send Origin as a web origin (`https://host[:port]`, or `null`); refuse
 * cross-site pages not on the allowlist (CSWSH). Anything else came from a non-browser
 * client (Tsung sends its bare host name), which could set any Origin it liked anyway.
 */
function checkOrigin(allowed: string[]): MiddlewareHandler {
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (origin && fromBrowser(origin) && !allowed.includes("*") && !allowed.includes(origin)) {
      const host = c.req.header("x-forwarded-host") ?? c.req.header("host");
      const sameOrigin = origin !== "null" && new URL(origin).host === host;
      if (!sameOrigin)
        throw new ChatError(
          "forbidden_origin",
          `origin ${origin} is not allowed (ALLOWED_ORIGINS)`,
        );
    }
    await next();
  };
}

/** A serialized origin as browsers send it: an http(s) URL, or "null" for opaque origins. */
function fromBrowser(origin: string): boolean {
  if (origin === "null") return true;
  if (!URL.canParse(origin)) return false;
  const protocol = new URL(origin).protocol;
  return protocol === "http:" || protocol === "https:";
}

/** Token from `?token=` (phoenix.js params, Action Cable URLs) or Phoenix's bearer subprotocol. */
function authenticateSocket(services: NodeServices, route: SocketRoute): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = c.req.query("token") ?? bearerSubprotocol(c.req.header("sec-websocket-protocol"));
    let user: User = ANONYMOUS;
    if (token) {
      try {
        user = await services.tokens.verify(token);
      } catch (error) {
        if (route.onBadToken !== "accept-as-invalid") throw error;
        user = INVALID_TOKEN_USER;
      }
    } else if (services.config.REQUIRE_TOKEN) {
      if (route.onBadToken !== "accept-as-invalid")
        throw new ChatError("unauthorized", "a token is required");
      user = INVALID_TOKEN_USER;
    }
    c.set("user", user);
    await next();
  };
}

/** Marks a connection whose token failed, for protocols that refuse it after the upgrade. */
export const INVALID_TOKEN_USER: User = { id: "", name: "" };

function bearerSubprotocol(header: string | undefined): string | undefined {
  const prefix = "base64url.bearer.phx.";
  const entry = header
    ?.split(",")
    .map((p) => p.trim())
    .find((p) => p.startsWith(prefix));
  return entry ? Buffer.from(entry.slice(prefix.length), "base64url").toString("utf8") : undefined;
}
