import { ChatError, type Logger } from "@chat/shared";
import pg from "pg";
import type { NodeConfig } from "../config.ts";
import type { NodeMetrics } from "../metrics.ts";

type Row = Record<string, unknown>;

/**
 * SQL text, or a named statement: Postgres parses and plans a named one once per
 * connection instead of on every call (for the statements run per message).
 */
export type Statement = string | { name: string; text: string };

export type Queryable = Pick<pg.Pool, "query">;
type PoolName = "primary" | "replica";

const queryOf = (statement: Statement, values: unknown[]): pg.QueryConfig =>
  typeof statement === "string" ? { text: statement, values } : { ...statement, values };

/**
 * What pg-pool throws when a query waited PG_CONNECT_TIMEOUT_MS for a connection while all
 * PG_POOL_MAX were busy: the node is behind, not the server down (a failed connect differs).
 */
const POOL_WAIT_TIMEOUT = "timeout exceeded when trying to connect";
const isPoolWaitTimeout = (error: unknown) =>
  error instanceof Error && error.message === POOL_WAIT_TIMEOUT;

const overloaded = (cause: unknown) =>
  new ChatError("overloaded", "this node is overloaded; retry (a send with the same client_id)", {
    retryAfter: 1,
    cause,
  });

/** Errors after which the server taking writes may have changed (down, shut down, demoted). */
const ROLE_CHANGE_CODES = new Set(["57P01", "57P02", "57P03", "25006", "08006", "08001"]);

/**
 * The primary (all writes) and the streaming replica (history reads). A read goes to the
 * replica unless it is known to be down; it falls back to the primary when the replica
 * fails, stays busy past PG_CONNECT_TIMEOUT_MS, or has not yet replayed what the caller needs
 * (`isFresh` says so). A write that waits that long for a connection is shed as `overloaded`.
 *
 * Writes go to whichever configured server is not in recovery. Nodes never promote anyone:
 * once an operator promotes the replica, the role check finds it and writes follow it, with
 * no restart. Should both servers accept writes (an old primary back without being made a
 * replica), the one on the newer timeline wins.
 */
export class Database {
  readonly #pools: Record<PoolName, pg.Pool | null>;
  #writer: PoolName = "primary";
  #replicaDownUntil = 0;
  #checking: Promise<void> | null = null;
  #monitor: NodeJS.Timeout | undefined;
  readonly #config: NodeConfig;
  readonly #metrics: NodeMetrics;
  readonly #log: Logger;

