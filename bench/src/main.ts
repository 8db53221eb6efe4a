/**
 * `npm run bench -- <benchmark> [options]`: benchmarks that print figures while they run and
 * write result.json, plot.svg and table.md into bench-results/<benchmark>-<time>/.
 * docs/benchmarks.md holds the committed results and the commands that produced them.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { nodeRuntime } from "../../cluster/process.ts";
import { cdnPlot, cdnTable, runPageLoads } from "./cdn/page-load.ts";
import { type CensusResult, censusPlot, censusTable, runCensus } from "./fanout/census.ts";
import { type FanoutResult, fanoutPlot, fanoutTable, runFanout } from "./fanout/fanout.ts";
import {
  type PeerOptions,
  type PeerResult,
  type PeerServer,
  peerPlot,
  peerSummary,
  peerTable,
  runPeer,
} from "./fanout/peers.ts";
import { type FloorResult, runFloor, withFloorTable } from "./floor/floor.ts";
import { barChart, runDir, writeRun } from "./output.ts";
import { benchEdge, benchGateway, proxyPlot, proxySummary, proxyTable } from "./proxies/proxies.ts";
import { type RampResult, type RampTarget, rampPlot, rampTable, runRamp } from "./ramp/ramp.ts";
import { runTsung, type TsungResult, type TsungScenario, tsungTable } from "./tsung/tsung.ts";
import { runWire, wirePlot, wireTable } from "./wire/wire.ts";

const USAGE = `usage: npm run bench -- <benchmark> [options]

benchmarks:
  ramp    the thesis's server table (8.2): WebSocket clients ramped at R/s for D s, each
          joining "chat" and heartbeating; then one message timed until all have it.
          --rates 10,20,40,80  --duration 30  --targets gateway,one-node  --generators 2
          --gateway-nodes 4  --gateway-workers 4 (the gateway target's shape)

  tsung   Debian's tsung running the thesis's two scenarios (Phoenix: /socket/websocket,
          phx_join "chat", heartbeats; Rails: /cable, subscribe to ChatChannel), beside our
          own generator on the same ramp.  --rates 10  --duration 30  --targets gateway

  gateway our gateway against HAProxy, http-proxy-3 alone and a bare node:http proxy (and
          no proxy), one core each, same origin (nginx): requests per second and latency
          with wrk.                        --duration 10  --connections 64  --repeat 1
          --also-node <node binary>: every Node server also runs on that Node.js
          in each round (repeatable), e.g. the Docker image's Node 24
  edge    our edge against nginx proxy_cache and Varnish, one core each: cache hits per
          second on a 32 KiB asset.        --duration 10  --connections 64  --repeat 1
          --also-node <node binary>

  wire    the thesis's client table (7.1): two clients each send "this is a chat message!"
          every 2.5 s over polling (1 s), long polling, SSE and WebSocket; tcpdump counts
          packets and bytes on loopback.              --duration 60 (needs tcpdump, root)

  fanout  messages into one room with S subscribers through the gateway to N nodes:
          delivered per second, send-to-receive latency, memory per idle connection.
          --subscribers 1,100,1000,10000  --nodes 1,4  --rate 20  --messages 100
          --join-rate 400 (the gateway gets a worker per 8,000 subscribers)
          --direct: subscribers connect to the nodes, not through the gateway
          (generator i to node i mod N: give as many generators as nodes)

  socketio  the fan-out scenario against one chat node, one Socket.IO server with its
          Redis adapter and a bare ws server (the library under both), one core each:
          deliveries per CPU second, latency, memory per connection; then the write floor,
          the same broadcasts written with no server (a bare write(2), and
          net.Socket#write) to as many connections.
          --subscribers 1000  --rate 50  --messages 200
          --repeat 1: rounds, in alternating order, with the medians of the ratios

  heap    where memory per connection goes: heap snapshots of our node, Socket.IO and
          bare ws before and after S subscribers join, compared kind of object by kind.
          --subscribers 2000

  cdn     the CDN thesis's measurement: full page loads of the web client in Chromium for a
          user RTT ms from the origin, with no edge, a cold edge and a warm edge near the
          user; origin offload in requests and bytes.  --rtt 150  --loads 5

  rails   the same scenario over Action Cable: our node's /cable against Rails's Action Cable
          (Debian's ruby-actioncable under Puma) with its Redis adapter, one core each.
          --subscribers 1000  --rate 50  --messages 200  --repeat 1

  --smoke   a tiny run, to prove the benchmark works (CI runs these)`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rates: { type: "string", default: "10,20,40,80" },
    duration: { type: "string" },
    targets: { type: "string", default: "gateway,one-node" },
    generators: { type: "string", default: "2" },
    connections: { type: "string", default: "64" },
    subscribers: { type: "string" }, // each benchmark has its own default
    nodes: { type: "string", default: "1,4" },
    rate: { type: "string", default: "20" },
    messages: { type: "string", default: "100" },
    rtt: { type: "string", default: "150" },
    "gateway-nodes": { type: "string", default: "4" },
    "gateway-workers": { type: "string", default: "4" },
    "join-rate": { type: "string", default: "400" },
    loads: { type: "string", default: "5" },
    repeat: { type: "string", default: "1" },
    smoke: { type: "boolean", default: false },
    direct: { type: "boolean", default: false },
    out: { type: "string" },
    "also-node": { type: "string", multiple: true, default: [] },
    help: { type: "boolean", default: false },
  },
});

const say = (line: string) => process.stderr.write(`${line}\n`);

/** Prints the table and writes the run's JSON (with the command and runtime), plot and table. */
function publish(name: string, result: object, table: string, svg: string): void {
  console.log(table);
  const command = process.argv.slice(2).join(" ");
  // Every process a benchmark starts runs on this Node (process.execPath): the figures are its.
  const runtime = `Node.js ${process.version}`;
  const dir = writeRun(name, { command, runtime, ...result }, table, svg, values.out);
  console.log(`\nwrote ${dir}/{result.json,plot.svg,table.md}`);
}
const count = z.coerce.number().int().positive();
const counts = z.string().transform((raw, ctx) => {
  const list = raw
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean)
    .map(Number);
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) {
    ctx.issues.push({
      code: "custom",
      message: "a comma-separated list of positive integers",
      input: raw,
    });
    return z.NEVER;
  }
  return list;
});
/** Every numeric flag, checked once: a bad one stops the run naming the flag. */
const flagsSchema = z.object({
  rates: counts,
  duration: count.optional(),
  targets: z
    .string()
    .transform((raw) => raw.split(",").map((v) => v.trim()))
    .pipe(z.array(z.enum(["gateway", "one-node"])).min(1)),
  generators: count.max(64),
  connections: count,
  subscribers: counts.optional(),
  nodes: counts.refine((list) => list.every((n) => n <= 32), "at most 32 nodes"),
  rate: count,
  messages: count,
  rtt: count.max(5000),
  "gateway-nodes": count.max(32),
  "gateway-workers": count.max(64),
  "join-rate": count,
  loads: count.max(100),
  repeat: count.max(20),
});
const parsed = flagsSchema.safeParse(values);
if (!parsed.success) {
  for (const issue of parsed.error.issues)
    console.error(`--${String(issue.path[0])}: ${issue.message}`);
  process.exit(2);
}
const flags = parsed.data;

