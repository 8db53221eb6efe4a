import type { IncomingMessage } from "node:http";

/**
 * Live traffic never touches the cache: anything but GET/HEAD, WebSocket upgrades, SSE,
 * and the API, socket and polling routes. Everything else is a cache candidate, and the
 * origin's Cache-Control decides whether it is stored.
 */
const LIVE_PREFIXES = [
  "/api/",
  "/socket/",
  "/cable",
  "/chat/poll",
  "/chat/stream",
  "/chat/socket",
  "/chat/speak",
];

export function isCacheCandidate(req: IncomingMessage): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  if (req.headers.upgrade) return false;
  if (req.headers.accept?.includes("text/event-stream")) return false;
  const path = req.url ?? "/";
  return !LIVE_PREFIXES.some((prefix) => path.startsWith(prefix));
}
