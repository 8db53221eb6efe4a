import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Cluster, startCluster } from "../../../cluster/launcher.ts";
import { lineChart, markdownTable, percentile } from "../output.ts";
import {
  cpuBetween,
  errorReasons,
  type GroupCpu,
  groupCpu,
  joinsStalled,
  reports,
  setMarker,
  startGenerators,
  sum,
  waitForArrivals,
} from "../ramp/ramp.ts";

export interface FanoutOptions {
  nodes: number;
  subscribers: number;
  /** Messages sent into the room per second, and how many in all. */
  ratePerSecond: number;
  messages: number;
  generators: number;
  /** New subscribers per second while the room fills. */
  joinRate: number;
  /** Copies the nodes', gateway's, Postgres's and Redis's logs here when the run ends. */
  keepLogsIn?: string;
  /**
   * Subscribers connect to the nodes themselves (generator i to node i mod N), as behind an
   * L4 balancer, instead of through the gateway: its relay costs CPU that 2 cores lack at
   * 100,000 subscribers. Sends go to the first node.
   */
  direct?: boolean;
  say?: (line: string) => void;
}

/** A gateway worker holds two sockets per client under the 20,000-file limit (MAX_CONNECTIONS 9000). */
const CLIENTS_PER_GATEWAY_WORKER = 8000;

export interface FanoutResult {
  nodes: number;
  via: "gateway" | "direct";
  subscribers: number;
  /** Subscribers that joined (the deliveries expected are theirs) and why the rest did not. */
  joined: number;
  failedJoins: Record<string, number>;
  /** Sends the system refused or never answered, by reason (`sent` counts the rest). */
  failedSends: Record<string, number>;
  sendRate: number;
  sent: number;
  deliveries: number;
  expected: number;
  /** Deliveries per second from the first send to the last arrival. */
  deliveredPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Resident memory the idle connections added, per connection. */
  bytesPerConnection: { nodes: number; gateway: number };
  /** CPU seconds each group used from the first send until the arrivals were in: whether
   * the figures measure the design or a saturated machine. */
  cpuSeconds: GroupCpu;
}

/**
 * Throughput and latency into one room with S subscribers (Phoenix WebSocket clients through
 * the gateway to N nodes), and the memory each idle connection costs the nodes and the gateway.
 */
export async function runFanout(options: FanoutOptions): Promise<FanoutResult> {
  const say = options.say ?? (() => {});
  const cluster = await startCluster({
    nodes: options.nodes,
    dataDir: await mkdtemp(join(tmpdir(), "chat-bench-")),
    ports: "auto",
    ...(options.direct
      ? {}
      : {
          gateway: {
            workers: Math.max(2, Math.ceil(options.subscribers / CLIENTS_PER_GATEWAY_WORKER)),
          },
        }),
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    keepLogsIn: options.keepLogsIn,
    nodeEnv: { LOG_LEVEL: "warn", RATE_LIMIT_SENDS: "1000000" },
  });
  const entry = cluster.gatewayUrl ?? cluster.nodeUrl(0);
  const subscribeTo = options.direct
    ? cluster.nodes.map((node) => node.url.replace("http", "ws"))
    : [entry.replace("http", "ws")];
  const before = memory(cluster);
  const rate = Math.min(options.subscribers, options.joinRate);
  const workers = startGenerators(
    {
      target: "gateway",
      ratePerSecond: rate,
      durationS: Math.max(1, options.subscribers / rate),
      generators: Math.min(options.generators, options.subscribers),
    },
    subscribeTo,
  );
  try {
    const joins = await settleJoins(workers, options.subscribers, rate, say);
    if (joins.joined === 0)
      throw new Error(`no subscriber joined: ${JSON.stringify(joins.reasons)}`);
    if (joins.failed > 0) say(`  ${joins.failed} joins failed: ${JSON.stringify(joins.reasons)}`);
    await new Promise((resolve) => setTimeout(resolve, 2000)); // let memory settle
    const after = memory(cluster);
    const prefix = `fan-${randomUUID().slice(0, 8)}-`;
    await setMarker(workers, prefix);
    const cpuBefore = await groupCpu(cluster, workers);
    const { sentAt, failures } = await sendAtRate(
      `${entry}/api/rooms/chat/messages`,
      prefix,
      options,
    );
    if (sentAt.size === 0) throw new Error(`every send failed: ${JSON.stringify(failures)}`);
    const expected = joins.joined * sentAt.size;
    await waitForArrivals(workers, expected);
    // Read before the arrivals are handed over: at 100,000 subscribers that costs the
    // generators seconds of their own.
    const cpuSeconds = cpuBetween(cpuBefore, await groupCpu(cluster, workers));
    const figures = deliveryFigures(await arrivalsByMessage(workers), sentAt);
    return {
      nodes: options.nodes,
      via: options.direct ? "direct" : "gateway",
      subscribers: options.subscribers,
      joined: joins.joined,
      failedJoins: joins.reasons,
      failedSends: failures,
      sendRate: options.ratePerSecond,
      sent: sentAt.size,
      expected,
      ...figures,
      bytesPerConnection: {
        nodes: Math.round((after.nodes - before.nodes) / joins.joined),
        gateway: Math.round((after.gateway - before.gateway) / joins.joined),
      },
      cpuSeconds,
    };
  } finally {
    for (const worker of workers) worker.send({ type: "stop" });
    await cluster.stop();
  }
}

