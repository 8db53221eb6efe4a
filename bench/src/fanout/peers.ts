import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { INSPECTABLE } from "../../../cluster/inspector.ts";
import { type Cluster, findFreePort, REPO_ROOT, startCluster } from "../../../cluster/launcher.ts";
import { ManagedProcess, RUN_TYPESCRIPT } from "../../../cluster/process.ts";
import { startRedis } from "../../../cluster/redis.ts";
import { barChart, cpuSeconds, markdownTable, median, medianAndRange } from "../output.ts";
import { reports, setMarker, startGenerators, waitForArrivals } from "../ramp/ramp.ts";
import type { GeneratorProtocol } from "../ramp/worker.ts";
import { arrivalsByMessage, deliveryFigures, rss, sendAtRate, waitForJoins } from "./fanout.ts";
import { heapAfterGc } from "./heap.ts";

/** Ours over Phoenix Channels or over Action Cable, and the peers those protocols come from. */
export type PeerServer = "ours" | "ours-cable" | "socket.io" | "rails" | "ws";

const PROTOCOL: Record<PeerServer, GeneratorProtocol> = {
  ours: "phoenix",
  "ours-cable": "actioncable",
  "socket.io": "socketio",
  rails: "actioncable",
  ws: "plain",
};

export interface PeerOptions {
  subscribers: number;
  ratePerSecond: number;
  messages: number;
  generators: number;
  say?: (line: string) => void;
}

export interface PeerResult {
  server: string;
  /** Which round of a repeated run (1 when run once): each is compared within its round. */
  round?: number;
  subscribers: number;
  sent: number;
  deliveries: number;
  expected: number;
  deliveredPerSecond: number;
  /** Deliveries per CPU second the server used while sending: throughput per core. */
  deliveriesPerCpuSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  bytesPerConnection: number;
  /** Growth of the V8 heap after a full GC, per connection: live objects only (Node servers). */
  heapBytesPerConnection?: number;
}

/** The server under test on core 0; the generators on core 1. */
interface Running {
  name: string;
  pid: number;
  wsUrl: string;
  sendUrl: string;
  /** The server's output, for a Node server whose heap can be read (see heap.ts). */
  logTail?: () => string;
  stop(): Promise<void>;
}

async function startOurs(protocol: GeneratorProtocol): Promise<Running> {
  const cluster: Cluster = await startCluster({
    nodes: 1,
    dataDir: await mkdtemp(join(tmpdir(), "chat-bench-")),
    ports: "auto",
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    nodeEnv: { LOG_LEVEL: "warn", RATE_LIMIT_SENDS: "1000000", NODE_OPTIONS: INSPECTABLE },
  });
  const node = cluster.nodes[0];
  if (!node?.pid) throw new Error("no node");
  execFileSync("taskset", ["-a", "-cp", "0", String(node.pid)], { stdio: "ignore" });
  return {
    name: protocol === "actioncable" ? "chat node (ours), Action Cable" : "chat node (ours)",
    pid: node.pid,
    wsUrl: node.url.replace("http", "ws"),
    sendUrl: `${node.url}/api/rooms/chat/messages`,
    logTail: () => node.logTail(200),
    stop: () => cluster.stop(),
  };
}

/**
 * A peer server with its own Redis, on core 0. Every peer answers any HTTP request once it
 * listens (404 for GET /), broadcasts `POST /send { body }` to the room `chat`, and stores
 * nothing (our nodes commit each message to Postgres first).
 */
