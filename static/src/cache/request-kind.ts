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

export type Encoding = "br" | "gzip" | "identity";

/** Accept-Encoding folded to the one encoding the edge will send, so it keys a few variants, not thousands. */
export function preferredEncoding(acceptEncoding: string | undefined): Encoding {
  const accepted = new Map<string, number>();
  for (const part of (acceptEncoding ?? "").split(",")) {
    const [name = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    accepted.set(name, q ? Number(q.slice(2)) : 1);
  }
  const allows = (name: string) => (accepted.get(name) ?? accepted.get("*") ?? 0) > 0;
  if (allows("br")) return "br";
  if (allows("gzip")) return "gzip";
  return "identity";
}
