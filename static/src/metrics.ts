import { createRegistry } from "@chat/shared";
import { Counter, Gauge } from "prom-client";

/** The edge's metrics, prefix `edge_`. */
export function createEdgeMetrics(edgeId: string) {
  const registry = createRegistry("edge_", { edge: edgeId });
  const registers = [registry];
  const counter = (name: string, help: string) => new Counter({ name, help, registers });
  return {
    registry,
    hits: counter("edge_cache_hits_total", "Responses served fresh from the cache"),
    misses: counter("edge_cache_misses_total", "Cacheable requests fetched from the origin"),
    staleServed: counter(
      "edge_cache_stale_served_total",
      "Stale responses served (stale-while-revalidate, stale-if-error)",
    ),
    revalidations: new Counter({
      name: "edge_cache_revalidations_total",
      help: "Conditional requests to the origin, by outcome",
      labelNames: ["outcome"] as const,
      registers,
    }),
    coalesced: counter(
      "edge_cache_coalesced_total",
      "Requests that waited on another request's origin fetch",
    ),
    bytesFromCache: counter(
      "edge_bytes_served_from_cache_total",
      "Body bytes sent to clients from the cache",
    ),
    bytesFromOrigin: counter(
      "edge_bytes_fetched_from_origin_total",
      "Body bytes fetched from the origin for cacheable requests",
    ),
    evictions: counter(
      "edge_cache_evictions_total",
      "Objects evicted to stay within CACHE_MAX_BYTES",
    ),
    purged: counter("edge_cache_purged_total", "Objects removed by purges"),
    passthrough: counter(
      "edge_passthrough_requests_total",
      "Requests passed to the origin uncached (API, SSE, polls, WebSockets)",
    ),
    objects: new Gauge({ name: "edge_cache_objects", help: "Objects held", registers }),
    bytes: new Gauge({ name: "edge_cache_bytes", help: "Bytes held", registers }),
  };
}

export type EdgeMetrics = ReturnType<typeof createEdgeMetrics>;
