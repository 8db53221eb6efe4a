import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { findFreePort } from "../../../cluster/launcher.ts";
import type { NodeRuntime } from "../../../cluster/process.ts";
import { barChart, cpuSeconds, markdownTable, median, medianAndRange } from "../output.ts";
import {
  ASSET_PATH,
  installed,
  type Server,
  startBareHttpProxy3,
  startBareNodeProxy,
  startEdge,
  startGateway,
  startHaproxy,
  startNginxCache,
  startOrigin,
  startVarnish,
} from "./peers.ts";

/** Cores: the proxy under test gets core 0 alone; the origin and wrk share core 1. */
const PROXY_CORE = "0";
const LOAD_CORE = "1";

export interface WrkFigures {
  server: string;
  path: string;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number };
  errors: number;
  /** CPU seconds the server used during the run (the proxy's core budget is one). */
  cpuSeconds: number;
  /** p50 with one connection, one request at a time: latency without queueing. */
  unloadedP50Ms?: number;
  /** Which round of `--repeat` this run belongs to. */
  round?: number;
}

export interface ProxyBenchResult {
  kind: "gateway" | "edge";
  durationS: number;
  connections: number;
  runs: WrkFigures[];
}

/** wrk, pinned to the load core, keep-alive connections, latency percentiles. */
async function wrk(
  server: Server,
  path: string,
  durationS: number,
  connections: number,
): Promise<WrkFigures> {
  const pid = server.process.pid ?? 0;
  const cpuBefore = cpuSeconds(pid);
  const { stdout } = await promisify(execFile)(
    "taskset",
    [
      "-c",
      LOAD_CORE,
      "wrk",
      "-t1",
      `-c${connections}`,
      `-d${durationS}s`,
      "--latency",
      `${server.url}${path}`,
    ],
    { timeout: (durationS + 30) * 1000 },
  );
  const cpu = cpuSeconds(pid) - cpuBefore;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
  const latency = (q: string) => toMs(new RegExp(`^\\s+${q}%\\s+(\\S+)`, "m").exec(stdout)?.[1]);
  const errors = [...stdout.matchAll(/(?:connect|read|write|timeout) (\d+)/g)].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  return {
    server: server.name,
    path,
    requestsPerSecond: Math.round(rps),
    latencyMs: { p50: latency("50"), p90: latency("90"), p99: latency("99") },
    errors: errors + non2xx,
    cpuSeconds: Math.round(cpu * 100) / 100,
  };
}

function toMs(value: string | undefined): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(value ?? "");
  if (!match) return Number.NaN;
  const n = Number(match[1]);
  const ms = match[2] === "us" ? n / 1000 : match[2] === "s" ? n * 1000 : n;
  return Math.round(ms * 1000) / 1000;
}

/** The saturated run, then one connection for the latency a lone request sees. */
async function withUnloaded(
  server: Server,
  path: string,
  durationS: number,
  connections: number,
): Promise<WrkFigures> {
  const saturated = await wrk(server, path, durationS, connections);
  const unloaded = await wrk(server, path, Math.min(3, durationS), 1);
  return { ...saturated, unloadedP50Ms: unloaded.latencyMs.p50 };
}

type Starter = (
  dir: string,
  port: number,
  origin: Server,
  cores: string,
  runtime?: NodeRuntime,
) => Promise<Server>;

/** Seconds of wrk per server, its connections, and how many rounds of every server. */
export interface ProxyBenchOptions {
  durationS: number;
  connections: number;
  rounds: number;
  /** Other Node.js binaries each Node server also runs on, in every round. */
  otherRuntimes: NodeRuntime[];
}

/** The servers of a round: each peer, and each Node peer again on every other runtime. */
function withOtherRuntimes(
  peers: Array<[string, Starter]>,
  runtimes: NodeRuntime[],
): Array<[string, Starter]> {
  return peers.flatMap(
    ([command, start]): Array<[string, Starter]> => [
      [command, start],
      ...(command === "node"
        ? runtimes.map((runtime): [string, Starter] => [
            command,
            (dir, port, origin, cores) => start(dir, port, origin, cores, runtime),
          ])
        : []),
    ],
  );
}

/** Ours on the benchmark's own runtime ("… (ours)"; on another, "… (ours) on Node …"): what every ratio is taken against. */
const isOurs = (server: string) => server.endsWith("(ours)");

