import { type Agent, type IncomingHttpHeaders, request } from "node:http";
import { HOP_BY_HOP_HEADERS } from "@chat/shared";

export interface OriginResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Headers a client could use to steer the origin without being part of the cache key. */
const UNKEYED = [
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-for",
  "forwarded",
  "x-host",
  "x-original-url",
  "x-rewrite-url",
  "x-http-method-override",
];
/** The edge answers conditionals and ranges itself from full, validated copies. */
const CLIENT_CONDITIONALS = [
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
];
/**
 * What the edge asks the origin for a cacheable request: the client's headers without the
 * unkeyed ones (no X-Forwarded-Host poisoning), the origin's own Host, and identity
 * encoding — the edge compresses each stored variant itself, once.
 */
export function originRequestHeaders(
  clientHeaders: IncomingHttpHeaders,
  originHost: string,
  clientAddress: string,
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(clientHeaders)) {
    if (value === undefined || UNKEYED.includes(name) || HOP_BY_HOP_HEADERS.includes(name))
      continue;
    if (CLIENT_CONDITIONALS.includes(name)) continue;
    headers[name] = value;
  }
  headers.host = originHost;
  headers["accept-encoding"] = "identity";
  headers["x-forwarded-for"] = clientAddress;
  return headers;
}

interface FetchOptions {
  origin: URL;
  method: "GET" | "HEAD";
  path: string;
  headers: Record<string, string | string[]>;
  agent: Agent;
  timeoutMs: number;
  maxBytes: number;
}

/** Kept-alive connections found closed, one after another, before the fetch gives up. */
const MAX_CLOSED_CONNECTIONS = 4;

/**
 * One buffered request to the origin, bounded by a header timeout and a body size. A
 * kept-alive connection the origin closed as the request went out answers nothing: the
 * request never reached the origin, so it is sent again (GET and HEAD are safe to repeat).
 */
export async function fetchFromOrigin(options: FetchOptions): Promise<OriginResponse> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetchOnce(options);
    } catch (error) {
      if (!(error instanceof ClosedConnectionError) || attempt >= MAX_CLOSED_CONNECTIONS)
        throw error;
    }
  }
}

function fetchOnce(options: FetchOptions): Promise<OriginResponse> {
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = request(
      {
        host: options.origin.hostname,
        port: options.origin.port,
        method: options.method,
        path: options.path,
        headers: options.headers,
        agent: options.agent,
        timeout: options.timeoutMs,
      },
      (res) => {
        responded = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes)
            res.destroy(new OriginError("response too large to cache", "too_large"));
          else chunks.push(chunk);
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 502,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new OriginError("origin timed out", "timeout")));
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error instanceof OriginError) reject(error);
      else if (req.reusedSocket && !responded && CLOSED_CODES.has(error.code ?? ""))
        reject(new ClosedConnectionError(error.message));
      else reject(new OriginError(error.message, "unreachable"));
    });
    req.end();
  });
}

/** How a reused connection that the origin had closed fails: reset, or hung up. */
const CLOSED_CODES = new Set(["ECONNRESET", "EPIPE"]);

export class OriginError extends Error {
  readonly kind: "timeout" | "unreachable" | "too_large";

  constructor(message: string, kind: OriginError["kind"]) {
    super(message);
    this.name = "OriginError";
    this.kind = kind;
  }
}

/** The origin closed a kept-alive connection as the request went out: nothing reached it. */
class ClosedConnectionError extends OriginError {
  constructor(message: string) {
    super(message, "unreachable");
  }
}

/** The origin's headers an edge may store and send on: no hop-by-hop, no framing. */
export function storableHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP_HEADERS.includes(name)) continue;
    // Framing is the edge's; a cookie set for one client must never be replayed to others.
    if (name === "content-length" || name === "content-encoding" || name === "set-cookie") continue;
    kept[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return kept;
}