async function ramp(): Promise<void> {
  const rates = values.smoke ? [20] : flags.rates;
  const durationS = values.smoke ? 3 : (flags.duration ?? 30);
  const targets: RampTarget[] = flags.targets;
  for (const target of targets)
    if (target !== "gateway" && target !== "one-node") throw new Error(`unknown target ${target}`);
  const results: RampResult[] = [];
  for (const target of targets) {
    for (const ratePerSecond of rates) {
      say(`[bench] ramp: ${target}, ${ratePerSecond} clients/s for ${durationS} s`);
      results.push(
        await runRamp({
          target,
          ratePerSecond,
          durationS,
          generators: flags.generators,
          gatewayNodes: flags["gateway-nodes"],
          gatewayWorkers: flags["gateway-workers"],
          // A saturated run is diagnosed from its processes' logs.
          keepLogsIn: runDir(`ramp-logs-${target}-${ratePerSecond}`),
          say,
        }),
      );
    }
  }
  publish("ramp", { results }, rampTable(results), rampPlot(results));
}

async function proxies(kind: "gateway" | "edge"): Promise<void> {
  const options = {
    durationS: values.smoke ? 1 : (flags.duration ?? 10),
    connections: values.smoke ? 4 : flags.connections,
    rounds: values.smoke ? 1 : flags.repeat,
    otherRuntimes: (values["also-node"] ?? []).map(nodeRuntime),
  };
  say(
    `[bench] ${kind}: ${options.durationS} s per server, ${options.connections} connections, one core each, ${options.rounds} round(s)`,
  );
  const result = await (kind === "gateway" ? benchGateway : benchEdge)(options, say);
  const table = proxyTable(result);
  publish(
    kind,
    { ...result },
    options.rounds > 1 ? `${proxySummary(result)}\n\n${table}` : table,
    proxyPlot(result),
  );
}

async function wire(): Promise<void> {
  const durationS = values.smoke ? 5 : (flags.duration ?? 60);
  say(`[bench] wire: ${durationS} s per transport, two clients, a message every 2.5 s each`);
  const figures = await runWire({ durationS, intervalMs: 2500, say });
  publish("wire", { durationS, figures }, wireTable(figures), wirePlot(figures));
}

async function fanout(): Promise<void> {
  const subscribers = values.smoke ? [1, 20] : (flags.subscribers ?? [1, 100, 1000, 10000]);
  const nodes = values.smoke ? [1] : flags.nodes;
  const results: FanoutResult[] = [];
  for (const n of nodes) {
    for (const s of subscribers) {
      say(`[bench] fanout: ${s} subscribers, ${n} node(s)`);
      results.push(
        await runFanout({
          nodes: n,
          subscribers: s,
          ratePerSecond: flags.rate,
          messages: values.smoke ? 10 : flags.messages,
          generators: flags.generators,
          joinRate: flags["join-rate"],
          keepLogsIn: runDir(`fanout-logs-${n}-${s}`),
          direct: values.direct,
          say,
        }),
      );
    }
  }
  publish("fanout", { results }, fanoutTable(results), fanoutPlot(results));
}

