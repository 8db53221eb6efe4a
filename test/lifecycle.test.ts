import { spawnSync } from "node:child_process";
import { createLogger } from "@chat/shared";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { RUN_TYPESCRIPT } from "../cluster/process.ts";
import { loadNodeConfig } from "../services/src/config.ts";
import { createNodeMetrics } from "../services/src/metrics.ts";
import { Database } from "../services/src/storage/database.ts";
import { migrate } from "../services/src/storage/migrate.ts";
import { fixed, receive, send, sleep } from "./support/clients.ts";
import {
  freshRoom,
  inProcessNode,
  metric,
  ONE_PG_CONNECTION,
  occupyOnlyConnection,
  storedSeqs,
  useCluster,
} from "./support/cluster.ts";

const cluster = await useCluster({
  nodes: 2,
  nodeEnv: { DRAIN_GRACE_MS: "1500", DRAIN_TIMEOUT_MS: "5000" },
});
const silent = createLogger({ service: "test", instance: "test", level: "silent" });

describe("health and metrics", () => {
  it("reports alive, ready and the documented metrics without room or user labels", async () => {
    const url = cluster.nodeUrl(0);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: "ok",
      checks: { primary: true, replica: true, redis: true },
    });
    const room = freshRoom("metrics");
    const receiver = receive("sse", fixed(cluster.nodeUrl(1)), room);
    await send(url, room, "counted");
    await expect.poll(() => receiver.messages.length, { timeout: 10_000 }).toBe(1);
    const text = await (await fetch(`${cluster.nodeUrl(1)}/metrics`)).text();
    for (const name of [
      "chat_process_cpu_seconds_total",
      "chat_http_requests_total",
      'chat_open_streams{transport="sse"',
      "chat_delivery_latency_ms_bucket",
      "chat_redis_up",
    ]) {
      expect(text).toContain(name);
    }
    const stored = await (await fetch(`${url}/metrics`)).text();
    expect(stored).toMatch(/chat_messages_stored_total\{[^}]*\} [1-9]/);
    expect(stored).toContain('route="/api/rooms/:room/messages"');
    expect(text + stored).not.toContain(room);
    receiver.close();
  });
});

describe("drain on SIGTERM", () => {
  it("turns unready, refuses new work, tells streams to reconnect, answers long polls, exits", async () => {
    const url = cluster.nodeUrl(1);
    const room = freshRoom("drain");
    const stream = await fetch(`${url}/api/rooms/${room}/stream`);
    const longPoll = fetch(`${url}/api/rooms/${room}/messages?after=0&wait=30`);
    await expect
      .poll(async () =>
        (await (await fetch(`${url}/metrics`)).text()).includes(
          'chat_open_streams{transport="longpoll"',
        ),
      )
      .toBe(true);

    const started = Date.now();
    const exited = cluster.stopNode(1, "SIGTERM");
    const events = await stream.text(); // the stream ends on its own
    expect(events).toContain("event: reconnect");
    expect(events).toContain('"reason":"draining"');
    expect(await (await longPoll).json()).toEqual({ messages: [] });

    const readiness = await fetch(`${url}/readyz`);
    expect(readiness.status).toBe(503);
    expect(await readiness.json()).toMatchObject({ status: "draining" });
    const refused = await fetch(`${url}/api/rooms`);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: { code: "draining", retryable: true } });

    await exited;
    expect(Date.now() - started).toBeLessThan(1500 + 5000 + 2000);
    await cluster.startNode(1);
  });
});

