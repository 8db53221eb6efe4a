import { createRegistry, LATENCY_MS_BUCKETS } from "@chat/shared";
import { Counter, Gauge, Histogram } from "prom-client";

export const RETRY_REASONS = [
  "connect",
  "draining",
  "overloaded",
  "reset",
  "timeout",
  "upgrade-connect",
] as const;

/** The gateway's metrics (prefix `gateway_`); upstream labels are node addresses, a small set. */
export function createGatewayMetrics(gatewayId: string) {
  const registry = createRegistry("gateway_", { gateway: gatewayId });
  const registers = [registry];
  const metrics = {
    registry,
    requests: new Counter({
      name: "gateway_requests_total",
      help: "Requests answered, by status and upstream (none when no upstream answered)",
      labelNames: ["status", "upstream"] as const,
      registers,
    }),
    upstreamUp: new Gauge({
      name: "gateway_upstream_up",
      help: "1 while an upstream takes new work, 0 while it is draining, ejected or down",
      labelNames: ["upstream"] as const,
      registers,
    }),
    clientConnections: new Gauge({
      name: "gateway_client_connections",
      help: "Client connections admitted and open (MAX_CONNECTIONS bounds them per worker)",
      registers,
    }),
    openWebSockets: new Gauge({
      name: "gateway_open_websockets",
      help: "Proxied WebSockets open, by upstream",
      labelNames: ["upstream"] as const,
      registers,
    }),
    openStreams: new Gauge({
      name: "gateway_open_streams",
      help: "Proxied SSE streams and long polls open, by upstream",
      labelNames: ["upstream"] as const,
      registers,
    }),
    retries: new Counter({
      name: "gateway_retries_total",
      help: "Requests and upgrades retried on another upstream, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    retriesDenied: new Counter({
      name: "gateway_retries_denied_total",
      help: "Retries refused by the retry budget",
      registers,
    }),
    ejections: new Counter({
      name: "gateway_ejections_total",
      help: "Passive ejections after connect errors or timeouts, by upstream",
      labelNames: ["upstream"] as const,
      registers,
    }),
    refusedConnections: new Counter({
      name: "gateway_refused_connections_total",
      help: "Client connections refused, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    overhead: new Histogram({
      name: "gateway_proxy_overhead_ms",
      help: "Milliseconds the gateway itself adds to a request (choosing, buffering, relaying headers)",
      buckets: [0.1, 0.25, 0.5, ...LATENCY_MS_BUCKETS],
      registers,
    }),
  };
  // Every retry reason exported from the start, so dashboards show 0 rather than no data.
  for (const reason of RETRY_REASONS) metrics.retries.inc({ reason }, 0);
  return metrics;
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
