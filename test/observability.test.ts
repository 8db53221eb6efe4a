import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Socket } from "phoenix";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { parse } from "yaml";
import { REPO_ROOT } from "../cluster/launcher.ts";
import { receive, sleep } from "./support/clients.ts";
import { freshRoom, useCluster } from "./support/cluster.ts";
import { joinRoom } from "./support/phoenix.ts";

const OBSERVABILITY = join(REPO_ROOT, "observability");
const RULES_FILE = join(OBSERVABILITY, "prometheus", "rules", "chat.rules.yml");
const DASHBOARD_FILE = join(OBSERVABILITY, "grafana", "dashboards", "chat-cluster.json");

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: Array<{ expr: string; datasource?: { uid: string } }>;
}

const rules = (
  parse(readFileSync(RULES_FILE, "utf8")) as { groups: Array<{ rules: Rule[] }> }
).groups.flatMap((group) => group.rules);
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as { panels: Panel[] };
const graphs = dashboard.panels.filter((panel) => panel.type !== "row");

/** An alert is `<figure> <comparison> <threshold>`; the figure is what must return data. */
function alertFigure(expr: string): string {
  const match = /^([\s\S]+?)\s*(==|!=|>=|<=|>|<)\s*-?[\d.]+\s*$/.exec(expr.trim());
  if (!match?.[1])
    throw new Error(`alert expression not of the form <figure> <op> <number>: ${expr}`);
  return match[1];
}

describe("Prometheus and Grafana configuration", () => {
  it("promtool accepts both Prometheus configs and the alert rules", () => {
    const dir = mkdtempSync(join(tmpdir(), "promtool-"));
    cpSync(join(OBSERVABILITY, "prometheus"), dir, { recursive: true });
    mkdirSync(join(dir, "targets"));
    for (const job of ["node", "gateway", "edge"])
      writeFileSync(join(dir, "targets", `${job}.json`), "[]");
    const check = (...args: string[]) =>
      execFileSync("promtool", ["check", ...args], { cwd: dir, encoding: "utf8" });
    expect(check("rules", "rules/chat.rules.yml")).toContain("SUCCESS: 11 rules found");
    expect(check("config", "prometheus.yml")).toContain("is valid prometheus config");
    expect(check("config", "prometheus.local.yml")).toContain("is valid prometheus config");
  });

  it("has an alert for each failure the issue names", () => {
    const alerts = rules.flatMap((rule) => (rule.alert ? [rule.alert] : []));
    expect(alerts.sort()).toEqual(
      [
        "ChatDeliveryLatencyHigh",
        "ChatNodeDown",
        "ChatNodeShedding",
        "EdgeHitRatioDropped",
        "GatewayNoHealthyUpstream",
        "PostgresReplicaLagging",
        "RedisDown",
      ].sort(),
    );
  });

  it("Grafana's provisioning points at the datasource and folder the dashboard and compose use", () => {
    const provisioning = join(OBSERVABILITY, "grafana", "provisioning");
    const sources = parse(
      readFileSync(join(provisioning, "datasources", "prometheus.yml"), "utf8"),
    ) as { datasources: Array<{ uid: string; type: string; url: string }> };
    const providers = parse(readFileSync(join(provisioning, "dashboards", "chat.yml"), "utf8")) as {
      providers: Array<{ options: { path: string } }>;
    };
    const compose = parse(readFileSync(join(REPO_ROOT, "docker-compose.yml"), "utf8")) as {
      services: Record<string, { volumes?: string[]; ports?: string[] }>;
    };
    const source = sources.datasources[0];
    expect(source).toMatchObject({ type: "prometheus", url: "http://prometheus:9090" });
    const grafanaVolumes = compose.services.grafana?.volumes ?? [];
    expect(grafanaVolumes).toContain(
      `./observability/grafana/dashboards:${providers.providers[0]?.options.path}:ro`,
    );
    expect(grafanaVolumes).toContain(
      "./observability/grafana/provisioning:/etc/grafana/provisioning:ro",
    );
    expect(compose.services.grafana?.ports?.[0]).toMatch(/:3000$/);
    for (const panel of graphs) {
      expect(panel.datasource?.uid, panel.title).toBe(source?.uid);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.datasource?.uid).toBe(source?.uid);
    }
  });

  it("the dashboard covers what operators watch", () => {
    const exprs = graphs.flatMap((panel) => panel.targets?.map((t) => t.expr) ?? []).join("\n");
    for (const metric of [
      'up{job="node"}',
      "chat_open_streams",
      "chat_messages_stored_total",
      "chat_delivery_latency_ms_bucket",
      "gateway_upstream_up",
      "gateway_retries_total",
      "gateway_refused_connections_total",
      "gateway_client_connections",
      "edge_cache_hits_total",
      "edge_bytes_served_from_cache_total",
      "chat_pg_replica_lag_seconds",
      "chat_pg_pool_connections",
      "chat_redis_up",
      "eventloop_lag_p99_seconds",
      "resident_memory_bytes",
    ])
      expect(exprs).toContain(metric);
  });
});

