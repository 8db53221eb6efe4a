/**
 * `npm start [-- --nodes N] [--data-dir DIR]`: the whole system on one machine from local
 * binaries — Redis, a Postgres primary and streaming replica, and N chat nodes. Ctrl-C or
 * SIGTERM stops everything it started, and nothing else.
 */
import { parseArgs } from "node:util";
import { type Cluster, DEFAULT_PORTS, startCluster } from "./launcher.ts";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "4" },
    "data-dir": { type: "string" },
  },
});
const nodes = Number(values.nodes);
if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) {
  console.error(`--nodes must be an integer from 1 to 64, got ${values.nodes}`);
  process.exit(2);
}

const say = (line: string) => console.log(`[cluster] ${line}`);
let cluster: Cluster | undefined;
let stopping = false;

async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  say(`${signal}: stopping everything this launcher started`);
  await cluster?.stop();
  say("stopped");
  process.exit(0);
}
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));

try {
  cluster = await startCluster({
    nodes,
    ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
    ports: DEFAULT_PORTS,
    gateway: true,
    edge: true,
    prometheus: true,
    nodeOutput: "inherit",
    log: say,
  });
} catch (error) {
  console.error(
    `[cluster] failed to start: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
}

const first = cluster.nodeUrl(0);
const other = cluster.nodeUrl(Math.min(1, cluster.nodes.length - 1));
console.log(`
  chat cluster is up (data in ${cluster.dataDir})
    open the chat    ${cluster.edgeUrl}/   (the edge; its metrics: ${cluster.edgeAdminUrl}/metrics)
    gateway          ${cluster.gatewayUrl}   (status: /.gateway/status)
    nodes             ${cluster.nodes.map((node) => node.url).join("  ")}
    prometheus        ${cluster.prometheusUrl ?? "(not installed: apt-get install prometheus)"}
    redis             ${cluster.redisUrl}
    postgres primary  ${cluster.primaryUrl}
    postgres replica  ${cluster.replicaUrl}

  try it:
    curl -N ${other}/api/rooms/lobby/stream &
    curl -X POST ${first}/api/rooms/lobby/messages -H 'content-type: application/json' -d '{"body":"hello"}'

  Ctrl-C stops everything.
`);