/** Our node beside the peer a user would pick instead, the fan-out scenario, same run. */
async function peers(name: string, servers: PeerServer[]): Promise<void> {
  const options: PeerOptions = {
    subscribers: values.smoke ? 20 : (flags.subscribers?.at(-1) ?? 1000),
    ratePerSecond: values.smoke ? 20 : flags.rate,
    messages: values.smoke ? 10 : flags.messages,
    generators: flags.generators,
    say,
  };
  const results: PeerResult[] = [];
  const floor: FloorResult[] = [];
  const rounds = values.smoke ? 1 : flags.repeat;
  for (let round = 1; round <= rounds; round++) {
    // Every other round in reverse order, so a machine slowing down favours no one.
    for (const server of round % 2 ? servers : [...servers].reverse()) {
      say(
        `[bench] ${name}, round ${round}/${rounds}: ${server}, ${options.subscribers} subscribers`,
      );
      results.push({ ...(await runPeer(server, options)), round });
    }
    // The same broadcasts with no server at all: the most any server could deliver per core.
    floor.push(...(await runFloor(options)).map((f) => ({ ...f, round })));
  }
  const table = withFloorTable(peerTable(results), floor, results);
  publish(
    name,
    { results, floor },
    rounds > 1 ? `${peerSummary(results)}\n\n${table}` : table,
    peerPlot(results),
  );
}

/** Memory per connection by kind of object: ours, Socket.IO and bare ws, same subscribers. */
async function heap(): Promise<void> {
  const options = {
    subscribers: values.smoke ? 20 : (flags.subscribers?.at(-1) ?? 2000),
    generators: flags.generators,
    say,
  };
  const results: CensusResult[] = [];
  for (const server of ["ours", "socket.io", "ws"] as const) {
    say(`[bench] heap: ${server}, ${options.subscribers} subscribers`);
    results.push(await runCensus(server, options));
  }
  publish("heap", { results }, censusTable(results), censusPlot(results));
}

async function tsung(): Promise<void> {
  const rates = values.smoke ? [5] : flags.rates;
  const durationS = values.smoke ? 2 : (flags.duration ?? 30);
  const tsungRuns: TsungResult[] = [];
  const ours: RampResult[] = [];
  for (const target of flags.targets) {
    for (const ratePerSecond of rates) {
      for (const scenario of ["phoenix", "cable"] as TsungScenario[]) {
        say(`[bench] tsung: ${scenario} on ${target}, ${ratePerSecond} users/s for ${durationS} s`);
        tsungRuns.push(await runTsung({ scenario, target, ratePerSecond, durationS, say }));
      }
      say(`[bench] tsung: our generator on ${target}, ${ratePerSecond} clients/s`);
      ours.push(
        await runRamp({ target, ratePerSecond, durationS, generators: flags.generators, say }),
      );
    }
  }
  const bars = [
    ...tsungRuns.map((r) => ({
      label: `tsung ${r.scenario} ${r.target} ${r.ratePerSecond}/s`,
      value: r.peakServerSockets,
    })),
    ...ours.map((r) => ({
      label: `ours phoenix ${r.target} ${r.ratePerSecond}/s`,
      value: r.accepted,
    })),
  ];
  const table = `${tsungTable(tsungRuns)}\n\nOur generator, same ramp:\n\n${rampTable(ours)}`;
  publish(
    "tsung",
    { tsung: tsungRuns, ours },
    table,
    barChart("Clients held at the end of the ramp", "clients", bars),
  );
}

async function cdn(): Promise<void> {
  const rttMs = flags.rtt;
  const loads = values.smoke ? 1 : flags.loads;
  say(`[bench] cdn: ${loads} page load(s) per setup, ${rttMs} ms round trip to the origin`);
  const result = await runPageLoads({ rttMs, loads, say });
  publish("cdn", { ...result }, cdnTable(result), cdnPlot(result));
}

const benchmarks: Record<string, () => Promise<void>> = {
  ramp,
  cdn,
  tsung,
  socketio: () => peers("socketio", ["ours", "socket.io", "ws"]),
  heap,
  // Our node's /cable against Rails's own Action Cable: same clients, same run.
  rails: () => peers("rails", ["ours-cable", "rails"]),
  fanout,
  wire,
  gateway: () => proxies("gateway"),
  edge: () => proxies("edge"),
};
const run = positionals[0] ? benchmarks[positionals[0]] : undefined;
if (values.help || !run) {
  console.error(USAGE);
  process.exit(2);
}
say(`[bench] ${positionals[0]} on Node.js ${process.version} (${process.execPath})`);
await run();
