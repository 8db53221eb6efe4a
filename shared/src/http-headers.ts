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
