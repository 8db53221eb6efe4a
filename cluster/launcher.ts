import { chmodSync, cpSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildClient } from "../static/build.ts";
import { ensureBinaries } from "./binaries.ts";
import { startEdge } from "./edge.ts";
import { GatewayProcess } from "./gateway.ts";
import {
  type PostgresSetup,
  postgresUrl,
  promote,
  startPrimary,
  startReplica,
} from "./postgres.ts";
import { ManagedProcess, RUN_TYPESCRIPT } from "./process.ts";
import { LocalPrometheus, prometheusInstalled } from "./prometheus.ts";
import { startRedis } from "./redis.ts";

/** The repository root: nodes run from here so the TypeScript loader and workspace packages resolve. */
export const REPO_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

export interface ClusterPorts {
  redis: number;
  primary: number;
  replica: number;
  /** Nodes listen on firstNode, firstNode + 1, … */
  firstNode: number;
  edge: number;
  edgeAdmin: number;
  gateway: number;
  gatewayAdmin: number;
  prometheus: number;
}

export const DEFAULT_PORTS: ClusterPorts = {
  redis: 6379,
  primary: 5432,
  replica: 5433,
  firstNode: 4001,
  edge: 8080,
  edgeAdmin: 8081,
  gateway: 8000,
  gatewayAdmin: 8001,
  prometheus: 9090,
};

export interface ClusterOptions {
  nodes?: number;
  dataDir?: string;
  /** Fixed ports (defaults above), or "auto": free ports picked for a cluster of its own. */
  ports?: Partial<ClusterPorts> | "auto";
  /** Extra environment for every node. */
  nodeEnv?: Record<string, string>;
  /** The node's stdout/stderr: this terminal (the CLI), or <dataDir>/logs/node-<i>.log (tests). */
  nodeOutput?: "inherit" | "pipe-to-file";
  /** The node entry point, relative to the repository root. */
  nodeEntry?: string;
  /** Also start the gateway in front of the nodes (workers: GATEWAY_WORKERS, default 2). */
  gateway?: boolean | { workers?: number; env?: Record<string, string> };
  /** Also start the edge (the public entry) in front of the gateway, or of the first node. */
  edge?: boolean;
  /** Also start Prometheus (when installed) scraping everything the launcher started. */
  prometheus?: boolean | { scrapeInterval?: string };
  /** Delete dataDir on stop (tests use a temp folder). */
  removeDataOnStop?: boolean;
  /** Copy the processes' logs here on stop, before dataDir is deleted (benchmark runs). */
  keepLogsIn?: string;
  log?: (line: string) => void;
}

export interface NodeHandle {
  readonly index: number;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** The end of the node's log (empty when it writes to the terminal). */
  logTail(lines?: number): string;
}