describe("configuration", () => {
  it("parses defaults that work on one machine", () => {
    const config = loadNodeConfig({});
    expect(config).toMatchObject({
      PORT: 4001,
      REDIS_URL: "redis://127.0.0.1:6379",
      MAX_MESSAGE_BYTES: 4096,
    });
  });

  it("refuses a connection floor above the pool's ceiling", () => {
    expect(() => loadNodeConfig({ PG_POOL_MIN: "11", PG_POOL_MAX: "10" })).toThrow(
      /PG_POOL_MIN \("11"\): must not exceed PG_POOL_MAX/,
    );
  });

  it("a node with bad variables exits at once naming every one of them", () => {
    const result = spawnSync(process.execPath, [...RUN_TYPESCRIPT, "services/src/main.ts"], {
      env: {
        ...process.env,
        PORT: "eighty",
        MAX_MESSAGE_BYTES: "-1",
        REDIS_URL: "not a url",
        LISTEN_BACKLOG: "0",
      },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(result.status).toBe(2);
    for (const name of ["PORT", "MAX_MESSAGE_BYTES", "REDIS_URL", "LISTEN_BACKLOG"])
      expect(result.stderr).toContain(name);
  });
});

describe("Postgres connections", () => {
  /** The backends a node holds open on one server, by process id. */
  const backends = async (url: string, node: string, terminate = false) => {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid${terminate ? ", pg_terminate_backend(pid)" : ""} FROM pg_stat_activity WHERE application_name = $1`,
        [`chat-node ${node}`],
      );
      return rows.map((row) => row.pid);
    } finally {
      await admin.end();
    }
  };

  it("a node keeps PG_POOL_MIN open to each server while idle, and reopens them when Postgres drops them", async () => {
    const { PG_POOL_MIN: min, PG_POOL_IDLE_MS } = loadNodeConfig({});
    expect(min).toBeGreaterThan(0);
    // Longer than the pools' idle timeout: what is still open is the floor.
    await sleep(PG_POOL_IDLE_MS + 1000);
    for (const url of [cluster.primaryUrl, cluster.replicaUrl])
      expect((await backends(url, "node-0")).length).toBeGreaterThanOrEqual(min);

    const dropped = await backends(cluster.primaryUrl, "node-0", true);
    expect(dropped.length).toBeGreaterThanOrEqual(min);
    await expect
      .poll(
        async () =>
          (await backends(cluster.primaryUrl, "node-0")).filter((pid) => !dropped.includes(pid))
            .length,
        { timeout: 10_000 },
      )
      .toBeGreaterThanOrEqual(min);
    const room = freshRoom("pool");
    expect((await send(cluster.nodeUrl(0), room, "after the drop")).message.seq).toBe(1);
  });

  it("a connection lost while checked out is discarded, and neither crashes the process nor keeps a place in the pool", async () => {
    const nodeId = "checked-out";
    const config = loadNodeConfig({
      DATABASE_URL: cluster.primaryUrl,
      DATABASE_REPLICA_URL: "none",
      NODE_ID: nodeId,
    });
    const log = createLogger({ service: "test", instance: nodeId, level: "silent" });
    const db = new Database(config, createNodeMetrics(nodeId), log);
    try {
      // Checked out but running no query: what the floor's warm-up holds as it opens connections.
      const client = await db.primary.connect();
      const ended = new Promise((resolve) => client.once("end", resolve));
      await backends(cluster.primaryUrl, nodeId, true);
      await ended; // the 'error' came before: unlistened, it would have thrown in this process
      client.release();
      expect(db.primary.totalCount).toBe(0);
      expect(await db.write("SELECT 1 AS one")).toEqual([{ one: 1 }]);
    } finally {
      await db.close();
    }
  });
});

describe("a node whose Postgres connections are all busy", () => {
  it("answers a send that cannot get a connection with 503 overloaded, and its resend stores it once", async () => {
    const node = await inProcessNode(cluster, { NODE_ID: "busy-writes", ...ONE_PG_CONNECTION });
    const { url } = node;
    const room = freshRoom("busy");
    const occupied = await occupyOnlyConnection(cluster, url);
    try {
      const shed = await fetch(`${url}/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ body: "shed", client_id: "shed-1" }),
      });
      expect(shed.status).toBe(503);
      expect(shed.headers.get("retry-after")).toBe("1");
      expect(await shed.json()).toMatchObject({ error: { code: "overloaded", retryable: true } });
      // Reads have their own pool on the replica and go on meanwhile.
      const read = await fetch(`${url}/api/rooms/${room}/messages?after=0`);
      expect(read.status).toBe(200);

      expect(await occupied.release()).toBe(201);
      const resent = await send(url, room, "shed", { clientId: "shed-1" });
      expect(resent).toMatchObject({ status: 201, message: { seq: 1, body: "shed" } });
      expect(await storedSeqs(cluster, room)).toEqual([1]);
      expect(await metric(url, 'chat_pg_pool_timeouts_total{pool="primary"')).toBe(1);
      expect(await metric(url, "chat_postgres_errors_total")).toBe(0);
    } finally {
      await occupied.release();
      await node.stop();
    }
  });

  it("a busy replica is not taken for a down one: the read goes to the primary, the next to the replica", async () => {
    const config = loadNodeConfig({
      NODE_ID: "busy-reads",
      DATABASE_URL: cluster.primaryUrl,
      DATABASE_REPLICA_URL: cluster.replicaUrl,
      ...ONE_PG_CONNECTION,
    });
    const metrics = createNodeMetrics(config.NODE_ID);
    const db = new Database(config, metrics, silent);
    const servedBy = async () =>
      (await db.read<{ replica: boolean }>("SELECT pg_is_in_recovery() AS replica", []))[0]
        ?.replica;
    try {
      expect(await servedBy()).toBe(true);
      const held = await (db.replica as pg.Pool).connect();
      expect(await servedBy()).toBe(false);
      held.release();
      expect(await servedBy()).toBe(true);
      const fallbacks = await metrics.replicaFallbacks.get();
      expect(fallbacks.values).toContainEqual(
        expect.objectContaining({ labels: expect.objectContaining({ reason: "busy" }), value: 1 }),
      );
    } finally {
      await db.close();
    }
  });
});

describe("migrations", () => {
  it("apply once when several nodes start at the same time", async () => {
    const admin = new pg.Client({ connectionString: cluster.primaryUrl });
    await admin.connect();
    const database = `migrate_${process.pid}`;
    await admin.query(`CREATE DATABASE ${database}`);
    const url = cluster.primaryUrl.replace(/\/chat$/, `/${database}`);
    const pools = Array.from({ length: 5 }, () => new pg.Pool({ connectionString: url, max: 1 }));
    try {
      const applied = await Promise.all(pools.map((pool) => migrate(pool, silent)));
      expect(applied.flat()).toEqual(["001_rooms_and_messages.sql"]);
      const tables = await pools[0]?.query("SELECT count(*)::int AS n FROM schema_migrations");
      expect(tables?.rows[0].n).toBe(1);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
      await admin.query(`DROP DATABASE ${database}`);
      await admin.end();
    }
  });
});

describe("a deployment that requires tokens", () => {
  it("refuses anonymous requests with 401 unauthorized and serves token holders", async () => {
    const node = await inProcessNode(cluster, { NODE_ID: "in-process", REQUIRE_TOKEN: "true" });
    const { url } = node;
    try {
      const anonymous = await fetch(`${url}/api/rooms`);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.json()).toMatchObject({ error: { code: "unauthorized" } });
      const session = await fetch(`${url}/api/session`, {
        method: "POST",
        body: JSON.stringify({ name: "kim" }),
      });
      const { token } = (await session.json()) as { token: string };
      const sent = await send(url, freshRoom("auth"), "with a token", { token });
      expect(sent.message.user).toBe("kim");
    } finally {
      await node.stop();
    }
  });
});
