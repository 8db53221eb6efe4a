import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  answerClientError,
  answerMetrics,
  ChatError,
  discardBodyLeftAfterAnswer,
  type Logger,
  listenOn,
} from "@chat/shared";
import { CacheStore } from "./cache/cache-store.ts";
import { EdgeCache } from "./cache/edge-cache.ts";
import { isCacheCandidate } from "./cache/request-kind.ts";
import type { EdgeConfig } from "./config.ts";
import { createEdgeMetrics } from "./metrics.ts";
import { createPassthrough } from "./passthrough.ts";

const PURGE_PATH = "/.edge/purge";
const MAX_PURGE_BODY = 64 * 1024;
/**
 * The nodes' and the gateway's own endpoints: for Prometheus and probes on the inside, not
 * for the public. Passed on, they would show internal addresses and every node's counters,
 * and let anyone make nodes ping Postgres and Redis at will.
 */
const INTERNAL_PATHS = new Set(["/metrics", "/healthz", "/readyz"]);
const INTERNAL_PREFIX = "/.gateway/";

/**
 * An edge: caches what the origin lets it cache and passes live traffic through, on the
 * public port, where its one endpoint of its own (purge) lives under /.edge/ so as never to
 * shadow the origin's paths. Its metrics and health are on ADMIN_PORT, for the inside.
 */
export function createEdge(config: EdgeConfig, log: Logger) {
  const metrics = createEdgeMetrics(config.EDGE_ID);
  const store = new CacheStore(config.CACHE_MAX_BYTES, metrics);
  const cache = new EdgeCache({ store, config, metrics, log });
  const passthrough = createPassthrough(config.ORIGIN_URL, metrics, log);

  const server: Server = createServer(
    {
      maxHeaderSize: config.MAX_HEADER_BYTES,
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      requestTimeout: 0, // uploads and streams are bounded by the origin, not here
      // Node checks header timeouts on this interval (30 s by default): too late for slowloris.
      connectionsCheckingInterval: Math.min(1000, config.HEADERS_TIMEOUT_MS),
    },
    (req, res) => {
      discardBodyLeftAfterAnswer(req, res, config);
      route(req, res).catch((error: unknown) => fail(req, res, error));
    },
  );
  server.on("upgrade", (req, socket, head) => passthrough.ws(req, socket, head));
  server.on("clientError", answerClientError);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path === PURGE_PATH && req.method === "POST") await purge(req, res);
    else if (path.startsWith("/.edge/") || isInternal(req.url ?? "/")) {
      throw new ChatError("not_found", `${path} is not served at the edge; reach it from inside`);
    } else if (isCacheCandidate(req)) await cache.handle(req, res);
    else passthrough.web(req, res);
  }

  /** `POST /.edge/purge { urls?: string[], tags?: string[] }` with `Authorization: Bearer EDGE_ADMIN_TOKEN`. */
  async function purge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorized(req.headers.authorization, config.EDGE_ADMIN_TOKEN)) {
      throw new ChatError("unauthorized", "purging needs Authorization: Bearer <EDGE_ADMIN_TOKEN>");
    }
    const body = await readJson(req);
    const urls = Array.isArray(body.urls) ? body.urls.map(String) : [];
    const tags = Array.isArray(body.tags) ? body.tags.map(String) : [];
    if (urls.length + tags.length === 0)
      throw new ChatError("bad_request", "give urls and/or tags to purge");
    const purged = [
      ...urls.map((url) => store.purgeUrl(url)),
      ...tags.map((tag) => store.purgeTag(tag)),
    ].reduce((a, b) => a + b, 0);
    json(res, 200, { purged });
  }

  function fail(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    const chatError =
      error instanceof ChatError
        ? error
        : new ChatError("unavailable", "the origin could not answer; retry", { retryAfter: 1 });
    if (!(error instanceof ChatError)) log.warn({ err: error }, "edge request failed");
    if (res.headersSent) res.destroy();
    else
      json(
        res,
        chatError.code === "unavailable" ? 502 : chatError.status,
        chatError.toBody(req.url),
      );
  }

  /** `GET /metrics` (Prometheus) and `GET /healthz` (probes), on ADMIN_PORT. */
  const admin: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET")
      json(res, 405, { error: { code: "bad_request", message: "GET only" } });
    else if (path === "/healthz") json(res, 200, { status: "ok", edge: config.EDGE_ID });
    else if (path === "/metrics")
      answerMetrics(res, metrics.registry.contentType, () => metrics.registry.metrics());
    else json(res, 404, { error: { code: "not_found", message: "GET /metrics or /healthz" } });
  });

  return {
    server,
    metrics,
    /** Opens the public and the admin port: the ports they got (useful when asked for 0). */
    async listen(): Promise<{ port: number; adminPort: number }> {
      const port = await listenOn(server, config.PORT, config.HOST);
      return { port, adminPort: await listenOn(admin, config.ADMIN_PORT, config.HOST) };
    },
    async close(): Promise<void> {
      passthrough.close();
      admin.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}

/** Judged as the origin will route it: dot segments resolved, percent-escapes decoded. */
function isInternal(url: string): boolean {
  let path = new URL(url, "http://edge.invalid").pathname;
  try {
    path = decodeURIComponent(path);
  } catch {
    // a malformed escape: the origin cannot route it to anything either
  }
  return INTERNAL_PATHS.has(path) || path.startsWith(INTERNAL_PREFIX);
}

function authorized(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header?.startsWith("Bearer ")) return false;
  const given = Buffer.from(header.slice("Bearer ".length));
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_PURGE_BODY) throw new ChatError("payload_too_large", "purge body too large");
    chunks.push(chunk as Buffer);
  }
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // answered below, like any other body that is not a JSON object
  }
  throw new ChatError("invalid_json", "the purge body must be a JSON object");
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
