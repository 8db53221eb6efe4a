import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Cluster, startCluster } from "../../../cluster/launcher.ts";
import { RUN_TYPESCRIPT } from "../../../cluster/process.ts";
import { cpuSeconds, lineChart, markdownTable, percentile, type Series } from "../output.ts";
import type { ClientCounts, GeneratorProtocol, WorkerConfig, WorkerReport } from "./worker.ts";

/** Where the clients connect: through the gateway to 4 nodes, or one node on one core and 1 GB. */
export type RampTarget = "gateway" | "one-node";

export interface RampOptions {
  target: RampTarget;
  ratePerSecond: number;
  durationS: number;
  /** Generator processes (each from its own 127.0.0.x address, under the 20,000-file limit). */
  generators: number;
  heartbeatMs?: number;
  protocol?: GeneratorProtocol;
  /** The gateway target's shape: nodes behind it and gateway worker processes (4 and 4). */
  gatewayNodes?: number;
  gatewayWorkers?: number;
  /** Pins the generators (taskset); one-node runs keep them off the node's core. */
  generatorCores?: string;
  /** Copies the nodes', gateway's, Postgres's and Redis's logs here when the run ends. */
  keepLogsIn?: string;
  say?: (line: string) => void;
}

export interface RampResult extends ClientCounts {
  /** Why clients failed, with how many each. */
  errorReasons: Record<string, number>;
  target: RampTarget;
  ratePerSecond: number;
  durationS: number;
  /** One message sent while all are connected, until each client has it (ms). */
  /** `error` says why no message went out (the run is reported all the same). */
  broadcast: { received: number; p50: number; p99: number; max: number; error?: string };
  cpuSeconds: Record<string, number>;
  nodeRssMb: number[];
  /** Accepted connections, one sample a second. */
  samples: Array<[number, number]>;
}

/**
 * The thesis's server table (8.2): ramp new WebSocket clients at R per second for D seconds,
 * each joining `chat` and heartbeating, then time one message reaching all of them.
 */
export async function runRamp(options: RampOptions): Promise<RampResult> {
  const say = options.say ?? (() => {});
  const cluster = await startTarget(options.target, options);
  const url = (cluster.gatewayUrl ?? cluster.nodeUrl(0)).replace("http", "ws");
  const workers = startGenerators(options, url);
  try {
    const samples = await rampUp(options, workers, say);
    const before = await reports(workers);
    const broadcast = await timeBroadcast(cluster, workers, sum(before, "accepted"));
    const after = await reports(workers);
    return {
      target: options.target,
      ratePerSecond: options.ratePerSecond,
      durationS: options.durationS,
      attempted: sum(after, "attempted"),
      accepted: sum(after, "accepted"),
      errors: sum(after, "errors"),
      errorReasons: errorReasons(after),
      closed: sum(after, "closed"),
      bytesSent: sum(after, "bytesSent"),
      bytesReceived: sum(after, "bytesReceived"),
      broadcast,
      cpuSeconds: processCpu(cluster, after),
      nodeRssMb: await nodeMemory(cluster),
      samples,
    };
  } finally {
    for (const worker of workers) worker.send({ type: "stop" });
    await cluster.stop();
  }
}

export async function startTarget(
  target: RampTarget,
  shape: { gatewayNodes?: number; gatewayWorkers?: number; keepLogsIn?: string } = {},
): Promise<Cluster> {
  const common = {
    dataDir: await mkdtemp(join(tmpdir(), "chat-bench-")),
    ports: "auto" as const,
    nodeOutput: "pipe-to-file" as const,
    removeDataOnStop: true,
    keepLogsIn: shape.keepLogsIn,
  };
  if (target === "gateway") {
    // Each proxied client costs the gateway two sockets: each worker must stay under the
    // 20,000-file limit, as must each node.
    return startCluster({
      ...common,
      nodes: shape.gatewayNodes ?? 4,
      gateway: { workers: shape.gatewayWorkers ?? 4 },
      nodeEnv: { LOG_LEVEL: "warn" },
    });
  }
  const cluster = await startCluster({
    ...common,
    nodes: 1,
    nodeEnv: { LOG_LEVEL: "warn", NODE_OPTIONS: "--max-old-space-size=1024" },
  });
  // The thesis's t2.micro: one core (every thread of the node) and a 1 GB heap.
  const pid = cluster.nodes[0]?.pid;
  if (pid) execFileSync("taskset", ["-a", "-cp", "0", String(pid)], { stdio: "ignore" });
  return cluster;
}

/** The generators' nice value: they get what CPU the system under test leaves. */
const GENERATOR_NICENESS = 10;