describe("a real Prometheus scraping the local cluster", async () => {
  const cluster = await useCluster({
    nodes: 3,
    gateway: { workers: 2, env: { HEALTH_INTERVAL_MS: "300" } },
    edge: true,
    prometheus: { scrapeInterval: "1s" },
  });
  const prometheus = cluster.prometheusUrl ?? "";
  const edge = cluster.edgeUrl ?? "";

  async function query(expr: string): Promise<unknown[]> {
    const url = `${prometheus}/api/v1/query?query=${encodeURIComponent(expr)}`;
    const body = (await (await fetch(url)).json()) as {
      status: string;
      error?: string;
      data?: { result: unknown[] };
    };
    if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
    return body.data?.result ?? [];
  }

  /** What a chatting cluster does: pages through the edge, sends, streams, sockets, a dead node. */
  async function chatter(): Promise<() => void> {
    const room = freshRoom("observed");
    const streams = (["sse", "longpoll"] as const).map((t) => receive(t, () => edge, room));
    const socket = new Socket(`${edge.replace("http", "ws")}/socket`, {
      transport: WebSocket,
    } as object);
    socket.connect();
    await joinRoom(socket, `room:${room}`).joined;
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        await fetch(`${edge}/`).then((r) => r.arrayBuffer());
        await fetch(`${edge}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `m${i}`, client_id: randomUUID() }),
        }).catch(() => null);
        await fetch(`${edge}/api/rooms/${room}/messages?after=oops`).catch(() => null); // a 400
        await sleep(50);
      }
    })();
    return () => {
      stop = true;
      socket.disconnect();
      for (const stream of streams) stream.close();
      void load;
    };
  }

  /** Concurrent requests through the gateway for `ms`, spread over every node it routes to. */
  async function burstThroughGateway(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await Promise.all(
        Array.from({ length: 10 }, () =>
          fetch(`${cluster.gatewayUrl}/api/rooms/burst/messages?after=oops`)
            .then((r) => r.arrayBuffer())
            .catch(() => null),
        ),
      );
      await sleep(20);
    }
  }

  it("every dashboard and alert expression returns data", async () => {
    const stopChatter = await chatter();
    try {
      await sleep(3000);
      // A node killed under load: the gateway retries and ejects, Prometheus sees it down.
      // The burst makes sure requests are routed to it before a health check notices.
      await Promise.all([cluster.stopNode(2, "SIGKILL"), burstThroughGateway(1500)]);
      await sleep(4000);
      const figures = [
        ...graphs.flatMap((panel) =>
          (panel.targets ?? []).map((t) => ({
            where: `panel "${panel.title}"`,
            expr: t.expr.replaceAll("$__rate_interval", "30s"),
          })),
        ),
        ...rules.map((rule) => ({
          where: rule.alert ? `alert ${rule.alert}` : `record ${rule.record}`,
          expr: rule.alert ? alertFigure(rule.expr) : (rule.record ?? ""),
        })),
      ];
      const empty = async () => {
        const missing: string[] = [];
        for (const { where, expr } of figures)
          if ((await query(expr)).length === 0) missing.push(`${where}: ${expr}`);
        return missing;
      };
      await expect.poll(empty, { timeout: 30_000, interval: 1000 }).toEqual([]);
      // And the node-down alert fires for the killed node.
      await expect
        .poll(async () => (await query('ALERTS{alertname="ChatNodeDown"}')).length, {
          timeout: 60_000,
          interval: 1000,
        })
        .toBeGreaterThan(0);
    } finally {
      stopChatter();
      await cluster.startNode(2);
    }
  }, 120_000);
});
