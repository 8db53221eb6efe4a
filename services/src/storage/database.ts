import type { Logger } from "@chat/shared";
import pg from "pg";
import type { NodeConfig } from "../config.ts";
import type { NodeMetrics } from "../metrics.ts";

type Row = Record<string, unknown>;
export type Queryable = Pick<pg.Pool, "query">;

/**
 * The primary (all writes) and the streaming replica (history reads). A read goes to the
 * replica unless it is known to be down; it falls back to the primary when the replica
 * fails or has not yet replayed what the caller needs (`isFresh` says so).
 */
export class Database {
  readonly primary: pg.Pool;
  readonly replica: pg.Pool | null;
  #replicaDownUntil = 0;
  readonly #config: NodeConfig;
  readonly #metrics: NodeMetrics;
  readonly #log: Logger;

  constructor(config: NodeConfig, metrics: NodeMetrics, log: Logger) {
    this.#config = config;
    this.#metrics = metrics;
    this.#log = log;
    this.primary = this.#pool("primary", config.DATABASE_URL);
    this.replica =
      config.DATABASE_REPLICA_URL === "none"
        ? null
        : this.#pool("replica", config.DATABASE_REPLICA_URL);
  }

  /** A write or a read that must see the latest commit. */
  async write<R extends Row>(sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      return (await this.primary.query<R>(sql, params)).rows;
    } catch (error) {
      this.#metrics.postgresErrors.inc({ pool: "primary" });
      throw error;
    }
  }

  /** A read served by the replica when it is up and fresh enough, else by the primary. */
  async read<R extends Row>(
    sql: string,
    params: unknown[],
    isFresh: (rows: R[]) => boolean = () => true,
  ): Promise<R[]> {
    if (this.replica && Date.now() >= this.#replicaDownUntil) {
      try {
        const { rows } = await this.replica.query<R>(sql, params);
        if (isFresh(rows)) return rows;
        this.#metrics.replicaFallbacks.inc({ reason: "lag" });
      } catch (error) {
        this.#markReplicaDown(error);
      }
    }
    return this.write<R>(sql, params);
  }

  /** Reachability of each side, for readiness. */
  async ping(): Promise<{ primary: boolean; replica: boolean | null }> {
    const check = async (pool: pg.Pool) =>
      pool.query("SELECT 1").then(
        () => true,
        () => false,
      );
    const [primary, replica] = await Promise.all([
      check(this.primary),
      this.replica ? check(this.replica) : Promise.resolve(null),
    ]);
    return { primary, replica };
  }

  async close(): Promise<void> {
    await Promise.all([this.primary.end(), this.replica?.end()]);
  }

  #markReplicaDown(error: unknown): void {
    if (Date.now() >= this.#replicaDownUntil) {
      this.#log.warn({ err: error }, "replica read failed; reading from the primary for a while");
    }
    this.#replicaDownUntil = Date.now() + this.#config.REPLICA_RETRY_MS;
    this.#metrics.postgresErrors.inc({ pool: "replica" });
    this.#metrics.replicaFallbacks.inc({ reason: "down" });
  }

  #pool(name: "primary" | "replica", connectionString: string): pg.Pool {
    const pool = new pg.Pool({
      connectionString,
      max: this.#config.PG_POOL_MAX,
      connectionTimeoutMillis: this.#config.PG_CONNECT_TIMEOUT_MS,
      statement_timeout: this.#config.PG_STATEMENT_TIMEOUT_MS,
      query_timeout: this.#config.PG_STATEMENT_TIMEOUT_MS + 1000,
      application_name: `chat-node ${this.#config.NODE_ID}`,
    });
    // An idle client losing its server emits here; without a listener it would crash the node.
    pool.on("error", (error) => {
      this.#metrics.postgresErrors.inc({ pool: name });
      this.#log.warn({ err: error, pool: name }, "idle Postgres connection failed");
    });
    return pool;
  }
}
