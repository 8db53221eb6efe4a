import { hostname } from "node:os";
import { env, loadConfig, unreadBodySettings } from "@chat/shared";
import { z } from "zod";

/** Every setting of an edge, from the environment. */
export const edgeConfigSchema = z.object({
  HOST: env.string("127.0.0.1"),
  PORT: env.int(8080, 0, 65535),
  /** The edge's own metrics and health, for Prometheus and probes: keep it off the public network. */
  ADMIN_PORT: env.int(8081, 0, 65535),
  EDGE_ID: env.string(hostname()),
  LOG_LEVEL: env.logLevel(),
  /** Where misses and live traffic go: the gateway (or a node). */
  ORIGIN_URL: env.url("http://127.0.0.1:8000"),
  /** Size of the in-memory cache, in bytes of stored bodies and headers. */
  CACHE_MAX_BYTES: env.int(64 * 1024 * 1024, 1024),
  /** Largest single response the edge stores; bigger ones pass through uncached. */
  CACHE_MAX_OBJECT_BYTES: env.int(8 * 1024 * 1024, 1024),
  /** How long past freshness a stored response may be served when the origin is down. */
  STALE_IF_ERROR_MAX_S: env.int(86_400, 0),
  /** Time allowed for the origin's response headers on a cacheable request. */
  ORIGIN_TIMEOUT_MS: env.int(10_000, 100),
  /** Slowloris guard: a request's whole head must arrive within this (408 otherwise). */
  HEADERS_TIMEOUT_MS: env.int(10_000, 100),
  /** Request heads over this get 431. */
  MAX_HEADER_BYTES: env.int(16_384, 1024, 1_048_576),
  /** Bearer token for POST /.edge/purge; purging is off while unset. */
  EDGE_ADMIN_TOKEN: z.string().min(16).optional(),
  ...unreadBodySettings,
});

export type EdgeConfig = z.infer<typeof edgeConfigSchema>;

export function loadEdgeConfig(source: NodeJS.ProcessEnv = process.env): EdgeConfig {
  return loadConfig(edgeConfigSchema, source);
}
