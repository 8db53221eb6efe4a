import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Cluster } from "../../../cluster/launcher.ts";
import { cpuSeconds, escapeXml, markdownTable } from "../output.ts";
import { groupCpu, type RampTarget, startTarget } from "../ramp/ramp.ts";

/** The thesis's two Tsung sessions: Phoenix Channels and Rails Action Cable. */
export type TsungScenario = "phoenix" | "cable";

export interface TsungOptions {
  scenario: TsungScenario;
  target: RampTarget;
  ratePerSecond: number;
  durationS: number;
  say?: (line: string) => void;
}

/** What Tsung's own log reports, summed over its dumps, beside what the nodes saw. */
export interface TsungResult {
  scenario: TsungScenario;
  target: RampTarget;
  ratePerSecond: number;
  durationS: number;
  tsung: {
    usersStarted: number;
    usersFinished: number;
    websocketOk: number;
    websocketFailed: number;
    /** Tsung's error counters (`error_*`), by name. */
    errors: Record<string, number>;
    connectMs: { mean: number; max: number };
    /** First frame back after each frame sent (the join/subscribe reply, heartbeat replies). */
    responseMs: { mean: number; max: number; count: number };
    bytesSent: number;
    bytesReceived: number;
  };
  /** Peak of the nodes' open sockets of the scenario's transport, sampled every second. */
  peakServerSockets: number;
  cpuSeconds: { nodes: number; gateway: number; tsung: number };
}

const HEARTBEAT_S = 25;
const TRANSPORT: Record<TsungScenario, string> = {
  phoenix: "phoenix-websocket",
  cable: "actioncable",
};

/**
 * Runs Debian's `tsung` with the thesis's scenario against our stack: users arrive at R per
 * second for D seconds and each stays D + 10 s, so all are connected together at the end.
 */