/** Where each service of a running cluster listens, and how to break and mend it. */
export interface Cluster {
  readonly dataDir: string;
  readonly redisUrl: string;
  readonly primaryUrl: string;
  readonly replicaUrl: string;
  readonly nodes: readonly NodeHandle[];
  /** The edge's URL when it was asked for, and its admin port's (/metrics, /healthz). */
  readonly edgeUrl: string | undefined;
  readonly edgeAdminUrl: string | undefined;
  /** The gateway's URL when it was asked for, and its admin port's (aggregated /metrics). */
  readonly gatewayUrl: string | undefined;
  readonly gatewayAdminUrl: string | undefined;
  /** The gateway's primary process (its workers are its children). */
  readonly gatewayPid: number | undefined;
  /** Prometheus's URL when it was asked for and is installed. */
  readonly prometheusUrl: string | undefined;
  nodeUrl(index: number): string;
  startNode(index: number): Promise<void>;
  stopNode(index: number, signal?: NodeJS.Signals): Promise<void>;
  addNode(): Promise<NodeHandle>;
  stopRedis(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP stalls Redis with its connections open (a hung server); SIGCONT resumes it. */
  signalRedis(signal: "SIGSTOP" | "SIGCONT"): void;
  startRedis(): Promise<void>;
  stopReplica(): Promise<void>;
  startReplica(): Promise<void>;
  stopPrimary(): Promise<void>;
  startPrimary(): Promise<void>;
  /** Promotes the replica (what an operator does once the primary is lost). */
  promoteReplica(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts Redis, the Postgres primary and replica, then the nodes (in parallel), all ready. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const log = options.log ?? (() => {});
  const dataDir = options.dataDir ?? join(REPO_ROOT, ".data", "cluster");
  const logDir = join(dataDir, "logs");
  mkdirSync(logDir, { recursive: true });
  chmodSync(dataDir, 0o755); // the postgres user must reach its folders inside
  const ports = await resolvePorts(options.ports, options.nodes ?? 4);
  const binaries = ensureBinaries(log);
  const pgSetup: PostgresSetup = {
    bin: binaries.postgres,
    dataDir,
    logDir,
    runAs: process.getuid?.() === 0 ? "postgres" : undefined,
  };
  const cluster = new LocalCluster({
    options,
    dataDir,
    logDir,
    ports,
    pgSetup,
    redisBinary: binaries.redis,
    log,
  });
  try {
    await cluster.boot(options.nodes ?? 4);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

interface ClusterParts {
  options: ClusterOptions;
  dataDir: string;
  logDir: string;
  ports: ClusterPorts & { nodes?: number[] };
  pgSetup: PostgresSetup;
  redisBinary: string;
  log: (line: string) => void;
}

class LocalCluster implements Cluster {
  readonly dataDir: string;
  readonly redisUrl: string;
  readonly primaryUrl: string;
  readonly replicaUrl: string;
  readonly #nodes: ChatNodeProcess[] = [];
  readonly #parts: ClusterParts;
  #redis: ManagedProcess | undefined;
  #primary: ManagedProcess | undefined;
  #replica: ManagedProcess | undefined;
  #edge: ManagedProcess | undefined;
  #gateway: GatewayProcess | undefined;
  #prometheus: LocalPrometheus | undefined;
  #stopped = false;

  constructor(parts: ClusterParts) {
    this.#parts = parts;
    this.dataDir = parts.dataDir;
    this.redisUrl = `redis://127.0.0.1:${parts.ports.redis}`;
    this.primaryUrl = postgresUrl(parts.ports.primary);
    this.replicaUrl = postgresUrl(parts.ports.replica);
  }

  get nodes(): readonly NodeHandle[] {
    return this.#nodes;
  }

  get gatewayUrl(): string | undefined {
    return this.#gateway?.url;
  }

  get gatewayAdminUrl(): string | undefined {
    return this.#gateway ? `http://127.0.0.1:${this.#parts.ports.gatewayAdmin}` : undefined;
  }

  get gatewayPid(): number | undefined {
    return this.#gateway?.pid;
  }

  get prometheusUrl(): string | undefined {
    return this.#prometheus?.url;
  }

  get edgeUrl(): string | undefined {
    return this.#edge ? `http://127.0.0.1:${this.#parts.ports.edge}` : undefined;
  }

  get edgeAdminUrl(): string | undefined {
    return this.#edge ? `http://127.0.0.1:${this.#parts.ports.edgeAdmin}` : undefined;
  }

  async boot(nodeCount: number): Promise<void> {
    const { log, options } = this.#parts;
    await Promise.all([this.startRedis(), this.startPrimary(), buildClient()]);
    log(`redis on ${this.redisUrl}, postgres primary on ${this.primaryUrl}`);
    await this.startReplica();
    log(`postgres replica on ${this.replicaUrl}`);
    await Promise.all(Array.from({ length: nodeCount }, () => this.addNode()));
    if (options.gateway) await this.#startGateway(options.gateway);
    if (options.edge) await this.#startEdge();
    if (options.prometheus) await this.#startPrometheus(options.prometheus);
  }

  async #startPrometheus(options: true | { scrapeInterval?: string }): Promise<void> {
    const { ports, dataDir, logDir, log } = this.#parts;
    if (!prometheusInstalled()) {
      log("prometheus is not installed (apt-get install prometheus); not starting it");
      return;
    }
    this.#prometheus = new LocalPrometheus({
      repoRoot: REPO_ROOT,
      dataDir,
      logDir,
      port: ports.prometheus,
      ...(options === true ? {} : options),
    });
    this.#updateTargets();
    await this.#prometheus.start();
    log(`prometheus on ${this.prometheusUrl}`);
  }

  #updateTargets(): void {
    const ports = this.#parts.ports;
    const prometheus = this.#prometheus;
    if (!prometheus) return;
    prometheus.setTargets(
      "node",
      this.#nodes.map((node) => `127.0.0.1:${node.port}`),
    );
    prometheus.setTargets("gateway", this.#gateway ? [`127.0.0.1:${ports.gatewayAdmin}`] : []);
    prometheus.setTargets("edge", this.#edge ? [`127.0.0.1:${ports.edgeAdmin}`] : []);
  }

  async #startGateway(
    options: true | { workers?: number; env?: Record<string, string> },
  ): Promise<void> {
    const { ports, logDir, dataDir } = this.#parts;
    const settings = options === true ? {} : options;
    this.#gateway = new GatewayProcess({
      repoRoot: REPO_ROOT,
      port: ports.gateway,
      adminPort: ports.gatewayAdmin,
      dataDir,
      logDir,
      output: this.#parts.options.nodeOutput ?? "inherit",
      workers: settings.workers ?? 2,
      // Loopback has a whole /8: each worker binds its own ports on these (see SourcePorts).
      env: { SOURCE_ADDRESSES: "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", ...settings.env },
    });
    this.#gateway.setUpstreams(this.#nodes.map((node) => `127.0.0.1:${node.port}`));
    await this.#gateway.start();
    this.#parts.log(`gateway on ${this.gatewayUrl}`);
  }

  /** The edge's origin is the gateway when there is one, else the first node. */
  async #startEdge(): Promise<void> {
    const { ports, logDir, options } = this.#parts;
    this.#edge = await startEdge({
      repoRoot: REPO_ROOT,
      port: ports.edge,
      adminPort: ports.edgeAdmin,
      originUrl: this.gatewayUrl ?? this.nodeUrl(0),
      logDir,
      output: options.nodeOutput ?? "inherit",
    });
    this.#parts.log(`edge on ${this.edgeUrl}`);
  }

  nodeUrl(index: number): string {
    return this.#node(index).url;
  }

  async startNode(index: number): Promise<void> {
    await this.#node(index).start();
  }

  async stopNode(index: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.#node(index).process.stop(signal);
  }

  async addNode(): Promise<NodeHandle> {
    const index = this.#nodes.length;
    const port = this.#parts.ports.nodes?.[index] ?? this.#parts.ports.firstNode + index;
    const node = new ChatNodeProcess(index, port, this.#nodeEnv(index, port), this.#parts);
    this.#nodes.push(node);
    await node.start();
    this.#gateway?.setUpstreams(this.#nodes.map((n) => `127.0.0.1:${n.port}`));
    this.#updateTargets();
    this.#parts.log(`node-${index} on ${node.url}`);
    return node;
  }

  async startRedis(): Promise<void> {
    const { redisBinary, dataDir, logDir, ports } = this.#parts;
    this.#redis = await startRedis(redisBinary, dataDir, logDir, ports.redis);
  }

  async stopRedis(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.#redis?.stop(signal);
  }

  signalRedis(signal: "SIGSTOP" | "SIGCONT"): void {
    this.#redis?.kill(signal);
  }

  async startPrimary(): Promise<void> {
    this.#primary = await startPrimary(this.#parts.pgSetup, this.#parts.ports.primary);
  }

  /** SIGINT is Postgres's fast shutdown: clients are disconnected, nothing committed is lost. */
  async stopPrimary(): Promise<void> {
    await this.#primary?.stop("SIGINT");
  }

  async startReplica(): Promise<void> {
    const { pgSetup, ports } = this.#parts;
    this.#replica = await startReplica(pgSetup, ports.replica, ports.primary);
  }

  async stopReplica(): Promise<void> {
    await this.#replica?.stop("SIGINT");
  }

  async promoteReplica(): Promise<void> {
    await promote(this.#parts.ports.replica);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#prometheus?.stop();
    await this.#edge?.stop("SIGTERM", 5000);
    await this.#gateway?.stop();
    await Promise.all(this.#nodes.map((node) => node.process.stop("SIGTERM", 5000)));
    await this.stopReplica();
    await this.stopPrimary();
    await this.stopRedis();
    const { keepLogsIn, removeDataOnStop } = this.#parts.options;
    if (keepLogsIn) cpSync(join(this.dataDir, "logs"), keepLogsIn, { recursive: true });
    if (removeDataOnStop) rmSync(this.dataDir, { recursive: true, force: true });
  }

  #node(index: number): ChatNodeProcess {
    const node = this.#nodes[index];
    if (!node) throw new Error(`no node ${index}; the cluster has ${this.#nodes.length}`);
    return node;
  }

  #nodeEnv(index: number, port: number): NodeJS.ProcessEnv {
    return {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      NODE_ID: `node-${index}`,
      DATABASE_URL: this.primaryUrl,
      DATABASE_REPLICA_URL: this.replicaUrl,
      REDIS_URL: this.redisUrl,
      ...this.#parts.options.nodeEnv,
    };
  }
}