async function startPeerProcess(peer: {
  name: string;
  command: (port: number) => string[];
  env?: Record<string, string>;
  /** A Node server: its heap is read through the inspector. */
  node?: boolean;
}): Promise<Running> {
  const dir = await mkdtemp(join(tmpdir(), "chat-bench-peer-"));
  const redisPort = await findFreePort();
  const redis = await startRedis("redis-server", dir, dir, redisPort);
  const port = await findFreePort();
  const server = new ManagedProcess({
    name: peer.name,
    command: "taskset",
    args: ["-c", "0", ...peer.command(port)],
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      ...(peer.node ? { NODE_OPTIONS: INSPECTABLE } : {}),
      ...peer.env,
    },
    output: { file: join(dir, "peer.log") },
  });
  server.start();
  await server.waitUntil(
    "listening",
    async () => (await fetch(`http://127.0.0.1:${port}/`)).status > 0,
  );
  return {
    name: peer.name,
    pid: server.pid ?? 0,
    wsUrl: `ws://127.0.0.1:${port}`,
    sendUrl: `http://127.0.0.1:${port}/send`,
    ...(peer.node ? { logTail: () => server.logTail(200) } : {}),
    stop: async () => {
      await server.stop("SIGTERM", 5000);
      await redis.stop("SIGTERM", 5000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Node peer from this folder, its heap read through the inspector. */
const nodePeer = (name: string, script: string) => () =>
  startPeerProcess({
    name,
    command: (port) => [
      process.execPath,
      ...RUN_TYPESCRIPT,
      `bench/src/fanout/${script}`,
      `--port=${port}`,
    ],
    node: true,
  });

const startSocketIo = nodePeer("Socket.IO + redis-adapter", "socketio-server.ts");
/** The floor of any server on `ws`: `ws` alone (see ws-server.ts). */
const startBareWs = nodePeer("bare ws (no rooms, Redis or storage)", "ws-server.ts");

/**
 * Rails's Action Cable from Debian's packages (ruby-actioncable, puma) with its Redis adapter:
 * one Puma process (4 threads, Action Cable's event loop and worker pool) on core 0.
 */
const startRails = () =>
  startPeerProcess({
    name: "Rails Action Cable + Redis",
    command: (port) => ["puma", "-b", `tcp://127.0.0.1:${port}`, "-t", "4:4", "--quiet", RAILS_APP],
    env: { RACK_ENV: "production" },
  });

const RAILS_APP = join(REPO_ROOT, "bench/src/fanout/actioncable-server.ru");

const START: Record<PeerServer, () => Promise<Running>> = {
  ours: () => startOurs("phoenix"),
  "ours-cable": () => startOurs("actioncable"),
  "socket.io": startSocketIo,
  rails: startRails,
  ws: startBareWs,
};

/** Opens `options.subscribers` clients (generators on core 1) that join the room, and lets
 * the server settle for 2 s. */
async function joinSubscribers(
  server: PeerServer,
  running: Running,
  options: Omit<PeerOptions, "ratePerSecond" | "messages">,
): Promise<ChildProcess[]> {
  const rate = Math.min(options.subscribers, 400);
  const workers = startGenerators(
    {
      target: "one-node",
      ratePerSecond: rate,
      durationS: Math.max(1, options.subscribers / rate),
      generators: Math.min(options.generators, options.subscribers),
      protocol: PROTOCOL[server],
      generatorCores: "1",
    },
    running.wsUrl,
  );
  try {
    await waitForJoins(workers, options.subscribers, rate, options.say ?? (() => {}));
  } catch (error) {
    for (const worker of workers) worker.send({ type: "stop" });
    throw error;
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return workers;
}

/**
 * Starts `server`, runs `beforeJoin`, has the subscribers join, then runs `joined`; stops the
 * generators and the server whatever happens.
 */
export async function withJoinedPeer<Before, Result>(
  server: PeerServer,
  options: Omit<PeerOptions, "ratePerSecond" | "messages">,
  steps: {
    beforeJoin: (running: Running) => Promise<Before>;
    joined: (running: Running, workers: ChildProcess[], before: Before) => Promise<Result>;
  },
): Promise<Result> {
  const running = await START[server]();
  try {
    const before = await steps.beforeJoin(running);
    const workers = await joinSubscribers(server, running, options);
    try {
      return await steps.joined(running, workers, before);
    } finally {
      for (const worker of workers) worker.send({ type: "stop" });
    }
  } finally {
    await running.stop();
  }
}

/**
 * The fan-out scenario against one server process on one core: S clients join the room,
 * then messages go in at a steady rate. Ours stores every message in Postgres first.
 */
export function runPeer(server: PeerServer, options: PeerOptions): Promise<PeerResult> {
  const heap = (running: Running) =>
    running.logTail ? heapAfterGc(running.pid, running.logTail) : undefined;
  return withJoinedPeer(server, options, {
    beforeJoin: async (running) => ({ heapBefore: await heap(running), before: rss(running.pid) }),
    joined: async (running, workers, { heapBefore, before }) => {
      const after = rss(running.pid);
      const heapAfter = await heap(running);
      const prefix = `peer-${randomUUID().slice(0, 8)}-`;
      await setMarker(workers, prefix);
      const cpuBefore = cpuSeconds(running.pid);
      const { sentAt, failures } = await sendAtRate(running.sendUrl, prefix, options);
      if (sentAt.size < options.messages)
        throw new Error(`sends failed: ${JSON.stringify(failures)}`);
      const expected = options.subscribers * options.messages;
      await waitForArrivals(workers, expected);
      const arrivals = await arrivalsByMessage(workers);
      const cpu = cpuSeconds(running.pid) - cpuBefore;
      const figures = deliveryFigures(arrivals, sentAt);
      await reports(workers);
      return {
        server: running.name,
        subscribers: options.subscribers,
        sent: sentAt.size,
        expected,
        ...figures,
        deliveriesPerCpuSecond: Math.round(figures.deliveries / Math.max(cpu, 0.01)),
        bytesPerConnection: Math.round((after - before) / options.subscribers),
        ...(heapBefore !== undefined && heapAfter !== undefined
          ? { heapBytesPerConnection: Math.round((heapAfter - heapBefore) / options.subscribers) }
          : {}),
      };
    },
  });
}

/** Ours in the same round, over the peer's own protocol when that row is there. */
function oursFor(r: PeerResult, results: PeerResult[]): PeerResult | undefined {
  const sameRound = results.filter((o) => (o.round ?? 1) === (r.round ?? 1));
  return (
    (r.server.startsWith("Rails")
      ? sameRound.find((o) => o.server.includes("Action Cable"))
      : undefined) ?? sameRound.find((o) => o.server.includes("ours"))
  );
}

export function peerTable(results: PeerResult[]): string {
  return markdownTable(
    [
      "round",
      "server",
      "subscribers",
      "messages",
      "deliveries",
      "delivered/s",
      "deliveries per CPU s",
      "ours ÷ this",
      "p50 ms",
      "p99 ms",
      "bytes/conn",
      "this ÷ ours (memory)",
      "heap bytes/conn after GC",
      "this ÷ ours (heap)",
    ],
    results.map((r) => {
      const ours = oursFor(r, results);
      return [
        r.round ?? 1,
        r.server,
        r.subscribers.toLocaleString("en"),
        r.sent,
        `${r.deliveries.toLocaleString("en")}/${r.expected.toLocaleString("en")}`,
        r.deliveredPerSecond.toLocaleString("en"),
        r.deliveriesPerCpuSecond.toLocaleString("en"),
        ours ? (ours.deliveriesPerCpuSecond / r.deliveriesPerCpuSecond).toFixed(2) : "—",
        r.latencyMs.p50,
        r.latencyMs.p99,
        r.bytesPerConnection.toLocaleString("en"),
        ours ? (r.bytesPerConnection / ours.bytesPerConnection).toFixed(2) : "—",
        r.heapBytesPerConnection?.toLocaleString("en") ?? "—",
        ours?.heapBytesPerConnection && r.heapBytesPerConnection
          ? (r.heapBytesPerConnection / ours.heapBytesPerConnection).toFixed(2)
          : "—",
      ];
    }),
  );
}

/**
 * Over several rounds, each server's medians: its deliveries per CPU second, and the ratios
 * to ours taken within each round (this machine's speed drifts between rounds, not within).
 */
export function peerSummary(results: PeerResult[]): string {
  const servers = [...new Set(results.map((r) => r.server))];
  return markdownTable(
    [
      "server",
      "rounds",
      "deliveries per CPU s, median",
      "ours ÷ this, median (range)",
      "this ÷ ours (memory), median",
      "this ÷ ours (heap), median",
    ],
    servers.map((server) => {
      const rows = results.filter((r) => r.server === server);
      const speed = rows.flatMap((r) => {
        const ours = oursFor(r, results);
        return ours ? [ours.deliveriesPerCpuSecond / r.deliveriesPerCpuSecond] : [];
      });
      const memory = rows.flatMap((r) => {
        const ours = oursFor(r, results);
        return ours ? [r.bytesPerConnection / ours.bytesPerConnection] : [];
      });
      const heap = rows.flatMap((r) => {
        const ours = oursFor(r, results);
        return ours?.heapBytesPerConnection && r.heapBytesPerConnection
          ? [r.heapBytesPerConnection / ours.heapBytesPerConnection]
          : [];
      });
      return [
        server,
        rows.length,
        Math.round(median(rows.map((r) => r.deliveriesPerCpuSecond))).toLocaleString("en"),
        medianAndRange(speed),
        memory.length ? median(memory).toFixed(2) : "—",
        heap.length ? median(heap).toFixed(2) : "—",
      ];
    }),
  );
}

export function peerPlot(results: PeerResult[]): string {
  const rounds = results.some((r) => (r.round ?? 1) > 1);
  return barChart(
    `Deliveries per CPU second, one core each${rounds ? " (round in brackets)" : ""}`,
    "deliveries/CPU s",
    results.map((r) => ({
      label: rounds ? `${r.server} (${r.round})` : r.server,
      value: r.deliveriesPerCpuSecond,
    })),
  );
}