export async function runTsung(options: TsungOptions): Promise<TsungResult> {
  const say = options.say ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), "chat-tsung-"));
  const cluster = await startTarget(options.target);
  try {
    const port = Number(new URL(cluster.gatewayUrl ?? cluster.nodeUrl(0)).port);
    const holdS = options.durationS + 10;
    await writeFile(join(dir, "scenario.xml"), tsungConfig(options, port, holdS));
    const { peak, tsungCpu } = await runAndWatch(options, cluster, dir, holdS, say);
    const log = await readTsungLog(dir);
    const servers = await groupCpu(cluster);
    return {
      scenario: options.scenario,
      target: options.target,
      ratePerSecond: options.ratePerSecond,
      durationS: options.durationS,
      tsung: summarize(log),
      peakServerSockets: peak,
      cpuSeconds: {
        nodes: round(servers.nodes),
        gateway: round(servers.gateway),
        tsung: round(tsungCpu),
      },
    };
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The scenario as the thesis wrote it for Tsung: connect, join `chat` (Phoenix) or subscribe
 * to `ChatChannel` (Action Cable), then hold. Frames are text (Tsung's default is binary);
 * Tsung never answers a WebSocket ping, so only the protocol's own heartbeat keeps Phoenix
 * sockets alive, and Action Cable has none from the client.
 */
export function tsungConfig(options: TsungOptions, port: number, holdS: number): string {
  const beats = Math.max(1, Math.ceil(holdS / HEARTBEAT_S));
  const phoenix = `
      <request><websocket type="connect" path="/socket/websocket?vsn=2.0.0"></websocket></request>
      <request><websocket type="message" frame="text">["1","1","chat","phx_join",{}]</websocket></request>
      <for var="beat" from="1" to="${beats}" incr="1">
        <thinktime value="${(holdS / beats).toFixed(1)}" random="false"/>
        <request subst="true"><websocket type="message" frame="text">[null,"%%_beat%%","phoenix","heartbeat",{}]</websocket></request>
      </for>`;
  const identifier = JSON.stringify(JSON.stringify({ channel: "ChatChannel", room: "chat" }));
  const cable = `
      <request><websocket type="connect" path="/cable"></websocket></request>
      <request><websocket type="message" frame="text">{"command":"subscribe","identifier":${escapeXml(identifier)}}</websocket></request>
      <thinktime value="${holdS}" random="false"/>`;
  const users = options.ratePerSecond * options.durationS;
  return `<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd" []>
<tsung loglevel="notice" version="1.0">
  <clients><client host="localhost" use_controller_vm="true" maxusers="${users + 100}"/></clients>
  <servers><server host="127.0.0.1" port="${port}" type="tcp"/></servers>
  <load>
    <arrivalphase phase="1" duration="${options.durationS}" unit="second">
      <users arrivalrate="${options.ratePerSecond}" unit="second" maxnumber="${users}"/>
    </arrivalphase>
  </load>
  <sessions>
    <session name="${options.scenario}" probability="100" type="ts_websocket">${
      options.scenario === "phoenix" ? phoenix : cable
    }
    </session>
  </sessions>
</tsung>
`;
}

/** Runs tsung to the end, sampling the nodes' open sockets every second. */
async function runAndWatch(
  options: TsungOptions,
  cluster: Cluster,
  dir: string,
  holdS: number,
  say: (line: string) => void,
): Promise<{ peak: number; tsungCpu: number }> {
  const tsung = spawn("tsung", ["-f", join(dir, "scenario.xml"), "-l", dir, "start"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  for (const stream of [tsung.stdout, tsung.stderr]) stream.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve, reject) => {
    tsung.once("error", reject);
    tsung.once("exit", resolve);
  });
  let done = false;
  const finished = () => {
    done = true;
  };
  exited.then(finished, finished);
  const limit = Date.now() + (options.durationS + holdS + 60) * 1000;
  let peak = 0;
  let tsungCpu = 0;
  for (let second = 1; !done && Date.now() < limit; second++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (tsung.pid) tsungCpu = Math.max(tsungCpu, cpuSeconds(tsung.pid));
    const open = await openSockets(cluster, TRANSPORT[options.scenario]);
    peak = Math.max(peak, open);
    say(`  tsung ${options.scenario} ${options.target} t=${second}s  open sockets ${open}`);
  }
  if (!done) tsung.kill("SIGKILL");
  const code = await exited;
  if (code !== 0) throw new Error(`tsung exited with ${code}:\n${output.slice(-2000)}`);
  return { peak, tsungCpu };
}

async function openSockets(cluster: Cluster, transport: string): Promise<number> {
  const counts = await Promise.all(
    cluster.nodes.map(async (node) => {
      const text = await (await fetch(`${node.url}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`chat_open_streams{transport="${transport}"`));
      return Number(line?.split(" ").at(-1) ?? 0);
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}

async function readTsungLog(dir: string): Promise<string> {
  // tsung writes into a dated folder under -l.
  for (const entry of await readdir(dir, { withFileTypes: true }))
    if (entry.isDirectory()) return readFile(join(dir, entry.name, "tsung.log"), "utf8");
  throw new Error(`no tsung log under ${dir}`);
}

/**
 * Folds tsung.log's dumps (one every 10 s): counters are `name interval total`; samples are
 * `name count mean stddev max min …` per interval, combined here into one mean and max.
 */
export function summarize(log: string): TsungResult["tsung"] {
  const counters = new Map<string, number>();
  const samples = new Map<string, { count: number; sum: number; max: number }>();
  for (const line of log.split("\n")) {
    if (!line.startsWith("stats: ")) continue;
    const [name = "", ...fields] = line.slice(7).trim().split(/\s+/);
    const values = fields.map(Number);
    if (values.length === 2) counters.set(name, values[1] ?? 0);
    else if (values.length >= 5) {
      const [count = 0, mean = 0, , max = 0] = values;
      const s = samples.get(name) ?? { count: 0, sum: 0, max: 0 };
      samples.set(name, {
        count: s.count + count,
        sum: s.sum + count * mean,
        max: Math.max(s.max, max),
      });
    }
  }
  const sample = (name: string) => {
    const s = samples.get(name) ?? { count: 0, sum: 0, max: 0 };
    return { mean: round(s.count ? s.sum / s.count : 0), max: round(s.max), count: s.count };
  };
  const errors = Object.fromEntries(
    [...counters].filter(([name, total]) => name.startsWith("error_") && total > 0),
  );
  const connect = sample("connect");
  return {
    usersStarted: counters.get("users_count") ?? 0,
    usersFinished: counters.get("finish_users_count") ?? 0,
    websocketOk: counters.get("websocket_succ") ?? 0,
    websocketFailed: counters.get("websocket_fail") ?? 0,
    errors,
    connectMs: { mean: connect.mean, max: connect.max },
    responseMs: sample("request"),
    bytesSent: counters.get("size_sent") ?? 0,
    bytesReceived: counters.get("size_rcv") ?? 0,
  };
}

const round = (n: number) => Math.round(n * 10) / 10;

export function tsungTable(results: TsungResult[]): string {
  return markdownTable(
    [
      "scenario",
      "target",
      "rate/s",
      "duration s",
      "users started",
      "finished",
      "WebSocket ok",
      "failed",
      "errors",
      "peak sockets on nodes",
      "connect mean / max ms",
      "response mean / max ms",
      "bytes sent",
      "bytes received",
      "CPU s (nodes / gateway / tsung)",
    ],
    results.map((r) => [
      r.scenario === "phoenix" ? "Phoenix (/socket/websocket)" : "Rails (/cable)",
      r.target,
      r.ratePerSecond,
      r.durationS,
      r.tsung.usersStarted,
      r.tsung.usersFinished,
      r.tsung.websocketOk,
      r.tsung.websocketFailed,
      Object.entries(r.tsung.errors)
        .map(([name, n]) => `${name} ${n}`)
        .join(", ") || 0,
      r.peakServerSockets,
      `${r.tsung.connectMs.mean} / ${r.tsung.connectMs.max}`,
      `${r.tsung.responseMs.mean} / ${r.tsung.responseMs.max}`,
      r.tsung.bytesSent.toLocaleString("en"),
      r.tsung.bytesReceived.toLocaleString("en"),
      `${r.cpuSeconds.nodes} / ${r.cpuSeconds.gateway} / ${r.cpuSeconds.tsung}`,
    ]),
  );
}
