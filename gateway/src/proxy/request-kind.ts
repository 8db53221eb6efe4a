import type { IncomingMessage } from "node:http";

export type RequestKind = "request" | "sse" | "longpoll";

/** Long-lived requests are balanced by open connections and get long timeouts. */
export function requestKind(req: IncomingMessage): RequestKind {
  if (req.headers.accept?.includes("text/event-stream")) return "sse";
  const url = req.url ?? "/";
  if (
    req.method === "GET" &&
    (/[?&]wait=[1-9]/.test(url) ||
      url.startsWith("/socket/longpoll") ||
      url.startsWith("/chat/poll"))
  ) {
    return "longpoll";
  }
  if (url.startsWith("/chat/stream") || /^\/api\/rooms\/[^/]+\/stream/.test(url)) return "sse";
  return "request";
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Whether a request that may have reached a node can be sent again: safe methods, and sends
 * that carry a client message id (the node stores them once whatever happens).
 */
export function isIdempotent(req: IncomingMessage, body: Buffer | null): boolean {
  if (SAFE_METHODS.has(req.method ?? "")) return true;
  if (req.headers["idempotency-key"]) return true;
  if (!body || body.length === 0) return false;
  try {
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    const id = (parsed as { client_id?: unknown } | null)?.client_id;
    return typeof id === "string" && id.length > 0;
  } catch {
    return false; // not JSON: nothing says it is safe to repeat
  }
}
