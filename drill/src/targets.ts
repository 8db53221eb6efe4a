import { execFile } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { REPO_ROOT, startCluster } from "../../cluster/launcher.ts";

/** A stored message as Postgres holds it: the ground truth clients are checked against. */
export interface StoredMessage {
  seq: number;
  id: string;
  client_id: string | null;
}

/** Where the drill runs and how it breaks things there. Node indexes count from 0. */
export interface Target {
  readonly name: string;
  /** The public entry (the edge) clients connect to. */
  readonly entry: string;
  nodeCount(): Promise<number>;
  signalNode(index: number, signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): Promise<void>;
  startNode(index: number): Promise<void>;
  stopRedis(): Promise<void>;
  startRedis(): Promise<void>;
  stopReplica(): Promise<void>;
  startReplica(): Promise<void>;
  stopPrimary(): Promise<void>;
  promoteReplica(): Promise<void>;
  stored(rooms: string[]): Promise<Map<string, StoredMessage[]>>;
  close(): Promise<void>;
}

const STORED_SQL =
  "SELECT room, seq::int AS seq, id::text AS id, client_id FROM messages WHERE room = ANY($1) ORDER BY room, seq";

/** A local cluster of its own (free ports, a temp folder), with the gateway and the edge. */
export async function localTarget(nodes: number, log: (line: string) => void): Promise<Target> {
  const cluster = await startCluster({
    nodes,
    dataDir: await mkdtemp(join(tmpdir(), "chat-drill-")),
    ports: "auto",
    gateway: { workers: 2, env: { HEALTH_INTERVAL_MS: "500" } },
    edge: true,
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    nodeEnv: { LOG_LEVEL: "warn" },
    log,
  });
  let promoted = false;
  const pid = (index: number) => {
    const node = cluster.nodes[index];
    if (!node?.pid) throw new Error(`node ${index} is not running`);
    return node.pid;
  };
  return {
    name: "local",
    entry: cluster.edgeUrl ?? "",
    nodeCount: async () => cluster.nodes.length,
    async signalNode(index, signal) {
      if (signal === "SIGSTOP" || signal === "SIGCONT") process.kill(pid(index), signal);
      else await cluster.stopNode(index, signal);
    },
    startNode: (index) => cluster.startNode(index),
    stopRedis: () => cluster.stopRedis("SIGKILL"),
    startRedis: () => cluster.startRedis(),
    stopReplica: () => cluster.stopReplica(),
    startReplica: () => cluster.startReplica(),
    stopPrimary: () => cluster.stopPrimary(),
    async promoteReplica() {
      await cluster.promoteReplica();
      promoted = true;
    },
    stored: (rooms) => readStored(promoted ? cluster.replicaUrl : cluster.primaryUrl, rooms),
    close: () => cluster.stop(),
  } satisfies Target;
}

async function readStored(url: string, rooms: string[]): Promise<Map<string, StoredMessage[]>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<StoredMessage & { room: string }>(STORED_SQL, [rooms]);
    return groupByRoom(rows);
  } finally {
    await client.end();
  }
}

function groupByRoom(rows: Array<StoredMessage & { room: string }>) {
  const byRoom = new Map<string, StoredMessage[]>();
  for (const { room, ...message } of rows) {
    const list = byRoom.get(room) ?? [];
    list.push(message);
    byRoom.set(room, list);
  }
  return byRoom;
}

export interface ComposeOptions {
  project: string;
  /** The edge's published address (EDGE_PORT, 8080 by default). */
  entry: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * A running Compose stack. Nodes are containers of the `node` service; SIGSTOP is
 * `docker pause` (the freezer cgroup), the rest are signals and `docker start`.
 */
export function composeTarget(options: ComposeOptions): Target {
  const run = async (file: string, args: string[]) =>
    (
      await promisify(execFile)(file, args, {
        cwd: REPO_ROOT,
        env: options.env ?? process.env,
        maxBuffer: 64 * 1024 * 1024,
      })
    ).stdout;
  const compose = (...args: string[]) => run("docker-compose", ["-p", options.project, ...args]);
  const docker = (...args: string[]) => run("docker", args);
  // Container ids are listed once: a killed container keeps its id and is started again.
  let containers: string[] | undefined;
  const node = async (index: number) => {
    containers ??= (await compose("ps", "-q", "node")).trim().split("\n").filter(Boolean).sort();
    const id = containers[index];
    if (!id) throw new Error(`no node container ${index}`);
    return id;
  };
  let primary = "pg-primary";
  return {
    name: "compose",
    entry: options.entry,
    nodeCount: async () => (await compose("ps", "-q", "node")).trim().split("\n").length,
    async signalNode(index, signal) {
      const id = await node(index);
      if (signal === "SIGSTOP") await docker("pause", id);
      else if (signal === "SIGCONT") await docker("unpause", id);
      else await docker("kill", "-s", signal.replace("SIG", ""), id);
    },
    startNode: async (index) => void (await docker("start", await node(index))),
    stopRedis: async () => void (await compose("kill", "redis")),
    startRedis: async () => void (await compose("start", "redis")),
    stopReplica: async () => void (await compose("stop", "pg-replica")),
    startReplica: async () => void (await compose("start", "pg-replica")),
    stopPrimary: async () => void (await compose("stop", "pg-primary")),
    async promoteReplica() {
      await compose(
        ..."exec -T pg-replica psql -U chat -d postgres -c".split(" "),
        "SELECT pg_promote()",
      );
      primary = "pg-replica";
    },
    async stored(rooms) {
      const sql = `COPY (${STORED_SQL.replace("$1", `ARRAY[${rooms.map((r) => `'${r}'`).join(",")}]`)}) TO STDOUT`;
      const out = await compose(
        "exec",
        "-T",
        primary,
        "psql",
        "-U",
        "chat",
        "-d",
        "chat",
        "-c",
        sql,
      );
      const rows = out
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [room = "", seq = "", id = "", clientId = "\\N"] = line.split("\t");
          return { room, seq: Number(seq), id, client_id: clientId === "\\N" ? null : clientId };
        });
      return groupByRoom(rows);
    },
    close: async () => {},
  };
}
