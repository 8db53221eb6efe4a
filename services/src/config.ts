import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { env, loadConfig } from "@chat/shared";
import { z } from "zod";

/** Every setting of a chat node, from the environment, with defaults for one machine. */
const nodeSettings = z.object({
  HOST: env.string("127.0.0.1"),
  PORT: env.int(4001, 0, 65535),
  /** Accept queue: the gateway opens a connection per WebSocket upgrade, so a reconnect storm
   * arrives all at once (Node's default of 511 overflows, and dropped SYNs cost a second). */
  LISTEN_BACKLOG: env.int(4096, 1, 65535),
  /** Names this node in logs, metrics and the X-Chat-Node header. */
  NODE_ID: env.string(hostname()),
  LOG_LEVEL: env.logLevel(),

  DATABASE_URL: env.url("postgres://chat@127.0.0.1:5432/chat"),
  /** History reads go here; unset or "none" sends them to the primary. */
  DATABASE_REPLICA_URL: z
    .union([z.literal("none"), z.url()])
    .default("postgres://chat@127.0.0.1:5433/chat"),
  PG_POOL_MAX: env.int(10, 1, 1000),
  /** Connections each pool opens at start and keeps when idle (reopened if they drop), so a
   * burst after a quiet spell or a restart does not wait for Postgres to fork backends. */
  PG_POOL_MIN: env.int(4, 0, 1000),
  /** An idle connection above PG_POOL_MIN is closed after this long. */
  PG_POOL_IDLE_MS: env.int(10_000, 100),
  /** Bounds both opening a connection and waiting for a pooled one: a node whose every
   * connection stays busy this long answers 503 `overloaded` rather than queueing on. */
  PG_CONNECT_TIMEOUT_MS: env.int(2000, 100),
  PG_STATEMENT_TIMEOUT_MS: env.int(5000, 100),
  /** Each dependency check of /readyz (Postgres, Redis): slower counts as failed. */
  READY_CHECK_TIMEOUT_MS: env.int(800, 10, 60_000),
  /** How long a failed replica is left alone before reads try it again. */
  REPLICA_RETRY_MS: env.int(2000, 100),
  /** How often a node asks both servers which takes writes (finds a promoted replica) and
   * measures replica lag. A failed write triggers the same check at once. */
  PG_ROLE_CHECK_MS: env.int(1000, 100),

  REDIS_URL: env.url("redis://127.0.0.1:6379"),

  TOKEN_SECRET: env.string("dev-only-secret-change-me"),
  TOKEN_TTL_S: env.int(7 * 24 * 3600, 60),
  /** When true, requests without a token are refused (401) instead of served as guests. */
  REQUIRE_TOKEN: env.bool(false),
  MAX_NAME_CHARS: env.int(32, 1, 256),

  /** Largest message body, in UTF-8 bytes. */
  MAX_MESSAGE_BYTES: env.int(4096, 1, 1_048_576),
  /** Largest HTTP request body, in bytes. */
  MAX_REQUEST_BYTES: env.int(16_384, 256, 10_485_760),
  HISTORY_DEFAULT_LIMIT: env.int(100, 1, 10_000),
  HISTORY_MAX_LIMIT: env.int(1000, 1, 10_000),
  ROOM_LIST_DEFAULT_LIMIT: env.int(100, 1, 10_000),
  ROOM_LIST_MAX_LIMIT: env.int(1000, 1, 10_000),
  LONGPOLL_MAX_WAIT_S: env.int(30, 1, 300),
  /** Wait used by the thesis route /chat/poll, which takes no wait parameter. */
  THESIS_POLL_WAIT_S: env.int(25, 1, 300),
  SSE_HEARTBEAT_MS: env.int(15_000, 100),
  /** A stream whose client has not read this many messages is closed; the client resumes. */
  SSE_MAX_QUEUED_MESSAGES: env.int(1000, 1),

  /** Sends per user per window, shared by all nodes (anonymous guests count per address). */
  RATE_LIMIT_SENDS: env.int(30, 1),
  RATE_LIMIT_WINDOW_MS: env.int(10_000, 100),
  /** Largest WebSocket frame a client may send; bigger frames close the socket (1009). */
  MAX_FRAME_BYTES: env.int(65_536, 1024, 16_777_216),
  MAX_TOPICS_PER_SOCKET: env.int(32, 1, 10_000),
  /** Bytes queued to one socket before it counts as a slow consumer and is closed (4503). */
  MAX_SOCKET_BUFFER_BYTES: env.int(1_048_576, 1024),
  /** Inbound frames per second per socket, and the burst allowed above that. */
  SOCKET_FRAMES_PER_SECOND: env.int(20, 1),
  SOCKET_FRAME_BURST: env.int(60, 1),
  /** A Phoenix socket that sends nothing (not even a heartbeat) for this long is closed. */
  PHOENIX_HEARTBEAT_TIMEOUT_MS: env.int(60_000, 1000),
  /** How long a Phoenix long poll is held before answering 204 (below phoenix.js's 10 s timeout). */
  LONGPOLL_HOLD_MS: env.int(8000, 100, 60_000),
  /** A Phoenix LongPoll session nobody polls for this long is gone (410). */
  LONGPOLL_SESSION_TTL_MS: env.int(30_000, 1000),
  /** Action Cable ping interval (its client calls a connection stale after ~6 s of silence). */
  CABLE_PING_MS: env.int(3000, 100),
  /** Origins allowed to open WebSockets, comma separated; "*" allows any. Same-origin requests
   * and clients that send no Origin (non-browsers) are always allowed. */
  ALLOWED_ORIGINS: z
    .string()
    .default("")
    .transform((list) =>
      list
        .split(",")
        .map((o) => o.trim())
        .filter(Boolean),
    ),
  /** Presence: how often a node proves it is alive, and when silent nodes' entries are dropped. */
  PRESENCE_HEARTBEAT_MS: env.int(1000, 100),
  PRESENCE_DEAD_AFTER_MS: env.int(5000, 500),
  /** A node whose event loop stays blocked this long stops proving itself alive (its people
   * leave); shorter lags do not, as a worker thread keeps the proof going. Phoenix: 30 s. */
  PRESENCE_STALL_LIMIT_MS: env.int(30_000, 1000),
  /** Joins and leaves in a room go out as one presence_diff per this many ms. */
  PRESENCE_BATCH_MS: env.int(100, 0, 10_000),
  /** Most people a room's presence lists; later joiners chat but are not listed (bounded
   * presence_state and diffs in huge rooms, as big chat products do). */
  PRESENCE_MAX_PER_ROOM: env.int(100, 1, 1_000_000),

  /** The built web client the node serves as the edge's origin (`npm run build`). */
  STATIC_DIR: env.string(fileURLToPath(new URL("../../static/dist", import.meta.url))),

  /** Delay before a gap in the live stream is filled from Postgres (lets a reordered publish land). */
  GAP_FILL_DELAY_MS: env.int(25, 0, 10_000),
  /** How often each node checks room heads in Postgres to catch publishes Redis lost. */
  SWEEP_INTERVAL_MS: env.int(2000, 50),
  /** The same while Redis is down: cross-node delivery then runs on this. */
  DEGRADED_SWEEP_INTERVAL_MS: env.int(200, 20),
  /** How long a room's feed outlives its last local subscriber (long polls come and go). */
  FEED_LINGER_MS: env.int(30_000, 0),

  /** How long a starting node waits for the Postgres primary before giving up. */
  STARTUP_TIMEOUT_MS: env.int(30_000, 0),
  /** After SIGTERM, how long the node keeps answering (readiness false, new work refused with a
   * retryable 503) before it stops listening: time for the gateway's health checks to notice. */
  DRAIN_GRACE_MS: env.int(1000, 0, 60_000),
  /** Upper bound on a graceful drain after SIGTERM before the process exits anyway. */
  DRAIN_TIMEOUT_MS: env.int(10_000, 0),
});

/** The settings, with the rules that tie one to another. */
export const nodeConfigSchema = nodeSettings.refine(
  (config) => config.PG_POOL_MIN <= config.PG_POOL_MAX,
  { path: ["PG_POOL_MIN"], message: "must not exceed PG_POOL_MAX" },
);

export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export function loadNodeConfig(source: NodeJS.ProcessEnv = process.env): NodeConfig {
  return loadConfig(nodeConfigSchema, source);
}
