/**
 * `npm run bench -- <benchmark> [options]`: benchmarks that print figures while they run and
 * write result.json, plot.svg and table.md into bench-results/<benchmark>-<time>/.
 * docs/benchmarks.md holds the committed results and the commands that produced them.
 */
import { parseArgs } from "node:util";
import { type FanoutResult, fanoutPlot, fanoutTable, runFanout } from "./fanout/fanout.ts";
import { barChart, writeRun } from "./output.ts";
import { benchEdge, benchGateway, type ProxyBenchResult, proxyTable } from "./proxies/proxies.ts";
import { type RampResult, type RampTarget, rampPlot, rampTable, runRamp } from "./ramp/ramp.ts";
import { runWire, wirePlot, wireTable } from "./wire/wire.ts";

const USAGE = `usage: npm run bench -- <benchmark> [options]

benchmarks:
  ramp    the thesis's server table (8.2): WebSocket clients ramped at R/s for D s, each
          joining "chat" and heartbeating; then one message timed until all have it.
          --rates 10,20,40,80  --duration 30  --targets gateway,one-node  --generators 2

  gateway our gateway against HAProxy (and no proxy), one core each, same origin (nginx):
          requests per second and latency with wrk.   --duration 10  --connections 64
  edge    our edge against nginx proxy_cache and Varnish, one core each: cache hits per
          second on a 32 KiB asset.                    --duration 10  --connections 64

  wire    the thesis's client table (7.1): two clients each send "this is a chat message!"
          every 2.5 s over polling (1 s), long polling, SSE and WebSocket; tcpdump counts
          packets and bytes on loopback.              --duration 60 (needs tcpdump, root)

  fanout  messages into one room with S subscribers through the gateway to N nodes:
          delivered per second, send-to-receive latency, memory per idle connection.
          --subscribers 1,100,1000,10000  --nodes 1,4  --rate 20  --messages 100

  --smoke   a tiny run, to prove the benchmark works (CI runs these)`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rates: { type: "string", default: "10,20,40,80" },
    duration: { type: "string" },
    targets: { type: "string", default: "gateway,one-node" },
    generators: { type: "string", default: "2" },
    connections: { type: "string", default: "64" },
    subscribers: { type: "string", default: "1,100,1000,10000" },
    nodes: { type: "string", default: "1,4" },
    rate: { type: "string", default: "20" },
    messages: { type: "string", default: "100" },
    smoke: { type: "boolean", default: false },
    out: { type: "string" },
    help: { type: "boolean", default: false },
  },
});

const say = (line: string) => process.stderr.write(`${line}\n`);
const list = (raw: string) =>
  raw
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean);

async function ramp(): Promise<void> {
  const rates = values.smoke ? [20] : list(values.rates).map(Number);
  const durationS = values.smoke ? 3 : Number(values.duration ?? 30);
  const targets = list(values.targets) as RampTarget[];
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
          generators: Number(values.generators),
          say,
        }),
      );
    }
  }
  const table = rampTable(results);
  console.log(table);
  const dir = writeRun(
    "ramp",
    { command: process.argv.slice(2).join(" "), results },
    table,
    rampPlot(results),
    values.out,
  );
  console.log(`\nwrote ${dir}/{result.json,plot.svg,table.md}`);
}

async function proxies(kind: "gateway" | "edge"): Promise<void> {
  const durationS = values.smoke ? 1 : Number(values.duration ?? 10);
  const connections = values.smoke ? 4 : Number(values.connections);
  say(`[bench] ${kind}: ${durationS} s per server, ${connections} connections, one core each`);
  const result: ProxyBenchResult = await (kind === "gateway" ? benchGateway : benchEdge)(
    durationS,
    connections,
    say,
  );
  const table = proxyTable(result);
  console.log(table);
  const bars = result.runs.map((r) => ({ label: r.server, value: r.requestsPerSecond }));
  const title =
    kind === "gateway"
      ? "Proxied requests per second (one core)"
      : "Cache hits per second (one core)";
  const dir = writeRun(
    kind,
    { command: process.argv.slice(2).join(" "), ...result },
    table,
    barChart(title, "req/s", bars),
    values.out,
  );
  console.log(`\nwrote ${dir}/{result.json,plot.svg,table.md}`);
}

async function wire(): Promise<void> {
  const durationS = values.smoke ? 5 : Number(values.duration ?? 60);
  say(`[bench] wire: ${durationS} s per transport, two clients, a message every 2.5 s each`);
  const figures = await runWire({ durationS, intervalMs: 2500, say });
  const table = wireTable(figures);
  console.log(table);
  const dir = writeRun(
    "wire",
    { command: process.argv.slice(2).join(" "), durationS, figures },
    table,
    wirePlot(figures),
    values.out,
  );
  console.log(`\nwrote ${dir}/{result.json,plot.svg,table.md}`);
}

async function fanout(): Promise<void> {
  const subscribers = values.smoke ? [1, 20] : list(values.subscribers).map(Number);
  const nodes = values.smoke ? [1] : list(values.nodes).map(Number);
  const results: FanoutResult[] = [];
  for (const n of nodes) {
    for (const s of subscribers) {
      say(`[bench] fanout: ${s} subscribers, ${n} node(s)`);
      results.push(
        await runFanout({
          nodes: n,
          subscribers: s,
          ratePerSecond: Number(values.rate),
          messages: values.smoke ? 10 : Number(values.messages),
          generators: Number(values.generators),
          say,
        }),
      );
    }
  }
  const table = fanoutTable(results);
  console.log(table);
  const dir = writeRun(
    "fanout",
    { command: process.argv.slice(2).join(" "), results },
    table,
    fanoutPlot(results),
    values.out,
  );
  console.log(`\nwrote ${dir}/{result.json,plot.svg,table.md}`);
}

const benchmarks: Record<string, () => Promise<void>> = {
  ramp,
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
await run();
