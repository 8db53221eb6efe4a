import { createRegistry, LATENCY_MS_BUCKETS } from "@chat/shared";
import { Counter, Gauge, Histogram } from "prom-client";

/**
 * Every metric a node exports, on its own registry under the `chat_` prefix. Labels are
 * bounded sets (route patterns, transports, reasons): never room names or user ids.
 */
export function createNodeMetrics(nodeId: string) {
  const registry = createRegistry("chat_", { node: nodeId });
  const registers = [registry];
  return {
    registry,
    httpRequests: new Counter({
      name: "chat_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status",
      labelNames: ["method", "route", "status"] as const,
      registers,
    }),
    openStreams: new Gauge({
      name: "chat_open_streams",
      help: "Open long-lived client connections, by transport",
      labelNames: ["transport"] as const,
      registers,
    }),
    messagesStored: new Counter({
      name: "chat_messages_stored_total",
      help: "Messages committed to Postgres by this node",
      registers,
    }),
    duplicateSends: new Counter({
      name: "chat_duplicate_sends_total",
      help: "Sends whose client id was already stored; the original was returned",
      registers,
    }),
    messagesDelivered: new Counter({
      name: "chat_messages_delivered_total",
      help: "Messages handed to local room feeds in seq order, by how they arrived",
      labelNames: ["source"] as const,
      registers,
    }),
    deliveryLatency: new Histogram({
      name: "chat_delivery_latency_ms",
      help: "Milliseconds from commit to delivery to this node's local subscribers",
      buckets: LATENCY_MS_BUCKETS,
      registers,
    }),
    gapFills: new Counter({
      name: "chat_gap_fills_total",
      help: "Reads from Postgres that filled a gap in a room's live stream",
      registers,
    }),
    redisErrors: new Counter({
      name: "chat_redis_errors_total",
      help: "Redis errors, by operation",
      labelNames: ["op"] as const,
      registers,
    }),
    redisUp: new Gauge({
      name: "chat_redis_up",
      help: "1 while the node's Redis subscriber is connected, 0 while fan-out runs on Postgres",
      registers,
    }),
    postgresErrors: new Counter({
      name: "chat_postgres_errors_total",
      help: "Postgres errors, by pool",
      labelNames: ["pool"] as const,
      registers,
    }),
    pgPoolTimeouts: new Counter({
      name: "chat_pg_pool_timeouts_total",
      help: "Queries that gave up after waiting PG_CONNECT_TIMEOUT_MS for a pooled connection, by pool",
      labelNames: ["pool"] as const,
      registers,
    }),
    pgUp: new Gauge({
      name: "chat_pg_up",
      help: "1 while the configured Postgres server (pool primary or replica) answers",
      labelNames: ["pool"] as const,
      registers,
    }),
    pgWriter: new Gauge({
      name: "chat_pg_writer",
      help: "1 for the configured server that takes writes now (the replica once promoted)",
      labelNames: ["pool"] as const,
      registers,
    }),
    pgWriterSwitches: new Counter({
      name: "chat_pg_writer_switches_total",
      help: "Times writes moved to another server (a promoted replica)",
      registers,
    }),
    pgPoolConnections: new Gauge({
      name: "chat_pg_pool_connections",
      help: "Postgres pool clients, by pool and state (total, idle, waiting for a client)",
      labelNames: ["pool", "state"] as const,
      registers,
    }),
    pgPoolMax: new Gauge({
      name: "chat_pg_pool_max",
      help: "Most clients a Postgres pool opens (PG_POOL_MAX)",
      registers,
    }),
    pgReplicaLagBytes: new Gauge({
      name: "chat_pg_replica_lag_bytes",
      help: "WAL bytes the replica has not replayed yet, seen from this node",
      registers,
    }),
    pgReplicaLagSeconds: new Gauge({
      name: "chat_pg_replica_lag_seconds",
      help: "Seconds since the replica replayed a transaction, when it is behind (else 0)",
      registers,
    }),
    replicaFallbacks: new Counter({
      name: "chat_replica_fallbacks_total",
      help: "History reads sent to the primary instead of the replica, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    activeFeeds: new Gauge({
      name: "chat_room_feeds",
      help: "Rooms this node currently follows for local subscribers",
      registers,
    }),
    rateLimited: new Counter({
      name: "chat_rate_limited_total",
      help: "Sends refused by the per-user rate limit",
      registers,
    }),
    socketErrors: new Counter({
      name: "chat_socket_errors_total",
      help: "Frames answered with a protocol error, by protocol and reason",
      labelNames: ["protocol", "reason"] as const,
      registers,
    }),
    socketsClosed: new Counter({
      name: "chat_sockets_closed_by_server_total",
      help: "Sockets the server closed, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    presenceReaped: new Counter({
      name: "chat_presence_reaped_total",
      help: "Presence entries this node removed because their owner stopped heartbeating",
      registers,
    }),
    presenceRetracked: new Counter({
      name: "chat_presence_retracked_total",
      help: "Times this node found itself presumed dead (its alive key gone) and re-listed its people",
      registers,
    }),
    draining: new Gauge({
      name: "chat_draining",
      help: "1 once the node has started draining",
      registers,
    }),
  };
}

export type NodeMetrics = ReturnType<typeof createNodeMetrics>;
