import { randomUUID } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { Agent, get, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Socket } from "phoenix";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { GatewayProcess } from "../cluster/gateway.ts";
import { findFreePort, REPO_ROOT } from "../cluster/launcher.ts";
import { fixed, postOn, range, receive, seqs, sleep } from "./support/clients.ts";
import {
  freshRoom,
  inProcessNode,
  metric,
  type OccupiedConnection,
  ONE_PG_CONNECTION,
  occupyOnlyConnection,
  storedSeqs,
  useCluster,
} from "./support/cluster.ts";
import { joinRoom } from "./support/phoenix.ts";

const cluster = await useCluster({
  nodes: 3,
  gateway: {
    workers: 2,
    env: {
      HEALTH_INTERVAL_MS: "300",
      SLOW_START_MS: "6000",
      RESPONSE_TIMEOUT_MS: "3000",
      HEADERS_TIMEOUT_MS: "2000",
    },
  },
});
const gateway = cluster.gatewayUrl ?? "";

/** Steady HTTP load through the gateway: history reads and sends with client ids, counting failures. */
function steadyLoad(room: string, workers = 4) {
  let stop = false;
  const failures: string[] = [];
  let requests = 0;
  const nodesSeen = new Set<string>();
  const done = Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const read = await fetch(`${gateway}/api/rooms/${room}/messages?after=0&limit=5`).catch(
          (e: Error) => e,
        );
        const write = await fetch(`${gateway}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `w${w}-${i}`, client_id: randomUUID() }),
        }).catch((e: Error) => e);
        for (const response of [read, write]) {
          requests++;
          if (response instanceof Error) failures.push(response.message);
          else {
            if (response.status >= 300)
              failures.push(`${response.status} ${await response.text()}`);
            else await response.arrayBuffer();
            nodesSeen.add(response.headers?.get("x-chat-node") ?? "");
          }
        }
      }
    }),
  );
  return {
    failures,
    nodesSeen,
    get requests() {
      return requests;
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

const status = async () =>
  (await (await fetch(`${gateway}/.gateway/status`)).json()) as {
    upstreams: Array<{ address: string; state: string; slowStart: number }>;
  };
interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: string;
}

async function answer(response: IncomingMessage): Promise<Answer> {
  let body = "";
  for await (const chunk of response.setEncoding("utf8")) body += chunk;
  return { status: response.statusCode ?? 0, retryAfter: response.headers["retry-after"], body };
}

/** A request on a connection of its own, from `localAddress` (the gateway limits per address). */
function requestFrom(url: string, localAddress: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, localAddress }, (response) => void answer(response).then(resolve)).on(
      "error",
      reject,
    );
  });
}

/** An upgrade from `localAddress`: the open socket, or the answer it was refused with. */
function upgradeFrom(url: string, localAddress: string): Promise<WebSocket | Answer> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { localAddress });
    socket.on("open", () => resolve(socket));
    socket.on("unexpected-response", (_request, response) => void answer(response).then(resolve));
    socket.on("error", reject);
  });
}

const refusedWith = (code: string) => ({
  status: code === "rate_limited" ? 429 : 503,
  retryAfter: "1",
  body: expect.stringContaining(`"code":"${code}"`),
});

const stateOf = async (port: number) =>
  (await status()).upstreams.find((u) => u.address.endsWith(`:${port}`))?.state;

/** A one-worker gateway beside the cluster's, with its own settings, to the given node URLs. */
async function extraGateway(
  env: Record<string, string>,
  nodeUrls = cluster.nodes.map((node) => node.url),
) {
  const dir = await mkdtemp(join(tmpdir(), "chat-extra-gateway-"));
  const adminPort = await findFreePort();
  const instance = new GatewayProcess({
    repoRoot: REPO_ROOT,
    port: await findFreePort(),
    adminPort,
    dataDir: dir,
    logDir: dir,
    output: "pipe-to-file",
    workers: 1,
    env,
  });
  instance.setUpstreams(nodeUrls.map((url) => new URL(url).host));
  return { instance, admin: `http://127.0.0.1:${adminPort}` };
}

describe("the gateway", () => {
  it("balances without stickiness: consecutive requests of one client reach every node", async () => {
    const nodes = new Set<string>();
    for (let i = 0; i < 30; i++)
      nodes.add((await fetch(`${gateway}/api/rooms`)).headers.get("x-chat-node") ?? "");
    expect(nodes.size).toBe(3);
  });

  it("kill -9 of a node under steady load: not one failed request", async () => {
    const load = steadyLoad(freshRoom("kill"));
    await sleep(800);
    await cluster.stopNode(1, "SIGKILL");
    await sleep(1500);
    await load.stop();
    expect(load.requests).toBeGreaterThan(50);
    expect(load.failures).toEqual([]);
    await cluster.startNode(1);
    await expect
      .poll(() => stateOf(cluster.nodes[1]?.port ?? 0), { timeout: 10_000 })
      .toBe("healthy");
  });

  it("SIGTERM of a node under steady load: not one failed request", async () => {
    const load = steadyLoad(freshRoom("term"));
    await sleep(800);
    await cluster.stopNode(2, "SIGTERM");
    await sleep(800);
    await load.stop();
    expect(load.failures).toEqual([]);
    await cluster.startNode(2);
  });

  it("clients on every transport resume through the gateway after their node dies", async () => {
    const room = freshRoom("resume");
    const viaGateway = fixed(gateway);
    const receivers = (["sse", "longpoll", "shortpoll"] as const).map((t) =>
      receive(t, viaGateway, room),
    );
    const socket = new Socket(`${gateway.replace("http", "ws")}/socket`, {
      transport: WebSocket,
      reconnectAfterMs: () => 200,
      rejoinAfterMs: () => 200,
    } as object);
    socket.connect();
    const phoenix = joinRoom(socket, `room:${room}`, { fromStart: true });
    const { node } = (await phoenix.joined) as { node: string };
    const total = 50;
    const statuses: number[] = [];
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        const response = await fetch(`${gateway}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `m${i}`, client_id: randomUUID() }),
        });
        // 200 is the original returned to a send the gateway retried after its node died.
        statuses.push(response.status);
        await sleep(30);
      }
    })();
    await sleep(500);
    // Kill the node holding the Phoenix socket (the join reply names it); the other clients
    // are spread over the nodes by the gateway, so some usually share its fate.
    const victim = Number(node.replace("node-", ""));
    await cluster.stopNode(victim, "SIGKILL");
    try {
      await sending;
      expect(statuses.filter((status) => status >= 300)).toEqual([]);
      for (const client of [...receivers, { name: "phoenix", messages: phoenix.messages }]) {
        await expect
          .poll(() => client.messages.length, { timeout: 30_000, message: client.name })
          .toBe(total);
        expect(seqs(client.messages), client.name).toEqual(range(1, total));
      }
      expect(await storedSeqs(cluster, room)).toEqual(range(1, total));
    } finally {
      socket.disconnect();
      for (const r of receivers) r.close();
      await cluster.startNode(victim);
    }
  });

  it("a hung node (SIGSTOP) is ejected, and taken back after SIGCONT", async () => {
    const node = cluster.nodes[2];
    if (!node?.pid) throw new Error("node 2 is not running");
    process.kill(node.pid, "SIGSTOP");
    try {
      // Every worker checks on its own: wait until a run of status answers all agree.
      const ejectedEverywhere = async () => {
        for (let i = 0; i < 6; i++) if ((await stateOf(node.port)) === "healthy") return false;
        return true;
      };
      await expect.poll(ejectedEverywhere, { timeout: 10_000 }).toBe(true);
      const load = steadyLoad(freshRoom("stop"), 2);
      await sleep(1000);
      await load.stop();
      expect(load.failures).toEqual([]);
    } finally {
      process.kill(node.pid, "SIGCONT");
    }
    await expect.poll(() => stateOf(node.port), { timeout: 10_000 }).toBe("healthy");
  });

  it("a new node gets traffic without a restart, ramping up (slow start)", async () => {
    const added = await cluster.addNode();
    // Each worker discovers it within a second; its share ramps up from a fraction.
    const ramp = async () =>
      (await status()).upstreams.find((u) => u.address.endsWith(`:${added.port}`))?.slowStart;
    const ramping = async () => {
      const share = await ramp();
      return share !== undefined && share > 0 && share < 1;
    };
    await expect.poll(ramping, { timeout: 5000 }).toBe(true);
    const served = new Set<string>();
    await expect
      .poll(
        async () => {
          for (let i = 0; i < 20; i++)
            served.add((await fetch(`${gateway}/api/rooms`)).headers.get("x-chat-node") ?? "");
          return served.has(`node-${added.index}`);
        },
        { timeout: 15_000 },
      )
      .toBe(true);
  });

  it("slowloris and oversized-header clients do not starve anyone, and get no stack trace", async () => {
    const slow = Array.from({ length: 20 }, () => {
      const socket = connect(Number(new URL(gateway).port), "127.0.0.1");
      socket.on("error", () => {});
      socket.resume(); // reads, so it sees the gateway hang up
      socket.write("GET /api/rooms HTTP/1.1\r\nHost: x\r\n");
      const drip = setInterval(() => socket.write("X-Slow: 1\r\n"), 500);
      socket.on("close", () => clearInterval(drip));
      return socket;
    });
    const started = Date.now();
    const response = await fetch(`${gateway}/api/rooms`);
    expect(response.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
    const big = await fetch(`${gateway}/api/rooms`, {
      headers: { "x-big": "y".repeat(20_000) },
    }).catch((e: Error) => e);
    if (!(big instanceof Error)) expect(big.status).toBe(431);
    await expect.poll(() => slow.filter((s) => !s.destroyed).length, { timeout: 8000 }).toBe(0);
    expect((await fetch(`${gateway}/api/rooms`)).status).toBe(200);
  });

  it("over MAX_CONNECTIONS or MAX_NEW_CONNECTIONS_PER_IP it answers 503 or 429 with Retry-After, not a hang-up", async () => {
    const { instance: strict, admin } = await extraGateway({
      MAX_CONNECTIONS: "3",
      MAX_NEW_CONNECTIONS_PER_IP: "2",
    });
    await strict.start();
    const http = `${strict.url}/api/rooms`;
    const ws = `${strict.url.replace("http", "ws")}/socket/websocket?vsn=2.0.0`;
    let nextAddress = 10;
    const fresh = () => `127.0.0.${nextAddress++}`; // a full token bucket each
    const admitted = () => metric(admin, "gateway_client_connections");
    try {
      await expect.poll(admitted, { timeout: 10_000 }).toBe(0); // the launcher's health check closed
      // Three held connections reach the limit; the fourth is answered 503, upgrade or not.
      const held = await Promise.all([0, 1, 2].map(() => upgradeFrom(ws, fresh())));
      expect(held.map((s) => (s instanceof WebSocket ? "open" : s))).toEqual([
        "open",
        "open",
        "open",
      ]);
      expect(await requestFrom(http, fresh())).toMatchObject(refusedWith("overloaded"));
      expect(await upgradeFrom(ws, fresh())).toMatchObject(refusedWith("overloaded"));
      expect(await admitted()).toBe(3); // the refused ones never counted
      for (const socket of held) (socket as WebSocket).terminate();
      await expect.poll(admitted).toBe(0);
      expect((await requestFrom(http, fresh())).status).toBe(200);

      // Two new connections a second per address: a burst of six gets at least one 429.
      const address = fresh();
      const burst = await Promise.all(range(1, 6).map(() => requestFrom(http, address)));
      const refused = burst.filter((answer) => answer.status !== 200);
      expect(refused.length).toBeGreaterThan(0);
      for (const answer of refused) expect(answer).toMatchObject(refusedWith("rate_limited"));
      const upgrades = await Promise.all(range(1, 4).map(() => upgradeFrom(ws, address)));
      const cut = upgrades.filter((u): u is Answer => !(u instanceof WebSocket));
      expect(cut.length).toBeGreaterThan(0);
      for (const answer of cut) expect(answer).toMatchObject(refusedWith("rate_limited"));
      for (const u of upgrades) if (u instanceof WebSocket) u.terminate();
      // Another address is not held back meanwhile.
      expect((await requestFrom(http, fresh())).status).toBe(200);
    } finally {
      await strict.stop();
    }
  });

  it("a send a node sheds as 503 overloaded is retried on another node; with none left, the node's answer goes back", async () => {
    const busy = await inProcessNode(cluster, { NODE_ID: "busy", ...ONE_PG_CONNECTION });
    const other = cluster.nodes.find((node) => node.running)?.url ?? "";
    // Checked ready once, before the node gets busy.
    const checkedOnce = { HEALTH_INTERVAL_MS: "600000" };
    const both = await extraGateway(checkedOnce, [busy.url, other]);
    const alone = await extraGateway(checkedOnce, [busy.url]);
    const room = freshRoom("shed");
    let occupied: OccupiedConnection | undefined;
    const post = (url: string, i: number) =>
      fetch(`${url}/api/rooms/${room}/messages`, {
        method: "POST",
        body: JSON.stringify({ body: `m${i}`, client_id: `shed-${i}` }),
      });
    try {
      await Promise.all([both.instance.start(), alone.instance.start()]);
      occupied = await occupyOnlyConnection(cluster, busy.url);

      // One by one, each has even odds of reaching the busy node first.
      const nodes: string[] = [];
      for (const i of range(1, 20)) {
        const response = await post(both.instance.url, i);
        expect(response.status).toBe(201);
        nodes.push(response.headers.get("x-chat-node") ?? "");
      }
      expect(nodes).not.toContain("busy");
      expect(await metric(both.admin, 'gateway_retries_total{reason="overloaded"')).toBeGreaterThan(
        0,
      );
      expect(await metric(busy.url, "chat_pg_pool_timeouts_total")).toBeGreaterThan(0);
      expect(await storedSeqs(cluster, room)).toEqual(range(1, 20));

      const shed = await post(alone.instance.url, 21);
      expect(shed.status).toBe(503);
      expect(shed.headers.get("retry-after")).toBe("1");
      expect(shed.headers.get("x-chat-overloaded")).toBeNull();
      expect(await shed.json()).toMatchObject({ error: { code: "overloaded", retryable: true } });

      expect(await occupied.release()).toBe(201);
      expect((await post(alone.instance.url, 21)).status).toBe(201);
      expect(await storedSeqs(cluster, room)).toEqual(range(1, 21));
    } finally {
      await occupied?.release();
      await Promise.all([both.instance.stop(), alone.instance.stop()]);
      await busy.stop();
    }
  });

  it("drops the rest of a body a node refused unread (413), so the connection carries the next request", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const url = `${gateway}/api/rooms/${freshRoom("unread")}/messages`;
    const oversized = JSON.stringify({ body: "x".repeat(4_000_000) }); // more than socket buffers hold
    try {
      for (let i = 0; i < 3; i++) {
        const refused = await postOn(agent, url, oversized);
        expect(refused.status).toBe(413);
        const next = await postOn(agent, url, JSON.stringify({ body: `after ${i}` }));
        expect(next).toEqual({ status: 201, connection: refused.connection });
      }
    } finally {
      agent.destroy();
    }
  });

  it("closes a connection whose refused body stops coming, DISCARD_BODY_TIMEOUT_MS after the answer", async () => {
    const { instance: strict } = await extraGateway({ DISCARD_BODY_TIMEOUT_MS: "500" });
    await strict.start();
    const stalled = connect(Number(new URL(strict.url).port), "127.0.0.1");
    try {
      stalled.write(
        `POST /api/rooms/${freshRoom("unread")}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n${"x".repeat(100_000)}`,
      );
      let answer = "";
      let answeredAt = 0;
      stalled.setEncoding("utf8").on("data", (chunk: string) => {
        answer += chunk;
        answeredAt ||= Date.now();
      });
      const closed = await Promise.race([
        new Promise((resolve) => stalled.once("close", () => resolve(true))),
        sleep(5000).then(() => false),
      ]);
      expect(answer).toMatch(/^HTTP\/1\.1 413 /);
      expect(closed).toBe(true);
      expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(400);
    } finally {
      stalled.destroy();
      await strict.stop();
    }
  });

  it("closes a tunnel idle for STREAM_IDLE_TIMEOUT_MS, and keeps one with traffic open", async () => {
    const { instance: idle } = await extraGateway({ STREAM_IDLE_TIMEOUT_MS: "1500" });
    await idle.start();
    const url = `${idle.url.replace("http", "ws")}/socket/websocket?vsn=2.0.0`;
    const open = () =>
      new Promise<WebSocket>((resolve, reject) => {
        const socket = new WebSocket(url);
        socket.once("open", () => resolve(socket)).once("error", reject);
      });
    try {
      const [silent, chatty] = await Promise.all([open(), open()]);
      const closedAt = new Map<WebSocket, number>();
      const started = Date.now();
      for (const socket of [silent, chatty])
        socket.once("close", () => closedAt.set(socket, Date.now() - started));
      const beat = setInterval(
        () => chatty.send(JSON.stringify([null, "hb", "phoenix", "heartbeat", {}])),
        400,
      );
      await sleep(3500);
      clearInterval(beat);
      expect(closedAt.get(silent)).toBeGreaterThanOrEqual(1400);
      expect(closedAt.get(silent)).toBeLessThan(3500);
      expect(closedAt.has(chatty)).toBe(false);
      chatty.terminate();
    } finally {
      await idle.stop();
    }
  });

  it("checks each node once per HEALTH_INTERVAL_MS for all its workers together, not once per worker", async () => {
    const readyChecks = () =>
      metric(cluster.nodeUrl(0), 'chat_http_requests_total{method="GET",route="/readyz"');
    const before = await readyChecks();
    await sleep(3000);
    const checks = (await readyChecks()) - before;
    // 3 s at 300 ms: 10 for the gateway as a whole; its 2 workers checking apart would make 20.
    expect(checks).toBeGreaterThanOrEqual(5);
    expect(checks).toBeLessThanOrEqual(12);
  });

  it("exports metrics aggregated over its workers, and a status of its upstreams", async () => {
    const text = await (await fetch(`${cluster.gatewayAdminUrl}/metrics`)).text();
    for (const name of [
      "gateway_requests_total",
      "gateway_upstream_up",
      "gateway_retries_total",
      "gateway_ejections_total",
      "gateway_proxy_overhead_ms_bucket",
    ]) {
      expect(text).toContain(name);
    }
    expect((await status()).upstreams.length).toBeGreaterThanOrEqual(3);
  });

  it("when every node fails its checks (Postgres down), it still routes to them: panic, not 503 for all", async () => {
    const live = cluster.nodes.filter((n) => n.running).length;
    await cluster.stopReplica();
    await cluster.stopPrimary();
    try {
      const anyHealthy = async () => (await status()).upstreams.some((u) => u.state === "healthy");
      await expect.poll(anyHealthy, { timeout: 15_000 }).toBe(false);
      // Nodes passively ejected earlier in this file may sit out their backoff first.
      await expect
        .poll(async () => (await fetch(`${gateway}/healthz`)).status, { timeout: 30_000 })
        .toBe(200);
      expect(await anyHealthy()).toBe(false);
    } finally {
      await cluster.startPrimary();
      await cluster.startReplica();
    }
    await expect
      .poll(async () => (await status()).upstreams.filter((u) => u.state === "healthy").length, {
        timeout: 30_000,
      })
      .toBe(live);
  });

  it("with no node reachable it answers 503 JSON, without a stack trace", async () => {
    const running = cluster.nodes.filter((n) => n.running).map((n) => n.index);
    await Promise.all(running.map((i) => cluster.stopNode(i, "SIGKILL")));
    try {
      const response = await fetch(`${gateway}/api/rooms`);
      expect([502, 503]).toContain(response.status);
      const text = await response.text();
      expect(JSON.parse(text)).toMatchObject({
        error: { code: expect.any(String), message: expect.any(String) },
      });
      expect(text).not.toMatch(/\bat .*\.(ts|js):\d+/);
      // phoenix.js reads a long poll's status from the body, and stopped for good without one.
      const poll = await fetch(`${gateway}/socket/longpoll?vsn=2.0.0&token=x`);
      expect(await poll.json()).toMatchObject({ status: 500, error: { code: expect.any(String) } });
    } finally {
      await Promise.all(running.map((i) => cluster.startNode(i)));
    }
  });
});
