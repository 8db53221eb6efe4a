import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  history,
  range,
  receive,
  roundRobin,
  sendReliably,
  seqs,
  sleep,
} from "./support/clients.ts";
import { freshRoom, liveNodes, metric, useCluster } from "./support/cluster.ts";

// A slow regular sweep, so only the Redis-down fallback and the catch-up on reconnect can deliver.
const cluster = await useCluster({ nodes: 3, nodeEnv: { SWEEP_INTERVAL_MS: "60000" } });
const anyLiveNode = roundRobin(liveNodes(cluster));

/** Sends `count` messages, one every `intervalMs`, each retried with its client id until acknowledged. */
async function chatter(room: string, count: number, intervalMs = 20): Promise<void> {
  for (let i = 0; i < count; i++) {
    await sendReliably(anyLiveNode, room, `m${i}`, randomUUID());
    await sleep(intervalMs);
  }
}

describe("failures", () => {
  it("SSE and pollers resume after their node is killed: nothing lost, nothing doubled", async () => {
    const room = freshRoom("kill");
    // Every client is on node 2 while it lives, then follows the "gateway" to a live node.
    const victim = cluster.nodes[2];
    const pick = () => (victim?.running ? victim.url : anyLiveNode());
    const receivers = (["sse", "longpoll", "shortpoll"] as const).map((t) =>
      receive(t, pick, room),
    );
    const sending = chatter(room, 60);
    await sleep(400);
    await cluster.stopNode(2, "SIGKILL");
    await sending;
    for (const receiver of receivers) {
      await expect.poll(() => receiver.messages.length, { timeout: 20_000 }).toBe(60);
      expect(seqs(receiver.messages), receiver.name).toEqual(range(1, 60));
      receiver.close();
    }
    await cluster.startNode(2);
  });

  it("Redis killed mid-run and restarted: every message delivered once, in order", async () => {
    const room = freshRoom("redis");
    const receivers = cluster.nodes.map((node) => receive("sse", () => node.url, room));
    const sending = chatter(room, 90);
    await sleep(500);
    await cluster.stopRedis("SIGKILL");
    await sleep(1500); // sends keep committing; delivery runs on Postgres meanwhile
    await cluster.startRedis();
    await sending;
    for (const receiver of receivers) {
      await expect.poll(() => receiver.messages.length, { timeout: 20_000 }).toBe(90);
      expect(seqs(receiver.messages)).toEqual(range(1, 90));
      receiver.close();
    }
    // Delivery can finish on Postgres before the node's Redis client has reconnected (its
    // retries back off): the node must come back to Redis, not at one instant.
    await expect
      .poll(() => metric(cluster.nodeUrl(0), "chat_redis_up"), { timeout: 10_000 })
      .toBe(1);
  });

  it("messages sent while Redis is down still reach other nodes", async () => {
    const room = freshRoom("noredis");
    const receiver = receive("sse", () => cluster.nodeUrl(1), room);
    await sendReliably(() => cluster.nodeUrl(0), room, "before", randomUUID());
    await expect.poll(() => receiver.messages.length, { timeout: 10_000 }).toBe(1);
    await cluster.stopRedis("SIGKILL");
    await sendReliably(() => cluster.nodeUrl(0), room, "while Redis is down", randomUUID());
    await expect
      .poll(() => receiver.messages.map((m) => m.body), { timeout: 10_000 })
      .toEqual(["before", "while Redis is down"]);
    await cluster.startRedis();
    receiver.close();
  });

  it("a publish lost while only the sender's Redis connection was down reaches nodes that never lost theirs", async () => {
    const room = freshRoom("lostpublish");
    const receivers = [1, 2].map((i) => receive("sse", () => cluster.nodeUrl(i), room));
    await sendReliably(() => cluster.nodeUrl(0), room, "before", randomUUID());
    for (const receiver of receivers)
      await expect.poll(() => receiver.messages.length, { timeout: 10_000 }).toBe(1);
    // Every node's subscriber stays up, so no reconnect sweep runs; the regular sweep is a
    // minute away. Only the publishing connections are cut.
    const redis = new Redis(cluster.redisUrl);
    const clients = String(await redis.client("LIST")).split("\n");
    const publishers = clients.filter(
      (line) =>
        / name=chat-node:\S+ /.test(line) &&
        !/ name=\S+:alive /.test(line) && // presence's own connection
        / sub=0 psub=0 /.test(line),
    );
    expect(publishers.length).toBeGreaterThan(0);
    for (const line of publishers)
      await redis.client("KILL", "ID", /^id=(\d+)/.exec(line)?.[1] ?? "");
    await redis.quit();
    await sleep(20); // the nodes see their connections close; they reconnect 100 ms later
    await sendReliably(() => cluster.nodeUrl(0), room, "while publishing failed", randomUUID());
    for (const receiver of receivers) {
      await expect
        .poll(() => receiver.messages.map((m) => m.body), { timeout: 5_000 })
        .toEqual(["before", "while publishing failed"]);
      receiver.close();
    }
  });

  it("a stalled Redis (SIGSTOP) leaves /readyz quick and ready, degraded: the gateway keeps every node", async () => {
    cluster.signalRedis("SIGSTOP");
    try {
      await sleep(200);
      const started = Date.now();
      const response = await fetch(`${cluster.nodeUrl(0)}/readyz`);
      expect(Date.now() - started).toBeLessThan(1000); // the gateway's HEALTH_TIMEOUT_MS
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({
        status: "degraded",
        checks: { primary: true, redis: false },
      });
    } finally {
      cluster.signalRedis("SIGCONT");
    }
    await expect
      .poll(
        async () =>
          ((await (await fetch(`${cluster.nodeUrl(0)}/readyz`)).json()) as { status: string })
            .status,
        { timeout: 10_000 },
      )
      .toBe("ok");
  });

  it("replica stopped: history is still served, from the primary", async () => {
    const room = freshRoom("replica");
    for (let i = 0; i < 5; i++) await sendReliably(anyLiveNode, room, `r${i}`, randomUUID());
    const fallbacksBefore = await metric(cluster.nodeUrl(1), "chat_replica_fallbacks_total");
    await cluster.stopReplica();
    try {
      expect(seqs(await history(cluster.nodeUrl(1), room))).toEqual(range(1, 5));
      expect(await metric(cluster.nodeUrl(1), "chat_replica_fallbacks_total")).toBeGreaterThan(
        fallbacksBefore,
      );
      const ready = await (await fetch(`${cluster.nodeUrl(1)}/readyz`)).json();
      expect(ready).toMatchObject({
        status: "degraded",
        checks: { primary: true, replica: false },
      });
    } finally {
      await cluster.startReplica();
    }
  });

  it("a replica that has not replayed the asked-for seq is skipped for the primary", async () => {
    const room = freshRoom("lag");
    const follower = receive("sse", () => cluster.nodeUrl(1), room); // node 1 learns the head live
    const replica = new pg.Client({ connectionString: cluster.replicaUrl });
    await replica.connect();
    try {
      await sendReliably(() => cluster.nodeUrl(0), room, "before pause", randomUUID());
      await expect.poll(() => follower.messages.length, { timeout: 10_000 }).toBe(1);
      await replica.query("SELECT pg_wal_replay_pause()");
      await sendReliably(() => cluster.nodeUrl(0), room, "after pause", randomUUID());
      await expect.poll(() => follower.messages.length, { timeout: 10_000 }).toBe(2);
      const direct = await replica.query(
        "SELECT count(*)::int AS n FROM messages WHERE room = $1",
        [room],
      );
      expect(direct.rows[0].n).toBe(1); // the replica really is behind
      expect((await history(cluster.nodeUrl(1), room, 1)).map((m) => m.body)).toEqual([
        "after pause",
      ]);
    } finally {
      await replica.query("SELECT pg_wal_replay_resume()");
      await replica.end();
      follower.close();
    }
  });

  it("a room made while the replica lags is listed at once, on every node", async () => {
    const replica = new pg.Client({ connectionString: cluster.replicaUrl });
    await replica.connect();
    try {
      await replica.query("SELECT pg_wal_replay_pause()");
      const room = freshRoom("listed");
      await sendReliably(() => cluster.nodeUrl(0), room, "makes the room", randomUUID());
      for (const node of cluster.nodes) {
        const { rooms } = (await (await fetch(`${node.url}/api/rooms?limit=1000`)).json()) as {
          rooms: { name: string }[];
        };
        expect(rooms.map((r) => r.name)).toContain(room);
      }
    } finally {
      await replica.query("SELECT pg_wal_replay_resume()");
      await replica.end();
    }
  });

  it("Postgres restarted five times: every node stays up, is ready again and sends go on", async () => {
    const ready = (url: string) =>
      fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status,
        () => 0,
      );
    for (let restart = 0; restart < 5; restart++) {
      await cluster.stopReplica();
      await cluster.stopPrimary();
      await sleep(1500); // the nodes' pools try to reopen their floor against a server that is gone
      await cluster.startPrimary();
      await cluster.startReplica();
      for (const node of cluster.nodes)
        await expect.poll(() => ready(node.url), { timeout: 15_000 }).toBe(200);
    }
    const room = freshRoom("pg-restarts");
    const sent = await sendReliably(anyLiveNode, room, "after five restarts", randomUUID());
    expect(seqs(await history(cluster.nodeUrl(2), room))).toEqual([sent.seq]);
  });

  // Last: afterwards the cluster runs on the promoted replica alone.
  it("primary lost: sends fail retryably, reads go on; after promotion nodes write to the new primary", async () => {
    const room = freshRoom("promote");
    const reader = receive("sse", () => cluster.nodeUrl(1), room);
    await chatter(room, 5, 10);
    await expect.poll(() => reader.messages.length, { timeout: 10_000 }).toBe(5);
    await cluster.stopPrimary();
    const refused = await fetch(`${cluster.nodeUrl(0)}/api/rooms/${room}/messages`, {
      method: "POST",
      body: JSON.stringify({ body: "during", client_id: "while-down" }),
    });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: { code: "unavailable", retryable: true } });
    expect(seqs(await history(cluster.nodeUrl(2), room))).toEqual(range(1, 5));
    await cluster.promoteReplica();
    // The same client id, resent: stored once, after the five, by nodes that were never restarted.
    const resent = await sendReliably(anyLiveNode, room, "during", "while-down");
    expect(resent.seq).toBe(6);
    await chatter(room, 4, 10);
    await expect.poll(() => reader.messages.length, { timeout: 10_000 }).toBe(10);
    expect(seqs(reader.messages)).toEqual(range(1, 10));
    for (const node of cluster.nodes)
      expect(await metric(node.url, 'chat_pg_writer{pool="replica"')).toBe(1);
    reader.close();
  });
});