/** One chat node process; restartable on the same port. */
class ChatNodeProcess implements NodeHandle {
  readonly index: number;
  readonly port: number;
  readonly url: string;
  readonly process: ManagedProcess;

  constructor(index: number, port: number, env: NodeJS.ProcessEnv, parts: ClusterParts) {
    this.index = index;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    const { nodeOutput = "inherit", nodeEntry = "services/src/main.ts" } = parts.options;
    this.process = new ManagedProcess({
      name: `node-${index}`,
      command: process.execPath,
      args: [...RUN_TYPESCRIPT, nodeEntry],
      cwd: REPO_ROOT,
      env,
      output:
        nodeOutput === "inherit" ? "inherit" : { file: join(parts.logDir, `node-${index}.log`) },
    });
  }

  get running(): boolean {
    return this.process.running;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  logTail(lines?: number): string {
    return this.process.logTail(lines);
  }

  async start(): Promise<void> {
    this.process.start();
    await this.process.waitUntil(
      "ready",
      async () => (await fetch(`${this.url}/readyz`)).status === 200,
    );
  }
}

async function resolvePorts(
  requested: ClusterOptions["ports"],
  nodes: number,
): Promise<ClusterPorts & { nodes?: number[] }> {
  if (requested !== "auto") return { ...DEFAULT_PORTS, ...requested };
  // Extra node ports leave room for addNode().
  const free = await Promise.all(Array.from({ length: 8 + nodes + 4 }, findFreePort));
  const [
    redis = 0,
    primary = 0,
    replica = 0,
    edge = 0,
    edgeAdmin = 0,
    gateway = 0,
    gatewayAdmin = 0,
    prometheus = 0,
    ...nodePorts
  ] = free;
  return {
    redis,
    primary,
    replica,
    edge,
    edgeAdmin,
    gateway,
    gatewayAdmin,
    prometheus,
    firstNode: nodePorts[0] ?? 0,
    nodes: nodePorts,
  };
}

/** A TCP port free on 127.0.0.1 right now. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}
