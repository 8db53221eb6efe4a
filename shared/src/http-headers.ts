import fresh from "fresh";

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message, so
 * the gateway and the edge drop them when they pass a message on.
 */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

export type Encoding = "br" | "gzip" | "identity";

/** The suffix of each precompressed copy the web client's build writes beside a file. */
export const PRECOMPRESSED_SUFFIX: Readonly<Record<Exclude<Encoding, "identity">, string>> = {
  br: ".br",
  gzip: ".gz",
};

/**
 * Accept-Encoding folded to the one encoding to send: the edge keys a few variants by it, not
 * thousands, and a node picks its precompressed web client by it.
 */
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

/**
 * Whether a conditional GET can be answered 304 by a representation with these validators:
 * If-None-Match by weak comparison against any tag of its list or `*`, else
 * If-Modified-Since (RFC 9110 §13.1), through `fresh`, Express's implementation.
 */
export function isNotModified(
  request: { "if-none-match"?: string; "if-modified-since"?: string; "cache-control"?: string },
  validators: { etag?: string; "last-modified"?: string },
): boolean {
  return fresh(request, validators);
}

/**
 * The ETag of bytes a cache encoded itself: weak, since a strong tag names one sequence of
 * bytes and the origin's names the unencoded ones (RFC 9110 §8.8.1; nginx's gzip does this).
 */
export function weakEtag(etag: string): string {
  return etag.startsWith("W/") ? etag : `W/${etag}`;
}
