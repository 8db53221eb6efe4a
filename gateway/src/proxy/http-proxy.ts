import { randomUUID } from "node:crypto";
import type {
  ClientRequest,
  IncomingHttpHeaders,
  IncomingMessage,
  ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import {
  ChatError,
  closeUpstreamAnsweredEarly,
  type ErrorCode,
  HOP_BY_HOP_HEADERS,
  keepAliveAgent,
  type Logger,
} from "@chat/shared";
import { createProxyServer } from "http-proxy-3";
import type { GatewayConfig } from "../config.ts";
import type { GatewayMetrics } from "../metrics.ts";
import type { Upstream, UpstreamPool } from "../upstreams/pool.ts";
import { isIdempotent, type RequestKind, requestKind } from "./request-kind.ts";
import { RetryBudget } from "./retry-budget.ts";

/** A node's whole answer, held back while another node is tried instead. */
interface HeldAnswer {
  upstream: string;
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

type Attempt =
  | { outcome: "done" }
  | {
      outcome: "retry";
      reason: "connect" | "draining" | "overloaded" | "reset" | "timeout";
      safe: boolean;
      code: ErrorCode;
      /** What goes back to the client should no other node take the request. */
      held?: HeldAnswer;
    };

/** Marks a node's 503 given before it did any work because it is overloaded. */
const OVERLOADED_HEADER = "x-chat-overloaded";

/**
 * HTTP through http-proxy-3, with the defaults fixed for this job: keep-alive agents (its
 * default sends `Connection: close` upstream every time), one per source address; responses
 * handled by us (selfHandleResponse), so a node's "draining" 503 can be retried elsewhere
 * before anything reaches the client; retries on another node for requests that did not
 * reach one, and for idempotent ones that may have, within the retry budget.
 */
export function createHttpProxy(deps: {
  pool: UpstreamPool;
  config: GatewayConfig;
  metrics: GatewayMetrics;
  log: Logger;
}) {
  const { pool, config, metrics, log } = deps;
  const proxy = createProxyServer({ xfwd: true, selfHandleResponse: true });
  const agents = (config.SOURCE_ADDRESSES.length ? config.SOURCE_ADDRESSES : [undefined]).map(
    (localAddress) =>
      // noDelay: a proxied request is written in pieces; Nagle would hold the last one back.
      keepAliveAgent({
        noDelay: true,
        maxSockets: 4096,
        ...(localAddress ? { localAddress } : {}),
      }),
  );
  let nextAgent = 0;
  const budget = new RetryBudget(config.RETRY_BUDGET_RATIO, config.RETRY_BUDGET_MIN_PER_S);
  // http-proxy's events are per server; these maps route them to the request's attempt.
  const onResponse = new WeakMap<IncomingMessage, (upstreamRes: IncomingMessage) => void>();
  const onRequest = new WeakMap<IncomingMessage, (proxyReq: ClientRequest) => void>();
  proxy.on("proxyRes", (upstreamRes, req) => onResponse.get(req)?.(upstreamRes));
  proxy.on("proxyReq", (proxyReq, req) => onRequest.get(req)?.(proxyReq));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const requestId = String(req.headers["x-request-id"] ?? randomUUID());
    res.setHeader("X-Request-Id", requestId);
    budget.recordRequest();
    const kind = requestKind(req);
    const body = await bufferBody(req, config.MAX_RETRY_BODY_BYTES);
    const idempotent = isIdempotent(req, body);
    const tried = new Set<Upstream>();
    let last: Extract<Attempt, { outcome: "retry" }> | undefined;
    for (let attempt = 0; attempt < config.MAX_ATTEMPTS; attempt++) {
      const upstream = pool.pick(kind === "request" ? "request" : "stream", tried);
      if (!upstream) break;
      if (attempt > 0) {
        if (!budget.tryRetry()) {
          metrics.retriesDenied.inc();
          break;
        }
        metrics.retries.inc({ reason: last?.reason ?? "connect" });
      }
      tried.add(upstream);
      const result = await attemptOn(upstream, req, res, { kind, body, requestId, started });
      if (result.outcome === "done") return;
      last = result;
      const canRepeat = body !== null && (result.safe || idempotent);
      if (!canRepeat || res.headersSent) break;
    }
    if (res.headersSent) res.destroy();
    else if (last?.held) relay(res, last.held);
    else
      fail(
        req,
        res,
        last?.code ?? "unavailable",
        last ? "no node could answer; retry" : "no healthy node to route to; retry",
      );
  }

  function attemptOn(
    upstream: Upstream,
    req: IncomingMessage,
    res: ServerResponse,
    request: { kind: RequestKind; body: Buffer | null; requestId: string; started: number },
  ): Promise<Attempt> {
    return new Promise((resolve) => {
      let reached = false;
      let timedOut = false;
      let settled = false;
      const settle = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        onResponse.delete(req);
        onRequest.delete(req);
        resolve(attempt);
      };
      const streaming = request.kind !== "request";
      upstream.inflight++;
      if (streaming) metrics.openStreams.inc({ upstream: upstream.address });
      const release = () => {
        upstream.inflight--;
        if (streaming) metrics.openStreams.dec({ upstream: upstream.address });
      };
      let sentAt = 0;
      onResponse.set(req, (upstreamRes) => {
        pool.succeeded(upstream);
        if (upstreamRes.statusCode === 503 && upstreamRes.headers["x-chat-draining"]) {
          upstreamRes.resume(); // the node refused before doing anything: any node will do
          release();
          settle({ outcome: "retry", reason: "draining", safe: true, code: "unavailable" });
          return;
        }
        if (upstreamRes.statusCode === 503 && upstreamRes.headers[OVERLOADED_HEADER]) {
          // Shed before it touched storage: another node may have room; if none takes the
          // request, the node's own answer (with its Retry-After) goes back.
          void hold(upstream, upstreamRes).then((held) => {
            release();
            settle({
              outcome: "retry",
              reason: "overloaded",
              safe: true,
              code: "overloaded",
              held,
            });
          });
          return;
        }
        const relayStart = performance.now();
        res.writeHead(upstreamRes.statusCode ?? 502, withoutHopByHop(upstreamRes.headers));
        const overhead = sentAt - request.started + (performance.now() - relayStart);
        metrics.overhead.observe(overhead);
        metrics.requests.inc({ status: upstreamRes.statusCode ?? 0, upstream: upstream.address });
        upstreamRes.pipe(res);
        // An upstream that dies mid-response (a killed node under an SSE stream) must cut the
        // client off too, or the client would wait forever instead of reconnecting.
        upstreamRes.once("close", () => {
          if (!upstreamRes.complete) res.destroy();
        });
        res.once("close", () => {
          release();
          if (!upstreamRes.complete) upstreamRes.destroy();
        });
        settle({ outcome: "done" });
      });
      const timeoutMs =
        request.kind === "longpoll"
          ? config.LONG_POLL_TIMEOUT_MS
          : streaming
            ? config.STREAM_IDLE_TIMEOUT_MS
            : config.RESPONSE_TIMEOUT_MS;
      onRequest.set(req, (proxyReq) => {
        sentAt = performance.now();
        proxyReq.setHeader("x-request-id", request.requestId);
        proxyReq.setHeader("forwarded", forwarded(req));
        // Only a new connection can fail to connect; a reused keep-alive socket has reached the
        // node. The socket may already be assigned when this runs, so look before listening.
        const watchConnect = (socket: Socket) => {
          if (!socket.connecting) {
            reached = true;
            return;
          }
          const timer = setTimeout(
            () => proxyReq.destroy(new Error("connect timeout")),
            config.CONNECT_TIMEOUT_MS,
          );
          socket.once("connect", () => {
            reached = true;
            clearTimeout(timer);
          });
          socket.once("close", () => clearTimeout(timer));
        };
        if (proxyReq.socket) watchConnect(proxyReq.socket);
        else proxyReq.once("socket", watchConnect);
        closeUpstreamAnsweredEarly(req, res, proxyReq);
        proxyReq.setTimeout(timeoutMs, () => {
          timedOut = true;
          proxyReq.destroy(new Error("upstream timed out"));
        });
      });
      proxy.web(
        req,
        res,
        {
          target: { host: upstream.host, port: upstream.port },
          agent: agents[nextAgent++ % agents.length],
          // A buffered body is replayed from memory on every attempt; null streams the request,
          // and so does an empty one (an ended request pipes as an immediate end).
          ...(request.body?.length ? { buffer: Readable.from([request.body]) } : {}),
        },
        (error) => {
          if (settled) {
            res.destroy(); // the response had started: the client sees a cut, not a lie
            return;
          }
          release();
          if (!reached) {
            pool.eject(upstream);
            metrics.ejections.inc({ upstream: upstream.address });
            log.warn({ upstream: upstream.address, err: error }, "upstream unreachable; ejected");
            settle({ outcome: "retry", reason: "connect", safe: true, code: "bad_gateway" });
          } else if (timedOut) {
            pool.eject(upstream);
            metrics.ejections.inc({ upstream: upstream.address });
            settle({ outcome: "retry", reason: "timeout", safe: false, code: "gateway_timeout" });
          } else settle({ outcome: "retry", reason: "reset", safe: false, code: "bad_gateway" });
        },
      );
    });
  }

  function relay(res: ServerResponse, held: HeldAnswer): void {
    metrics.requests.inc({ status: held.status, upstream: held.upstream });
    const { [OVERLOADED_HEADER]: _marker, ...headers } = withoutHopByHop(held.headers);
    res.writeHead(held.status, headers).end(held.body);
  }

  function fail(req: IncomingMessage, res: ServerResponse, code: ErrorCode, message: string): void {
    const error = new ChatError(code, message, { retryAfter: 1, retryable: true });
    metrics.requests.inc({ status: error.status, upstream: "none" });
    res.writeHead(error.status, { "content-type": "application/json", "retry-after": "1" });
    res.end(JSON.stringify(error.toBody(req.url)));
  }

  return { handle, close: () => proxy.close() };
}

const EMPTY = Buffer.alloc(0);

/** The request body, when small enough to be sent again on a retry; null when it must stream. */
async function bufferBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const length = Number(
    req.headers["content-length"] ?? (req.headers["transfer-encoding"] ? Number.NaN : 0),
  );
  if (!(length <= limit)) return null;
  if (length === 0) return EMPTY; // GET and HEAD: nothing to read, nothing to wait for
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Reads a small answer whole (an error body); a failing upstream leaves what arrived. */
async function hold(upstream: Upstream, res: IncomingMessage): Promise<HeldAnswer> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch {
    // Cut mid-body: the status and headers are what matter, and they arrived.
  }
  const body = Buffer.concat(chunks);
  const headers = { ...res.headers, "content-length": String(body.length) };
  return { upstream: upstream.address, status: res.statusCode ?? 503, headers, body };
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers))
    if (!HOP_BY_HOP_HEADERS.includes(name)) kept[name] = value;
  return kept;
}

/** RFC 7239 `Forwarded`, beside the X-Forwarded-* headers http-proxy adds. */
function forwarded(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? "unknown";
  const node = address.includes(":") ? `"[${address}]"` : address;
  return `for=${node};proto=http;host="${req.headers.host ?? ""}"`;
}