async function compare(
  kind: "gateway" | "edge",
  path: string,
  peers: Array<[string, Starter]>,
  options: ProxyBenchOptions,
  say: (line: string) => void,
): Promise<ProxyBenchResult> {
  const { durationS, connections, rounds } = options;
  const dir = await mkdtemp(join(tmpdir(), `chat-bench-${kind}-`));
  const origin = await startOrigin(dir, await findFreePort(), LOAD_CORE);
  const runs: WrkFigures[] = [];
  const present = withOtherRuntimes(peers, options.otherRuntimes).filter(([command]) => {
    if (!installed(command))
      say(`  ${command} is not installed; skipped (apt-get install ${command})`);
    return installed(command);
  });
  try {
    for (let round = 1; round <= rounds; round++) {
      if (rounds > 1) say(`  round ${round}/${rounds}`);
      if (kind === "gateway") {
        // The floor: no proxy at all.
        runs.push({ ...(await withUnloaded(origin, path, durationS, connections)), round });
        say(`  direct: ${runs.at(-1)?.requestsPerSecond} req/s`);
      }
      // Every other round in reverse order, so a machine slowing down favours no one.
      for (const [, start] of round % 2 ? present : [...present].reverse()) {
        const server = await start(dir, await findFreePort(), origin, PROXY_CORE);
        try {
          await wrk(server, path, Math.min(2, durationS), connections); // warm: caches, JIT, pools
          runs.push({ ...(await withUnloaded(server, path, durationS, connections)), round });
          const run = runs.at(-1);
          say(`  ${server.name}: ${run?.requestsPerSecond} req/s, p50 ${run?.latencyMs.p50} ms`);
        } finally {
          await server.process.stop("SIGTERM", 5000);
        }
      }
    }
  } finally {
    await origin.process.stop("SIGTERM", 5000);
    await rm(dir, { recursive: true, force: true });
  }
  return { kind, durationS, connections, runs };
}

/**
 * Our gateway against HAProxy, one core each, fronting the same origin; and http-proxy-3 alone
 * and a bare node:http proxy, which show how much of the gap is the library the gateway is
 * built on and Node's HTTP stack rather than the gateway.
 */
export function benchGateway(options: ProxyBenchOptions, say: (line: string) => void) {
  return compare(
    "gateway",
    "/ok",
    [
      ["node", startGateway],
      ["node", startBareHttpProxy3],
      ["node", startBareNodeProxy],
      ["haproxy", startHaproxy],
    ],
    options,
    say,
  );
}

/** Our edge against nginx proxy_cache and Varnish, one core each, serving a cached asset. */
export function benchEdge(options: ProxyBenchOptions, say: (line: string) => void) {
  return compare(
    "edge",
    ASSET_PATH,
    [
      ["node", startEdge],
      ["nginx", startNginxCache],
      ["varnishd", startVarnish],
    ],
    options,
    say,
  );
}

/** Each run's figures and its ratios to ours and to the origin alone in the same round. */
export function proxyTable(result: ProxyBenchResult): string {
  const rounds = result.runs.some((r) => (r.round ?? 1) > 1);
  const gateway = result.kind === "gateway";
  return markdownTable(
    [
      ...(rounds ? ["round"] : []),
      "server",
      "req/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "errors",
      "server CPU s",
      "ours ÷ this (req/s)",
      gateway ? "added p50 ms" : "—",
      "p50 ms, one connection",
      gateway ? "added p50 ms, one connection" : "—",
    ],
    result.runs.map((r) => {
      const ours = sameRound(result, r, isOurs);
      const direct = sameRound(result, r, (s) => s.startsWith("origin"));
      return [
        ...(rounds ? [r.round ?? 1] : []),
        r.server,
        r.requestsPerSecond.toLocaleString("en"),
        r.latencyMs.p50,
        r.latencyMs.p90,
        r.latencyMs.p99,
        r.errors,
        r.cpuSeconds,
        ours ? (ours.requestsPerSecond / r.requestsPerSecond).toFixed(2) : "—",
        direct && gateway ? (r.latencyMs.p50 - direct.latencyMs.p50).toFixed(3) : "—",
        r.unloadedP50Ms ?? "—",
        direct?.unloadedP50Ms !== undefined && r.unloadedP50Ms !== undefined && gateway
          ? (r.unloadedP50Ms - direct.unloadedP50Ms).toFixed(3)
          : "—",
      ];
    }),
  );
}

/** Over several rounds, each server's median req/s and the median of ours ÷ it, round by round. */
export function proxySummary(result: ProxyBenchResult): string {
  const servers = [...new Set(result.runs.map((r) => r.server))];
  return markdownTable(
    [
      "server",
      "rounds",
      "req/s, median",
      "ours ÷ this, median (range)",
      "p50 ms, one connection, median",
    ],
    servers.map((server) => {
      const runs = result.runs.filter((r) => r.server === server);
      const ratios = runs.flatMap((r) => {
        const ours = sameRound(result, r, isOurs);
        return ours ? [ours.requestsPerSecond / r.requestsPerSecond] : [];
      });
      const lone = runs.flatMap((r) => (r.unloadedP50Ms === undefined ? [] : [r.unloadedP50Ms]));
      return [
        server,
        runs.length,
        Math.round(median(runs.map((r) => r.requestsPerSecond))).toLocaleString("en"),
        medianAndRange(ratios),
        lone.length ? median(lone) : "—",
      ];
    }),
  );
}

export function proxyPlot(result: ProxyBenchResult): string {
  const rounds = result.runs.some((r) => (r.round ?? 1) > 1);
  const title =
    result.kind === "gateway"
      ? "Proxied requests per second (one core)"
      : "Cache hits per second (one core)";
  return barChart(
    rounds ? `${title}, round in brackets` : title,
    "req/s",
    result.runs.map((r) => ({
      label: rounds ? `${r.server} (${r.round})` : r.server,
      value: r.requestsPerSecond,
    })),
  );
}

function sameRound(
  result: ProxyBenchResult,
  run: WrkFigures,
  is: (server: string) => boolean,
): WrkFigures | undefined {
  return result.runs.find((r) => (r.round ?? 1) === (run.round ?? 1) && is(r.server));
}