  constructor(config: NodeConfig, metrics: NodeMetrics, log: Logger) {
    this.#config = config;
    this.#metrics = metrics;
    this.#log = log;
    this.#pools = {
      primary: this.#pool("primary", config.DATABASE_URL),
      replica:
        config.DATABASE_REPLICA_URL === "none"
          ? null
          : this.#pool("replica", config.DATABASE_REPLICA_URL),
    };
    metrics.pgWriter.set({ pool: "primary" }, 1);
    metrics.pgPoolMax.set(config.PG_POOL_MAX);
    // Exported at 0 from the start, so dashboards and alerts see the series before a timeout.
    for (const [name, pool] of Object.entries(this.#pools))
      if (pool) metrics.pgPoolTimeouts.inc({ pool: name }, 0);
  }

  /** The pool taking writes now: the configured primary, or the replica once promoted. */
  get primary(): pg.Pool {
    return this.#pools[this.#writer] ?? (this.#pools.primary as pg.Pool);
  }

  /** The pool for history reads, or null when reads go to the primary. */
  get replica(): pg.Pool | null {
    return this.#writer === "replica" ? null : this.#pools.replica;
  }

  /** Checks roles and replica lag every PG_ROLE_CHECK_MS until close(). */
  startMonitor(): void {
    const tick = () => {
      this.#reportPools();
      void this.checkRoles().finally(() => this.#measureLag());
      void this.warm();
    };
    this.#monitor = setInterval(tick, this.#config.PG_ROLE_CHECK_MS);
    this.#monitor.unref();
    tick();
  }

  /**
   * Opens connections until each reachable pool holds PG_POOL_MIN: at start, and again after
   * a server restart took them. A server that cannot be reached is left to the role check.
   */
  async warm(): Promise<void> {
    const opening = Object.values(this.#pools).flatMap((pool) => {
      const missing = pool ? this.#config.PG_POOL_MIN - pool.totalCount : 0;
      if (!pool || missing <= 0) return [];
      // The pool hands out idle connections first: hold those too, so it opens new ones.
      return Array.from({ length: pool.idleCount + missing }, () => pool.connect());
    });
    // One that failed while held is no longer queryable, and the pool discards it on release.
    const clients = await Promise.allSettled(opening);
    for (const client of clients) if (client.status === "fulfilled") client.value.release();
  }

  /** A write or a read that must see the latest commit. */
  async write<R extends Row>(sql: Statement, params: unknown[] = []): Promise<R[]> {
    try {
      return (await this.primary.query<R>(queryOf(sql, params))).rows;
    } catch (error) {
      if (isPoolWaitTimeout(error)) {
        this.#metrics.pgPoolTimeouts.inc({ pool: this.#writer });
        throw overloaded(error);
      }
      this.#metrics.postgresErrors.inc({ pool: this.#writer });
      if (mayMeanRoleChange(error)) void this.checkRoles();
      throw error;
    }
  }

  /** A read served by the replica when it is up and fresh enough, else by the primary. */
  async read<R extends Row>(
    sql: Statement,
    params: unknown[],
    isFresh: (rows: R[]) => boolean = () => true,
  ): Promise<R[]> {
    const replica = this.replica;
    if (replica && Date.now() >= this.#replicaDownUntil) {
      try {
        const { rows } = await replica.query<R>(queryOf(sql, params));
        if (isFresh(rows)) return rows;
        this.#metrics.replicaFallbacks.inc({ reason: "lag" });
      } catch (error) {
        // A replica whose connections are all busy is up: the primary may have room to spare.
        if (isPoolWaitTimeout(error)) this.#replicaBusy();
        else this.#markReplicaDown(error);
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
    const replica = this.replica;
    const [primary, replicaUp] = await Promise.all([
      check(this.primary),
      replica ? check(replica) : Promise.resolve(null),
    ]);
    return { primary, replica: replicaUp };
  }

  /** Finds the server that takes writes (single flight: concurrent callers share one check). */
  checkRoles(): Promise<void> {
    this.#checking ??= this.#findWriter().finally(() => {
      this.#checking = null;
    });
    return this.#checking;
  }

  async close(): Promise<void> {
    clearInterval(this.#monitor);
    await Promise.all([this.#pools.primary?.end(), this.#pools.replica?.end()]);
  }

  async #findWriter(): Promise<void> {
    const roles = await Promise.all(
      (["primary", "replica"] as const).map(async (name) => ({
        name,
        ...(await this.#role(name)),
      })),
    );
    for (const { name, up } of roles) this.#metrics.pgUp.set({ pool: name }, up ? 1 : 0);
    const writable = roles.filter((r) => r.writable).sort((a, b) => b.timeline - a.timeline);
    const best = writable[0];
    if (!best || best.name === this.#writer) return;
    const current = roles.find((r) => r.name === this.#writer);
    // Keep a healthy writer unless another is on a newer timeline (it was promoted after it).
    if (current?.writable && current.timeline >= best.timeline) return;
    this.#log.warn({ from: this.#writer, to: best.name }, "the primary moved; writes follow it");
    this.#metrics.pgWriter.set({ pool: this.#writer }, 0);
    this.#metrics.pgWriter.set({ pool: best.name }, 1);
    this.#metrics.pgWriterSwitches.inc();
    this.#writer = best.name;
  }

  async #role(name: PoolName): Promise<{ up: boolean; writable: boolean; timeline: number }> {
    const pool = this.#pools[name];
    if (!pool) return { up: false, writable: false, timeline: 0 };
    try {
      const { rows } = await pool.query<{ recovery: boolean; timeline: number }>(
        "SELECT pg_is_in_recovery() AS recovery, timeline_id AS timeline FROM pg_control_checkpoint()",
      );
      const row = rows[0];
      return { up: true, writable: row?.recovery === false, timeline: row?.timeline ?? 0 };
    } catch {
      return { up: false, writable: false, timeline: 0 };
    }
  }

  /** Replica lag in WAL bytes and seconds (0 when it has replayed all it received). */
  async #measureLag(): Promise<void> {
    const replica = this.replica;
    if (!replica) {
      this.#metrics.pgReplicaLagBytes.set(0);
      this.#metrics.pgReplicaLagSeconds.set(0);
      return;
    }
    try {
      const { rows } = await replica.query<{ replayed: string; seconds: number }>(
        `SELECT pg_last_wal_replay_lsn()::text AS replayed,
           CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
             ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
           END::float8 AS seconds`,
      );
      const standby = rows[0];
      if (!standby?.replayed) return;
      const [behind] = await this.write<{ bytes: string }>(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes",
        [standby.replayed],
      );
      this.#metrics.pgReplicaLagBytes.set(Math.max(0, Number(behind?.bytes ?? 0)));
      this.#metrics.pgReplicaLagSeconds.set(standby.seconds);
    } catch {
      // Either side down: readiness and pg_up say so; the last lag figure stays.
    }
  }

  #reportPools(): void {
    for (const [name, pool] of Object.entries(this.#pools)) {
      if (!pool) continue;
      const gauge = this.#metrics.pgPoolConnections;
      gauge.set({ pool: name, state: "total" }, pool.totalCount);
      gauge.set({ pool: name, state: "idle" }, pool.idleCount);
      gauge.set({ pool: name, state: "waiting" }, pool.waitingCount);
    }
  }

  #replicaBusy(): void {
    this.#metrics.pgPoolTimeouts.inc({ pool: "replica" });
    this.#metrics.replicaFallbacks.inc({ reason: "busy" });
  }

  #markReplicaDown(error: unknown): void {
    if (Date.now() >= this.#replicaDownUntil) {
      this.#log.warn({ err: error }, "replica read failed; reading from the primary for a while");
    }
    this.#replicaDownUntil = Date.now() + this.#config.REPLICA_RETRY_MS;
    this.#metrics.postgresErrors.inc({ pool: "replica" });
    this.#metrics.replicaFallbacks.inc({ reason: "down" });
  }

  #pool(name: PoolName, connectionString: string): pg.Pool {
    const pool = new pg.Pool({
      connectionString,
      max: this.#config.PG_POOL_MAX,
      min: this.#config.PG_POOL_MIN,
      idleTimeoutMillis: this.#config.PG_POOL_IDLE_MS,
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
    // The pool listens to a connection only while it is idle, yet one checked out can lose its
    // server too (seen while Postgres restarted): each is listened to for its whole life, as the
    // node-postgres maintainers advise. Its query, holder or the pool reports the failure.
    const onConnectionError = (error: Error) =>
      this.#log.debug({ err: error, pool: name }, "Postgres connection failed");
    pool.on("connect", (client) => client.on("error", onConnectionError));
    pool.on("remove", (client) => client.off("error", onConnectionError));
    return pool;
  }
}

function mayMeanRoleChange(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  if (code && (ROLE_CHANGE_CODES.has(code) || code.startsWith("ECONN"))) return true;
  return /terminat|timeout|ECONN/i.test(message ?? "");
}
