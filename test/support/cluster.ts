import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@chat/shared";
import pg from "pg";
import { afterAll } from "vitest";
import { openInspector } from "../../cluster/inspector.ts";
import {
  type Cluster,
  type ClusterOptions,
  type NodeHandle,
  startCluster,
} from "../../cluster/launcher.ts";
import { loadNodeConfig } from "../../services/src/config.ts";

/**
 * A real cluster for one test file — Redis, a Postgres primary and streaming replica, and
 * `nodes` chat nodes on free ports in a temp folder — torn down (and deleted) after the file.
 */
export async function useCluster(
  options: Omit<ClusterOptions, "dataDir" | "ports"> = {},
): Promise<Cluster> {
  const dataDir = await mkdtemp(join(tmpdir(), "chat-test-"));
  const cluster = await startCluster({
    nodes: 3,
    ...options,
    dataDir,
    ports: "auto",
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    // Suites send hundreds of messages from one address; the rate-limit suite sets its own limit.
    nodeEnv: { LOG_LEVEL: "warn", RATE_LIMIT_SENDS: "1000000", ...options.nodeEnv },
  });
  afterAll(() => cluster.stop());
  return cluster;
}

/**
 * A chat node in the test's own process, on the cluster's Redis and Postgres, with `env` over
 * the test defaults: for settings the cluster's nodes do not have.
 */
export async function inProcessNode(cluster: Cluster, env: Record<string, string>) {
  const { createChatNode } = await import("../../services/src/node.ts");
  const config = loadNodeConfig({
    PORT: "0",
    DRAIN_GRACE_MS: "0",
    DATABASE_URL: cluster.primaryUrl,
    DATABASE_REPLICA_URL: cluster.replicaUrl,
    REDIS_URL: cluster.redisUrl,
    RATE_LIMIT_SENDS: "1000000",
    ...env,
  });
  const log = createLogger({ service: "test", instance: config.NODE_ID, level: "silent" });
  const node = createChatNode(config, log);
  return { url: `http://127.0.0.1:${await node.start()}`, stop: () => node.stop() };
}

/** One Postgres connection per pool, waited for 300 ms: holding it makes a node shed the rest.
 * The long statement timeout lets a send hold it for as long as a test needs. */
export const ONE_PG_CONNECTION = {
  PG_POOL_MAX: "1",
  PG_POOL_MIN: "1",
  PG_CONNECT_TIMEOUT_MS: "300",
  PG_STATEMENT_TIMEOUT_MS: "60000",
};

export interface OccupiedConnection {
  /** Frees the connection (once, however often called); answers the waiting send's status. */
  release(): Promise<number>;
}

/**
 * Occupies the one Postgres connection of a node started with ONE_PG_CONNECTION: a send of
 * its own waits on a room row locked by another session until `release()`, which commits
 * and answers that send's HTTP status. Meanwhile the node sheds every other write.
 */
export async function occupyOnlyConnection(
  cluster: Cluster,
  nodeUrl: string,
): Promise<OccupiedConnection> {
  const room = freshRoom("locked");
  const sendTo = (body: string) =>
    fetch(`${nodeUrl}/api/rooms/${room}/messages`, {
      method: "POST",
      body: JSON.stringify({ body }),
    }).then((response) => response.status);
  if ((await sendTo("makes the room")) !== 201) throw new Error("the node did not take a send");
  const locker = new pg.Client({ connectionString: cluster.primaryUrl });
  await locker.connect();
  await locker.query("BEGIN");
  await locker.query("SELECT 1 FROM rooms WHERE name = $1 FOR UPDATE", [room]);
  const held = sendTo("waits on the locked row");
  await new Promise((resolve) => setTimeout(resolve, 100)); // it has the connection by now
  let released: Promise<number> | undefined;
  return {
    release: () => {
      released ??= locker
        .query("COMMIT")
        .then(() => held)
        .finally(() => locker.end());
      return released;
    },
  };
}

/** URLs of the nodes currently running. */
export const liveNodes = (cluster: Cluster) => () =>
  cluster.nodes.filter((node) => node.running).map((node) => node.url);

let roomCounter = 0;
/** A room of its own for each test, so tests in one file never see each other's messages. */
export const freshRoom = (prefix = "t") => `${prefix}-${process.pid}-${++roomCounter}`;

/** The room's seqs as Postgres (the primary) holds them: the ground truth clients are checked against. */
export async function storedSeqs(cluster: Cluster, room: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: cluster.primaryUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ seq: string }>(
      "SELECT seq FROM messages WHERE room = $1 ORDER BY seq",
      [room],
    );
    return rows.map((row) => Number(row.seq));
  } finally {
    await client.end();
  }
}

/** A node's metric, summed over its label sets. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

/**
 * Blocks a node's main event loop for `ms` (its worker threads run on), as a long GC pause or
 * a CPU-starved machine would: the node's inspector runs a busy loop. The node must run with
 * NODE_OPTIONS=INSPECTABLE; resolves when the loop is free again.
 */
export async function blockEventLoop(node: NodeHandle, ms: number): Promise<void> {
  if (!node.pid) throw new Error(`node ${node.index} is not running`);
  const inspector = await openInspector(node.pid, () => node.logTail(200));
  const expression = `{ const end = Date.now() + ${ms}; while (Date.now() < end); }`;
  await inspector.call("Runtime.evaluate", { expression });
  inspector.close();
}
