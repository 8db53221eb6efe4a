import cluster from "node:cluster";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  answerClientError,
  answerRaw,
  ChatError,
  discardBodyLeftAfterAnswer,
  type Logger,
  listenOn,
} from "@chat/shared";
import { createAdmission } from "./admission/admission.ts";
import type { GatewayConfig } from "./config.ts";
import { startDiscovery } from "./discovery/discovery.ts";
import { startHealthChecks } from "./health/health-checks.ts";
import { createGatewayMetrics } from "./metrics.ts";
import { createHttpProxy } from "./proxy/http-proxy.ts";
import { createWebSocketProxy } from "./proxy/websocket-proxy.ts";
import { UpstreamPool } from "./upstreams/pool.ts";
import { followPrimaryUpstreams } from "./upstreams/shared-view.ts";
import { SourcePorts } from "./upstreams/source-ports.ts";

const STATUS_PATH = "/.gateway/status";
const HEALTH_PATH = "/.gateway/healthz";
const METRICS_PATH = "/.gateway/metrics";

/**
 * One gateway worker: balancing and proxying for HTTP and WebSockets on one port, with
 * discovery and health checks of its own, or (`upstreamsFrom: "primary"`) those its cluster
 * primary shares. Its own endpoints live under /.gateway/ so they never shadow a node's paths.
 */
export function createGateway(
  config: GatewayConfig,
  log: Logger,
  options: { upstreamsFrom: "own-checks" | "primary" } = { upstreamsFrom: "own-checks" },
) {
  const metrics = createGatewayMetrics(config.GATEWAY_ID);
  const pool = new UpstreamPool({
    slowStartMs: config.SLOW_START_MS,
    ejectBaseMs: config.EJECT_BASE_MS,
    ejectMaxMs: config.EJECT_MAX_MS,
  });
  const http = createHttpProxy({ pool, config, metrics, log });
  // A worker that replaces a dead one takes over its ports (cluster ids count up from 1).
  const sources = new SourcePorts(config.SOURCE_ADDRESSES, {
    index: (cluster.worker?.id ?? 1) - 1,
    count: config.GATEWAY_WORKERS,
  });
  const websockets = createWebSocketProxy({ pool, config, metrics, log, sources });
  const stops: Array<() => void> = [];

  const server: Server = createServer(
    {
      maxHeaderSize: config.MAX_HEADER_BYTES,
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      requestTimeout: 0,
      // Node checks header timeouts on this interval (30 s by default): too late for slowloris.
      connectionsCheckingInterval: Math.min(1000, config.HEADERS_TIMEOUT_MS),
    },
    (req, res) => void route(req, res),
  );
  const admission = createAdmission(config, metrics);
  server.on("connection", admission.admit);
  server.on("upgrade", (req, socket, head) => {
    const refusal = admission.refusal(req.socket);
    if (refusal) answerRaw(socket, refusal);
    else void websockets.handle(req, socket, head);
  });
  server.on("clientError", answerClientError);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on("error", () => res.destroy());
    res.on("error", () => res.destroy());
    discardBodyLeftAfterAnswer(req, res, config);
    const refusal = admission.refusal(req.socket);
    if (refusal) {
      res.shouldKeepAlive = false;
      res.writeHead(refusal.status, {
        "content-type": "application/json",
        "retry-after": String(refusal.retryAfter),
      });
      res.end(JSON.stringify(refusal.toBody(req.url)));
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (path === HEALTH_PATH) return json(res, 200, { status: "ok" });
      if (path === STATUS_PATH) return json(res, 200, status());
      if (path === METRICS_PATH) {
        res.writeHead(200, { "content-type": metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
        return;
      }
      await http.handle(req, res);
    } catch (error) {
      log.warn({ err: error }, "request failed in the gateway");
      if (!res.headersSent)
        json(
          res,
          502,
          new ChatError("bad_gateway", "the gateway could not relay the request").toBody(req.url),
        );
      else res.destroy();
    }
  }

  function status() {
    const now = Date.now();
    return {
      gateway: config.GATEWAY_ID,
      pid: process.pid,
      upstreams: pool.all.map((u) => ({
        address: u.address,
        state: u.state(now),
        checked: u.checked,
        inflight: u.inflight,
        streams: u.streams,
        ejections: u.ejections,
        slowStart: Math.min(1, config.SLOW_START_MS ? (now - u.addedAt) / config.SLOW_START_MS : 1),
      })),
    };
  }

  return {
    server,
    metrics,
    pool,
    listen(): Promise<number> {
      if (options.upstreamsFrom === "primary") stops.push(followPrimaryUpstreams(pool));
      else
        stops.push(
          startDiscovery(config, log, (addresses) => pool.update(addresses)),
          startHealthChecks(pool, config, log),
        );
      stops.push(reportUpstreams(pool, metrics));
      return listenOn(server, config.PORT, config.HOST, config.LISTEN_BACKLOG);
    },
    /** Stops accepting, lets in-flight requests finish (bounded by the caller), then closes. */
    async close(): Promise<void> {
      for (const stop of stops) stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      http.close();
      websockets.close();
      admission.close();
    },
  };
}

function reportUpstreams(
  pool: UpstreamPool,
  metrics: ReturnType<typeof createGatewayMetrics>,
): () => void {
  const timer = setInterval(() => {
    metrics.upstreamUp.reset();
    for (const upstream of pool.all) {
      metrics.upstreamUp.set(
        { upstream: upstream.address },
        upstream.state() === "healthy" ? 1 : 0,
      );
      metrics.ejections.inc({ upstream: upstream.address }, 0); // 0 rather than no data
    }
  }, 1000);
  return () => clearInterval(timer);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
