import { availableParallelism, hostname } from "node:os";
import { env, loadConfig, unreadBodySettings } from "@chat/shared";
import { z } from "zod";

const list = z
  .string()
  .default("")
  .transform((value) =>
    value
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean),
  );

/** Every setting of the gateway, from the environment. */
export const gatewayConfigSchema = z
  .object({
    HOST: env.string("127.0.0.1"),
    PORT: env.int(8000, 0, 65535),
    /** Aggregated /metrics and /status of all workers, served by the primary process. */
    ADMIN_PORT: env.int(8001, 0, 65535),
    GATEWAY_ID: env.string(hostname()),
    LOG_LEVEL: env.logLevel(),
    /** Worker processes sharing the port; each holds at most ~20k sockets here. */
    GATEWAY_WORKERS: env.int(availableParallelism(), 1, 256),
    /** Kernel accept queue: big enough for a reconnect storm (Node's default is 511). */
    LISTEN_BACKLOG: env.int(4096, 1, 65535),

    /** Upstreams, in one of three ways: a static list, a file re-read every second, or DNS. */
    UPSTREAMS: list,
    UPSTREAMS_FILE: z.string().optional(),
    /** `name:port`: every A record of `name` (Docker's embedded DNS under compose --scale). */
    UPSTREAM_DNS: z
      .string()
      .regex(/^[^:\s]+:\d+$/, "must be name:port")
      .optional(),
    DISCOVERY_INTERVAL_MS: env.int(1000, 100),

    HEALTH_INTERVAL_MS: env.int(1000, 100),
    HEALTH_TIMEOUT_MS: env.int(1000, 50),
    /** Passive ejection backoff after connect errors or timeouts: base, doubling, capped. */
    EJECT_BASE_MS: env.int(1000, 10),
    EJECT_MAX_MS: env.int(30_000, 10),
    /** A new upstream's share of new work ramps up over this long. */
    SLOW_START_MS: env.int(10_000, 0),

    CONNECT_TIMEOUT_MS: env.int(1000, 10),
    /** Time for an upstream's response headers on ordinary requests. */
    RESPONSE_TIMEOUT_MS: env.int(15_000, 100),
    /** The same for long polls, which the node holds up to LONGPOLL_MAX_WAIT_S (30 s). */
    LONG_POLL_TIMEOUT_MS: env.int(45_000, 100),
    /** Established WebSockets and streams: closed only after this long without a byte. */
    STREAM_IDLE_TIMEOUT_MS: env.int(120_000, 1000),
    /** Slowloris guard: the whole request head must arrive within this. */
    HEADERS_TIMEOUT_MS: env.int(10_000, 100),
    MAX_HEADER_BYTES: env.int(16_384, 1024, 1_048_576),
    /** Open client connections per worker. */
    MAX_CONNECTIONS: env.int(9000, 1),
    /** New connections per client address per second, per worker. */
    MAX_NEW_CONNECTIONS_PER_IP: env.int(200, 1),
    /** Bodies buffered so a POST carrying a client id can be retried on another node. */
    MAX_RETRY_BODY_BYTES: env.int(65_536, 0),
    /** Retries allowed as a share of requests over the last 10 s, plus a floor per second. */
    RETRY_BUDGET_RATIO: z.coerce.number().min(0).max(1).default(0.2),
    RETRY_BUDGET_MIN_PER_S: env.int(10, 0),
    MAX_ATTEMPTS: env.int(3, 1, 10),
    /** Local addresses for upstream connections (127.0.0.x on loopback): each adds a
     * 28k-port range per upstream. Empty: the OS picks. */
    SOURCE_ADDRESSES: list,
    ...unreadBodySettings,
  })
  .refine((c) => c.UPSTREAMS.length > 0 || c.UPSTREAMS_FILE || c.UPSTREAM_DNS, {
    message: "set UPSTREAMS, UPSTREAMS_FILE or UPSTREAM_DNS",
    path: ["UPSTREAMS"],
  });

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;

export function loadGatewayConfig(source: NodeJS.ProcessEnv = process.env): GatewayConfig {
  return loadConfig(gatewayConfigSchema, source);
}