/** Generator i connects to urls[i mod urls.length]. */
export function startGenerators(options: RampOptions, urls: string | string[]): ChildProcess[] {
  const perWorker = Math.ceil((options.ratePerSecond * options.durationS) / options.generators);
  const targets = [urls].flat();
  return Array.from({ length: options.generators }, (_, i) => {
    // Below the system's priority (nice), as clients on machines of their own would be: on a
    // saturated host, an equal share for 8 generators starves the nodes and the gateway.
    const worker = fork(new URL("./worker.ts", import.meta.url), [], {
      execPath: "nice",
      execArgv: ["-n", String(GENERATOR_NICENESS), process.execPath, ...RUN_TYPESCRIPT],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    // Off the node's core when the node is pinned: the generator must not measure itself.
    const cores = options.generatorCores ?? (options.target === "one-node" ? "1" : undefined);
    if (cores && worker.pid)
      execFileSync("taskset", ["-a", "-cp", cores, String(worker.pid)], { stdio: "ignore" });
    const config: WorkerConfig = {
      url: targets[i % targets.length] as string,
      clients: perWorker,
      ratePerSecond: options.ratePerSecond / options.generators,
      sourceAddress: `127.0.0.${10 + i}`,
      heartbeatMs: options.heartbeatMs ?? 25_000,
      protocol: options.protocol ?? "phoenix",
    };
    worker.send({ type: "start", config });
    return worker;
  });
}

function report(worker: ChildProcess, arrivals: boolean): Promise<WorkerReport> {
  return new Promise((resolve) => {
    const onMessage = (message: { type: string; report: WorkerReport }) => {
      if (message.type !== "report") return;
      worker.off("message", onMessage);
      resolve(message.report);
    };
    worker.on("message", onMessage);
    worker.send({ type: "report", arrivals });
  });
}

/** Every generator's counts; with `arrivals`, every marked arrival's time too (costly). */
export const reports = (workers: ChildProcess[], options: { arrivals?: boolean } = {}) =>
  Promise.all(workers.map((worker) => report(worker, options.arrivals === true)));

/**
 * Waits until the generators have seen `expected` marked arrivals, or none came for 60 s
 * (clients lost, or a system too far behind); polls counts only.
 */
export async function waitForArrivals(workers: ChildProcess[], expected: number): Promise<void> {
  let count = 0;
  let progressAt = Date.now();
  while (Date.now() - progressAt < 60_000) {
    const now = sum(await reports(workers), "arrivalCount");
    if (now >= expected) return;
    if (now > count) progressAt = Date.now();
    count = now;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Why clients failed, over all generators. */
export function errorReasons(list: WorkerReport[]): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const r of list)
    for (const [reason, count] of Object.entries(r.errorReasons))
      merged[reason] = (merged[reason] ?? 0) + count;
  return merged;
}

/** Tells every generator which message bodies to time, and waits until all have heard. */
export async function setMarker(workers: ChildProcess[], prefix: string): Promise<void> {
  for (const worker of workers) worker.send({ type: "marker", prefix });
  await reports(workers);
}
export const sum = (list: WorkerReport[], key: keyof ClientCounts | "cpuMs" | "arrivalCount") =>
  list.reduce((total, r) => total + r[key], 0);

/**
 * After the schedule (and 10 s), 30 s without a new join ends a wait for joins: a saturated
 * machine answers late rather than never, but a wait must end.
 */
export const joinsStalled = (elapsedS: number, scheduleS: number, sinceJoinS: number) =>
  elapsedS >= scheduleS + 10 && sinceJoinS > 30;

/** Waits out the ramp, printing progress every second; returns accepted connections over time. */
async function rampUp(
  options: RampOptions,
  workers: ChildProcess[],
  say: (line: string) => void,
): Promise<Array<[number, number]>> {
  const samples: Array<[number, number]> = [];
  const total = options.ratePerSecond * options.durationS;
  const started = performance.now();
  // After the ramp, joins still queued are waited for while they keep being answered (a
  // saturated machine answers late, not never), up to half the ramp's length more.
  const settleUntil = options.durationS + Math.max(10, options.durationS / 2);
  let progressAt = 0;
  for (let second = 0; second < settleUntil; ) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = await reports(workers);
    const accepted = sum(now, "accepted");
    second = Math.round((performance.now() - started) / 1000);
    if (accepted > (samples.at(-1)?.[1] ?? 0)) progressAt = second;
    samples.push([second, accepted]);
    say(
      `  ${options.target} ${options.ratePerSecond}/s  t=${second}s  attempted ${sum(now, "attempted")}  accepted ${accepted}  errors ${sum(now, "errors")}`,
    );
    if (second >= options.durationS && accepted + sum(now, "errors") >= total) break;
    if (joinsStalled(second, options.durationS, second - progressAt)) break;
  }
  return samples;
}

/** Sends one message and measures, on the shared monotonic clock, when each client had it. */
async function timeBroadcast(
  cluster: Cluster,
  workers: ChildProcess[],
  accepted: number,
): Promise<RampResult["broadcast"]> {
  const prefix = `marker-${randomUUID()}-`;
  const marker = `${prefix}0`;
  await setMarker(workers, prefix);
  const sentAt = process.hrtime.bigint();
  const error = await sendMarker(cluster.gatewayUrl ?? cluster.nodeUrl(0), marker);
  if (error) return { received: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN, error };
  await waitForArrivals(workers, accepted);
  const arrivals = (await reports(workers, { arrivals: true })).flatMap((r) =>
    (r.arrivals["0"] ?? []).map(BigInt),
  );
  const ms = arrivals.map((t) => Number(t - sentAt) / 1e6).sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    received: ms.length,
    p50: round(percentile(ms, 0.5)),
    p99: round(percentile(ms, 0.99)),
    max: round(ms.at(-1) ?? Number.NaN),
  };
}

