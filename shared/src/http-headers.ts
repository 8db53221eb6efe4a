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