export interface JoinOutcome {
  joined: number;
  failed: number;
  /** Why joins failed, with how many each. */
  reasons: Record<string, number>;
}

/**
 * Waits until every subscriber has joined or failed. A saturated machine answers joins late,
 * not never: after the schedule, waiting goes on while joins keep arriving (30 s without one
 * ends it), so one failed join out of 100,000 is reported instead of ending the run.
 */
export async function settleJoins(
  workers: ReturnType<typeof startGenerators>,
  subscribers: number,
  joinRate: number,
  say: (line: string) => void,
): Promise<JoinOutcome> {
  const started = Date.now();
  const scheduleS = subscribers / joinRate;
  const deadline = started + 120_000 + 2000 * scheduleS;
  let progressAt = started;
  let last = -1;
  for (;;) {
    const now = await reports(workers);
    const outcome = { joined: sum(now, "accepted"), failed: sum(now, "errors") };
    if (outcome.joined > last) progressAt = Date.now();
    last = outcome.joined;
    const seconds = (at: number) => (Date.now() - at) / 1000;
    const stalled = joinsStalled(seconds(started), scheduleS, seconds(progressAt));
    const settled =
      outcome.joined + outcome.failed >= subscribers || stalled || Date.now() > deadline;
    say(`  ${outcome.joined}/${subscribers} subscribers joined, ${outcome.failed} failed`);
    if (settled) return { ...outcome, reasons: errorReasons(now) };
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Every subscriber joined, or an error that says how many did not and why. */
export async function waitForJoins(
  workers: ReturnType<typeof startGenerators>,
  subscribers: number,
  joinRate: number,
  say: (line: string) => void,
): Promise<void> {
  const outcome = await settleJoins(workers, subscribers, joinRate, say);
  if (outcome.joined < subscribers)
    throw new Error(
      `only ${outcome.joined} of ${subscribers} subscribers joined: ${JSON.stringify(outcome.reasons)}`,
    );
}

/** Deliveries, their rate from the first send to the last arrival, and latency percentiles. */
export function deliveryFigures(arrivals: Map<string, bigint[]>, sentAt: Map<string, bigint>) {
  const latencies: number[] = [];
  let last = 0n;
  for (const [key, times] of arrivals) {
    const sent = sentAt.get(key);
    if (sent === undefined) continue;
    for (const t of times) {
      latencies.push(Number(t - sent) / 1e6);
      if (t > last) last = t;
    }
  }
  latencies.sort((a, b) => a - b);
  // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.min does not take
  const first = [...sentAt.values()].reduce((a, b) => (a < b ? a : b));
  const seconds = Number(last - first) / 1e9;
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    deliveries: latencies.length,
    deliveredPerSecond: Math.round(latencies.length / Math.max(seconds, 1e-3)),
    latencyMs: {
      p50: round(percentile(latencies, 0.5)),
      p99: round(percentile(latencies, 0.99)),
      max: round(latencies.at(-1) ?? Number.NaN),
    },
  };
}

/**
 * POSTs `messages` bodies prefix+i to `url` at a steady rate. Returns each accepted send's
 * time (hrtime) and, by reason, the sends that failed: a saturated run is still reported.
 */
export async function sendAtRate(
  url: string,
  prefix: string,
  options: { ratePerSecond: number; messages: number },
) {
  const sentAt = new Map<string, bigint>();
  const failures: Record<string, number> = {};
  const interval = 1000 / options.ratePerSecond;
  const start = performance.now();
  const sends: Array<Promise<void>> = [];
  for (let i = 0; i < options.messages; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const key = String(i);
    sentAt.set(key, process.hrtime.bigint());
    const send = fetch(url, {
      method: "POST",
      body: JSON.stringify({ body: `${prefix}${i}`, client_id: `${prefix}${i}` }),
      signal: AbortSignal.timeout(30_000),
    })
      .then(async (r) => (r.ok ? undefined : `${r.status} ${await r.text()}`))
      .catch((error: unknown) => String(error));
    sends.push(
      send.then((failure) => {
        if (failure === undefined) return;
        sentAt.delete(key);
        failures[failure] = (failures[failure] ?? 0) + 1;
      }),
    );
  }
  await Promise.all(sends);
  return { sentAt, failures };
}

/** Every marked arrival by message, from every generator (call once they are in). */
export async function arrivalsByMessage(workers: ReturnType<typeof startGenerators>) {
  const merged = new Map<string, bigint[]>();
  for (const report of await reports(workers, { arrivals: true }))
    for (const [key, times] of Object.entries(report.arrivals))
      merged.set(key, [...(merged.get(key) ?? []), ...times.map(BigInt)]);
  return merged;
}

/** Resident bytes of a process and its live children, from /proc. */
export function rss(pid: number | undefined): number {
  if (!pid) return 0;
  const children = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean)
    .map(Number);
  return [pid, ...children].reduce((total, p) => {
    try {
      const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1];
      return total + Number(kb ?? 0) * 1024;
    } catch {
      return total; // the process is gone
    }
  }, 0);
}

