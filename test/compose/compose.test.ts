import { execFileSync, execSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort, REPO_ROOT } from "../../cluster/launcher.ts";
import { runDrill } from "../../drill/src/drill.ts";
import { summary } from "../../drill/src/report.ts";
import { composeTarget } from "../../drill/src/targets.ts";
import { range, receive, seqs, sleep } from "../support/clients.ts";

/**
 * The real Compose stack, as users run it: `up --scale node=4`, chat through the edge, kill a
 * node container, rescale, tear down with the volumes. Docker comes from
 * ../shared/tools/docker-offline.sh (engine, compose v1 and local base images). Grafana's
 * image cannot be pulled here, so every other service is started by name.
 */
const PROJECT = `chat${process.pid}`;
const SERVICES = ["pg-primary", "pg-replica", "redis", "node", "gateway", "edge", "prometheus"];
let edge = "";
let prometheus = "";
let env: NodeJS.ProcessEnv = {};

function compose(...args: string[]): string {
  return execFileSync("docker-compose", ["-p", PROJECT, ...args], {
    cwd: REPO_ROOT,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** What the gateway sees: one of its workers' status (they share discovery). */
function gatewayStatus(): { upstreams: Array<{ state: string }> } {
  const script =
    "fetch('http://127.0.0.1:8000/.gateway/status').then(r=>r.text()).then(t=>console.log(t))";
  return JSON.parse(compose("exec", "-T", "gateway", "node", "-e", script));
}

/**
 * An engine, compose and the base images, from ../shared/tools/docker-offline.sh (beside the
 * checkout, or where DOCKER_OFFLINE_SCRIPT says); without the script, Docker must already run.
 */
function ensureDocker(): void {
  const script = [
    process.env.DOCKER_OFFLINE_SCRIPT,
    join(REPO_ROOT, "..", "shared", "tools", "docker-offline.sh"),
    "/work/shared/tools/docker-offline.sh",
  ].find((path) => path && existsSync(path));
  if (script) execSync(`bash ${script}`, { stdio: "inherit" });
  else execSync("docker info && docker-compose version", { stdio: "inherit" });
}

/** Polls outside a test (expect.poll only runs inside one). */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(1000);
  }
  throw new Error(`gave up waiting for ${what} after ${timeoutMs} ms:\n${compose("ps")}`);
}

/** CAs added to this machine (a TLS-intercepting proxy's): npm inside the build needs them. */
function localCertificates(): string {
  const dir = "/usr/local/share/ca-certificates";
  if (!existsSync(dir)) return "";
  return readdirSync(dir)
    .filter((file) => file.endsWith(".crt"))
    .map((file) => readFileSync(join(dir, file), "utf8"))
    .join("\n");
}

beforeAll(async () => {
  ensureDocker();
  const [edgePort, promPort] = await Promise.all([findFreePort(), findFreePort()]);
  edge = `http://127.0.0.1:${edgePort}`;
  prometheus = `http://127.0.0.1:${promPort}`;
  env = {
    ...process.env,
    EDGE_PORT: String(edgePort),
    PROMETHEUS_PORT: String(promPort),
    EXTRA_CA_CERT: process.env.EXTRA_CA_CERT ?? localCertificates(),
  };
  compose("build");
  compose("up", "-d", "--scale", "node=4", ...SERVICES);
  await waitFor("the edge to answer", async () => (await fetch(`${edge}/api/rooms`)).ok, 240_000);
}, 1_200_000);

afterAll(() => {
  compose("down", "-v", "--remove-orphans");
}, 300_000);

describe("docker compose up --scale node=4", () => {
  it("the gateway and Prometheus both see 4 nodes", async () => {
    await expect
      .poll(() => gatewayStatus().upstreams.filter((u) => u.state === "healthy").length, {
        timeout: 60_000,
      })
      .toBe(4);
    const upNodes = async () => {
      const targets = (await (await fetch(`${prometheus}/api/v1/targets`)).json()) as {
        data: { activeTargets: Array<{ labels: { job: string }; health: string }> };
      };
      return targets.data.activeTargets.filter((t) => t.labels.job === "node" && t.health === "up")
        .length;
    };
    await expect.poll(upNodes, { timeout: 90_000, interval: 2000 }).toBe(4);
  });

  it("chat works through the edge, and survives docker kill of a node", async () => {
    const room = `compose-${randomUUID().slice(0, 8)}`;
    const receivers = (["sse", "longpoll"] as const).map((t) => receive(t, () => edge, room));
    await sleep(500);
    const victim = compose("ps", "-q", "node").trim().split("\n")[0] ?? "";
    const total = 40;
    for (let i = 0; i < total; i++) {
      if (i === 10) execFileSync("docker", ["kill", victim]);
      for (let attempt = 0; ; attempt++) {
        const response = await fetch(`${edge}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `m${i}`, client_id: `${room}-${i}` }),
        }).catch(() => null);
        if (response && response.status < 300) break;
        if (attempt > 50) throw new Error(`send ${i} kept failing`);
        await sleep(200);
      }
    }
    for (const receiver of receivers) {
      await expect.poll(() => receiver.messages.length, { timeout: 60_000 }).toBe(total);
      expect(seqs(receiver.messages)).toEqual(range(1, total));
      receiver.close();
    }
  });

  it("the kill drill passes against the stack: nothing lost, doubled or reordered", async () => {
    execFileSync("docker", ["start", ...compose("ps", "-q", "node").trim().split("\n")]);
    await expect
      .poll(() => gatewayStatus().upstreams.filter((u) => u.state === "healthy").length, {
        timeout: 60_000,
      })
      .toBe(4);
    const result = await runDrill({
      scenario: "kill",
      target: composeTarget({ project: PROJECT, entry: edge, env }),
      durationMs: 24_000,
      clientsPerTransport: 2,
      rooms: 2,
      sendEveryMs: 1000,
      sendDeadlineMs: 30_000,
      progress: () => {},
    });
    expect(result.passed, summary(result)).toBe(true);
    expect(result.events.filter((e) => e.label.startsWith("kill -9")).length).toBeGreaterThan(0);
  });

  it("streaming replication survives restarts of either side", async () => {
    compose("restart", "pg-replica");
    compose("restart", "pg-primary");
    const room = `repl-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 5; i++) {
      await expect
        .poll(
          async () =>
            (
              await fetch(`${edge}/api/rooms/${room}/messages`, {
                method: "POST",
                body: JSON.stringify({ body: `r${i}`, client_id: `${room}-${i}` }),
              }).catch(() => null)
            )?.status,
          { timeout: 60_000, interval: 500 },
        )
        .toBeLessThan(300);
    }
    const psql = (service: string, sql: string) =>
      compose("exec", "-T", service, "psql", "-U", "chat", "-d", "chat", "-At", "-c", sql).trim();
    await expect
      .poll(() => psql("pg-primary", "SELECT state FROM pg_stat_replication"), { timeout: 60_000 })
      .toBe("streaming");
    await expect
      .poll(() => psql("pg-replica", `SELECT count(*) FROM messages WHERE room = '${room}'`), {
        timeout: 60_000,
      })
      .toBe("5");
  });

  it("--scale node=6 then node=2: traffic follows with no config edit", async () => {
    compose("up", "-d", "--no-recreate", "--scale", "node=6", "node");
    await expect
      .poll(() => gatewayStatus().upstreams.filter((u) => u.state === "healthy").length, {
        timeout: 120_000,
        interval: 2000,
      })
      .toBe(6);
    compose("up", "-d", "--no-recreate", "--scale", "node=2", "node");
    await expect
      .poll(() => gatewayStatus().upstreams.length, { timeout: 120_000, interval: 2000 })
      .toBe(2);
    const served = new Set<string>();
    for (let i = 0; i < 30; i++)
      served.add((await fetch(`${edge}/api/rooms`)).headers.get("x-chat-node") ?? "");
    expect(served.size).toBe(2);
  });
});
