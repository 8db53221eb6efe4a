import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Cluster, startCluster } from "../../../cluster/launcher.ts";
import { lineChart, markdownTable, percentile } from "../output.ts";
import { reports, setMarker, startGenerators, sum } from "../ramp/ramp.ts";

export interface FanoutOptions {
  nodes: number;
  subscribers: number;
  /** Messages sent into the room per second, and how many in all. */
  ratePerSecond: number;
  messages: number;
  generators: number;
  /** New subscribers per second while the room fills. */
  joinRate: number;
  say?: (line: string) => void;
}

/** A gateway worker holds two sockets per client under the 20,000-file limit (MAX_CONNECTIONS 9000). */
const CLIENTS_PER_GATEWAY_WORKER = 8000;

export interface FanoutResult {
  nodes: number;
  subscribers: number;
  sendRate: number;
  sent: number;
  deliveries: number;
  expected: number;
  /** Deliveries per second from the first send to the last arrival. */
  deliveredPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Resident memory the idle connections added, per connection. */
  bytesPerConnection: { nodes: number; gateway: number };
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
    gateway: { workers: Math.max(2, Math.ceil(options.subscribers / CLIENTS_PER_GATEWAY_WORKER)) },
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    nodeEnv: { LOG_LEVEL: "warn", RATE_LIMIT_SENDS: "1000000" },
  });
  const gateway = cluster.gatewayUrl ?? "";
  const before = memory(cluster);
  const rate = Math.min(options.subscribers, options.joinRate);
  const workers = startGenerators(
    {
      target: "gateway",
      ratePerSecond: rate,
      durationS: Math.max(1, options.subscribers / rate),
      generators: Math.min(options.generators, options.subscribers),
    },
    gateway.replace("http", "ws"),
  );
  try {
    await waitForJoins(workers, options.subscribers, rate, say);
    await new Promise((resolve) => setTimeout(resolve, 2000)); // let memory settle
    const after = memory(cluster);
    const prefix = `fan-${randomUUID().slice(0, 8)}-`;
    await setMarker(workers, prefix);
    const sentAt = await sendAtRate(`${gateway}/api/rooms/chat/messages`, prefix, options);
    const expected = options.subscribers * options.messages;
    const figures = deliveryFigures(await collect(workers, expected), sentAt);
    return {
      nodes: options.nodes,
      subscribers: options.subscribers,
      sendRate: options.ratePerSecond,
      sent: sentAt.size,
      expected,
      ...figures,
      bytesPerConnection: {
        nodes: Math.round((after.nodes - before.nodes) / options.subscribers),
        gateway: Math.round((after.gateway - before.gateway) / options.subscribers),
      },
    };
  } finally {
    for (const worker of workers) worker.send({ type: "stop" });
    await cluster.stop();
  }
}

export async function waitForJoins(
  workers: ReturnType<typeof startGenerators>,
  subscribers: number,
  joinRate: number,
  say: (line: string) => void,
): Promise<void> {
  const deadline = Date.now() + 120_000 + (2000 * subscribers) / joinRate;
  for (;;) {
    const now = await reports(workers);
    const accepted = sum(now, "accepted");
    if (accepted >= subscribers) return;
    if (Date.now() > deadline || sum(now, "errors") > 0)
      throw new Error(
        `only ${accepted} of ${subscribers} subscribers joined (${sum(now, "errors")} errors)`,
      );
    say(`  ${accepted}/${subscribers} subscribers joined`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
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

/** POSTs `messages` bodies prefix+i to `url` at a steady rate; returns each send time (hrtime). */
export async function sendAtRate(
  url: string,
  prefix: string,
  options: { ratePerSecond: number; messages: number },
) {
  const sentAt = new Map<string, bigint>();
  const interval = 1000 / options.ratePerSecond;
  const start = performance.now();
  const sends: Array<Promise<void>> = [];
  for (let i = 0; i < options.messages; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    sentAt.set(String(i), process.hrtime.bigint());
    sends.push(
      fetch(url, {
        method: "POST",
        body: JSON.stringify({ body: `${prefix}${i}`, client_id: `${prefix}${i}` }),
      }).then(async (r) => {
        if (!r.ok) throw new Error(`send ${i}: ${r.status} ${await r.text()}`);
      }),
    );
  }
  await Promise.all(sends);
  return sentAt;
}

export async function collect(workers: ReturnType<typeof startGenerators>, expected: number) {
  const deadline = Date.now() + 60_000;
  let merged = new Map<string, bigint[]>();
  while (Date.now() < deadline) {
    merged = new Map();
    for (const report of await reports(workers))
      for (const [key, times] of Object.entries(report.arrivals))
        merged.set(key, [...(merged.get(key) ?? []), ...times.map(BigInt)]);
    const count = [...merged.values()].reduce((n, list) => n + list.length, 0);
    if (count >= expected) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
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
      "subscribers",
      "sent/s",
      "messages",
      "deliveries",
      "delivered/s",
      "latency p50 ms",
      "p99 ms",
      "max ms",
      "node bytes/conn",
      "gateway bytes/conn",
    ],
    results.map((r) => [
      r.nodes,
      r.subscribers.toLocaleString("en"),
      r.sendRate,
      r.sent,
      `${r.deliveries.toLocaleString("en")}/${r.expected.toLocaleString("en")}`,
      r.deliveredPerSecond.toLocaleString("en"),
      r.latencyMs.p50,
      r.latencyMs.p99,
      r.latencyMs.max,
      r.bytesPerConnection.nodes.toLocaleString("en"),
      r.bytesPerConnection.gateway.toLocaleString("en"),
    ]),
  );
}

export function fanoutPlot(results: FanoutResult[]): string {
  const byNodes = [...new Set(results.map((r) => r.nodes))];
  return lineChart(
    "Send-to-receive p99 by room size",
    "subscribers",
    "p99 ms",
    byNodes.map((nodes) => ({
      name: `${nodes} node${nodes > 1 ? "s" : ""}`,
      points: results.filter((r) => r.nodes === nodes).map((r) => [r.subscribers, r.latencyMs.p99]),
    })),
  );
}
