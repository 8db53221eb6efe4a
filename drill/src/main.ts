/**
 * `npm run drill -- <scenario> [options]`: a failover drill. Clients on every transport chat
 * through the public entry while the scenario breaks nodes, Redis or Postgres; at the end
 * every client's history is checked against Postgres. Exits 1 unless nothing was lost,
 * doubled or reordered and every send went through.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../../cluster/launcher.ts";
import { runDrill } from "./drill.ts";
import { summary, writeReport } from "./report.ts";
import { SCENARIOS } from "./scenarios.ts";
import { composeTarget, localTarget, type Target } from "./targets.ts";

const USAGE = `usage: npm run drill -- <scenario> [--target local|compose] [--duration S]
       [--clients N] [--rooms N] [--nodes N] [--project NAME] [--entry URL] [--out DIR]

scenarios:
${Object.entries(SCENARIOS)
  .map(([name, s]) => `  ${name.padEnd(8)} ${s.description}`)
  .join("\n")}

  --target local    a local cluster of its own (free ports, temp folder; default)
  --target compose  the running Compose stack (--project, default "chat"; --entry, default
                    http://127.0.0.1:8080)
  --duration S      seconds of chat while the faults run (default 40)
  --clients N       clients per transport (default 4; six transports)`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string", default: "local" },
    duration: { type: "string", default: "40" },
    clients: { type: "string", default: "4" },
    rooms: { type: "string", default: "3" },
    nodes: { type: "string", default: "4" },
    project: { type: "string", default: process.env.COMPOSE_PROJECT_NAME ?? "chat" },
    entry: { type: "string", default: "http://127.0.0.1:8080" },
    out: { type: "string" },
    help: { type: "boolean", default: false },
  },
});

const scenario = positionals[0];
if (values.help || !scenario || !SCENARIOS[scenario]) {
  console.error(scenario && !values.help ? `unknown scenario "${scenario}"\n\n${USAGE}` : USAGE);
  process.exit(2);
}
const number = (name: string, raw: string | undefined, min: number, max: number) => {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    console.error(`--${name} must be an integer from ${min} to ${max}, got ${raw}`);
    process.exit(2);
  }
  return value;
};
const durationS = number("duration", values.duration, 10, 3600);
const clients = number("clients", values.clients, 1, 500);
const rooms = number("rooms", values.rooms, 1, 100);
const nodes = number("nodes", values.nodes, 2, 32);

const say = (line: string) => process.stderr.write(`${line}\n`);
let target: Target;
if (values.target === "compose") {
  target = composeTarget({ project: values.project, entry: values.entry });
} else if (values.target === "local") {
  say(`[drill] starting a local cluster with ${nodes} nodes, the gateway and the edge`);
  target = await localTarget(nodes, (line) => say(`[cluster] ${line}`));
} else {
  console.error(`--target must be local or compose, got ${values.target}`);
  process.exit(2);
}

say(`[drill] ${scenario}: ${SCENARIOS[scenario]?.description}`);
try {
  const result = await runDrill({
    scenario,
    target,
    durationMs: durationS * 1000,
    clientsPerTransport: clients,
    rooms,
    sendEveryMs: 1000,
    sendDeadlineMs: 30_000,
  });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const dir = values.out ?? join(REPO_ROOT, "drill-results", `${scenario}-${target.name}-${stamp}`);
  const files = writeReport(result, dir);
  console.log(summary(result));
  console.log(`  wrote ${files.json} and ${files.html}`);
  process.exitCode = result.passed ? 0 : 1;
} finally {
  await target.close();
}