/** Resident bytes of the nodes (together) and of the gateway (its primary and workers). */
function memory(cluster: Cluster): { nodes: number; gateway: number } {
  return {
    nodes: cluster.nodes.reduce((total, node) => total + rss(node.pid), 0),
    gateway: rss(cluster.gatewayPid),
  };
}

export function fanoutTable(results: FanoutResult[]): string {
  return markdownTable(
    [
      "nodes",
      "via",
      "subscribers",
      "joined",
      "sent/s",
      "messages",
      "deliveries",
      "delivered/s",
      "latency p50 ms",
      "p99 ms",
      "max ms",
      "node bytes/conn",
      "gateway bytes/conn",
      "CPU s while sending (nodes / gateway / generators)",
    ],
    results.map((r) => [
      r.nodes,
      r.via,
      r.subscribers.toLocaleString("en"),
      r.joined.toLocaleString("en"),
      r.sendRate,
      r.sent,
      `${r.deliveries.toLocaleString("en")}/${r.expected.toLocaleString("en")}`,
      r.deliveredPerSecond.toLocaleString("en"),
      r.latencyMs.p50,
      r.latencyMs.p99,
      r.latencyMs.max,
      r.bytesPerConnection.nodes.toLocaleString("en"),
      r.bytesPerConnection.gateway.toLocaleString("en"),
      `${r.cpuSeconds.nodes} / ${r.cpuSeconds.gateway} / ${r.cpuSeconds.generators}`,
    ]),
  );
}

export function fanoutPlot(results: FanoutResult[]): string {
  const shape = (r: FanoutResult) =>
    `${r.nodes} node${r.nodes > 1 ? "s" : ""}${r.via === "direct" ? ", direct" : ""}`;
  const shapes = [...new Set(results.map(shape))];
  return lineChart(
    "Send-to-receive p99 by room size",
    "subscribers",
    "p99 ms",
    shapes.map((name) => ({
      name,
      points: results.filter((r) => shape(r) === name).map((r) => [r.subscribers, r.latencyMs.p99]),
    })),
  );
}