/**
 * Sends the timed message; retried with the same client_id (stored once) while the system
 * answers 5xx, since a saturated run is still worth reporting. Returns why it failed, if so.
 */
async function sendMarker(base: string, marker: string): Promise<string | undefined> {
  let failure = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const response = await fetch(`${base}/api/rooms/chat/messages`, {
        method: "POST",
        body: JSON.stringify({ body: marker, client_id: marker }),
        signal: AbortSignal.timeout(30_000), // an overloaded system must not hang the run
      });
      if (response.ok) return undefined;
      failure = `the broadcast send failed: ${response.status} ${await response.text()}`;
      if (response.status < 500) break;
    } catch (error) {
      failure = `the broadcast send failed: ${String(error)}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return failure;
}

/** CPU seconds of the nodes (together), the gateway (primary and workers) and the generators. */
export interface GroupCpu {
  nodes: number;
  gateway: number;
  generators: number;
}

/**
 * What each group has used so far (servers from /proc, generators by their own count, to the
 * microsecond); subtract two readings for a phase.
 */
export async function groupCpu(
  cluster: Cluster,
  generators: ChildProcess[] = [],
): Promise<GroupCpu> {
  const of = (pids: Array<number | undefined>) =>
    pids.reduce<number>((total, pid) => total + (pid ? cpuSeconds(pid) : 0), 0);
  return {
    nodes: of(cluster.nodes.map((node) => node.pid)),
    gateway: of([cluster.gatewayPid]),
    generators: sum(await reports(generators), "cpuMs") / 1000,
  };
}

/** The CPU seconds each group used between two readings, to the hundredth. */
export function cpuBetween(before: GroupCpu, after: GroupCpu): GroupCpu {
  const used = (key: keyof GroupCpu) => Math.round((after[key] - before[key]) * 100) / 100;
  return { nodes: used("nodes"), gateway: used("gateway"), generators: used("generators") };
}

function processCpu(cluster: Cluster, generators: WorkerReport[]): Record<string, number> {
  const cpu: Record<string, number> = {};
  for (const node of cluster.nodes) if (node.pid) cpu[`node-${node.index}`] = cpuSeconds(node.pid);
  if (cluster.gatewayPid) cpu.gateway = cpuSeconds(cluster.gatewayPid);
  cpu.generators = Math.round(generators.reduce((total, r) => total + r.cpuMs, 0)) / 1000;
  return cpu;
}

async function nodeMemory(cluster: Cluster): Promise<number[]> {
  return Promise.all(
    cluster.nodes.map(async (node) => {
      const text = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(10_000) })
        .then((response) => response.text())
        .catch(() => ""); // a node too busy to answer shows 0 rather than ending the run
      const line = text.split("\n").find((l) => l.startsWith("chat_process_resident_memory_bytes"));
      return Math.round(Number(line?.split(" ").at(-1) ?? 0) / 1e6);
    }),
  );
}

export function rampTable(results: RampResult[]): string {
  return markdownTable(
    [
      "target",
      "rate/s",
      "duration s",
      "attempted",
      "accepted",
      "errors",
      "bytes sent",
      "bytes received",
      "broadcast p50 ms",
      "p99 ms",
      "max ms",
      "received",
      "CPU s (nodes / gateway / generators)",
      "node RSS MB",
    ],
    results.map((r) => {
      const nodesCpu = Object.entries(r.cpuSeconds)
        .filter(([k]) => k.startsWith("node"))
        .reduce((total, [, v]) => total + v, 0);
      return [
        r.target,
        r.ratePerSecond,
        r.durationS,
        r.attempted,
        r.accepted,
        r.errors,
        r.bytesSent.toLocaleString("en"),
        r.bytesReceived.toLocaleString("en"),
        r.broadcast.p50,
        r.broadcast.p99,
        r.broadcast.max,
        r.broadcast.error ?? `${r.broadcast.received}/${r.accepted}`,
        `${nodesCpu.toFixed(1)} / ${(r.cpuSeconds.gateway ?? 0).toFixed(1)} / ${(r.cpuSeconds.generators ?? 0).toFixed(1)}`,
        r.nodeRssMb.join(", "),
      ];
    }),
  );
}

export function rampPlot(results: RampResult[]): string {
  const series: Series[] = results.map((r) => ({
    name: `${r.target} ${r.ratePerSecond}/s`,
    points: r.samples,
    dashed: r.target === "one-node",
  }));
  return lineChart(
    "Accepted WebSocket clients during the ramp",
    "seconds",
    "clients joined to chat",
    series,
  );
}
