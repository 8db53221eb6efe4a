import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  answerRaw,
  ChatError,
  closeUpstreamAnsweredEarly,
  keepAliveAgent,
  type Logger,
} from "@chat/shared";
import { createProxyServer } from "http-proxy-3";
import type { EdgeMetrics } from "./metrics.ts";

/**
 * Live traffic — API calls, SSE, long polls, WebSocket upgrades — streamed to the origin
 * and back, never buffered or cached. Keep-alive for HTTP (the proxy's default would send
 * `Connection: close` upstream every time); upgrades get their own connections.
 */
export function createPassthrough(originUrl: string, metrics: EdgeMetrics, log: Logger) {
  const proxy = createProxyServer({
    target: originUrl,
    xfwd: true,
    agent: keepAliveAgent({ maxSockets: 1024 }),
  });
  proxy.on("proxyReq", (proxyReq, req, res) => closeUpstreamAnsweredEarly(req, res, proxyReq));
  proxy.on("proxyRes", (proxyRes, _req, res) => {
    proxyRes.headers["cache-status"] = "chat-edge; fwd=bypass";
    proxyRes.headers["x-cache"] = "BYPASS";
    proxyRes.headers.age = "0";
    // A stream cut upstream (its node died) must be cut here too, so the client reconnects.
    proxyRes.once("close", () => {
      if (!proxyRes.complete) res.destroy();
    });
  });
  proxy.on("error", (error, req, target) => {
    log.warn({ err: error }, "origin unreachable for a pass-through request");
    const unreachable = new ChatError("unavailable", "the origin is unreachable; retry", {
      retryAfter: 1,
    });
    if ("writeHead" in target) {
      const response = target as ServerResponse;
      if (!response.headersSent) {
        response.writeHead(502, { "content-type": "application/json", "retry-after": "1" });
        response.end(JSON.stringify(unreachable.toBody(req.url)));
      } else response.destroy();
    } else {
      // An upgrade not yet answered gets the same 502; one already relaying is cut.
      const socket = target as Socket;
      if (socket.bytesWritten === 0) answerRaw(socket, unreachable, 502);
      else socket.destroy();
    }
  });
  return {
    web(req: IncomingMessage, res: ServerResponse): void {
      metrics.passthrough.inc();
      proxy.web(req, res);
    },
    ws(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      metrics.passthrough.inc();
      socket.on("error", () => socket.destroy()); // a client gone mid-handshake must not crash the edge
      proxy.ws(req, socket, head);
    },
    close: () => proxy.close(),
  };
}
