import { randomUUID } from "node:crypto";
import type { Message } from "@chat/shared";
import { Redis } from "ioredis";
import { Presence } from "phoenix";
import { afterEach, describe, expect, it } from "vitest";
import { INSPECTABLE } from "../cluster/inspector.ts";
import {
  definePresenceCommands,
  type PresenceEntry,
  presenceKeys,
  removeIfOwnerDead,
} from "../services/src/presence/entries.ts";
import { fixed, history, range, roundRobin, seqs, sleep } from "./support/clients.ts";
import {
  blockEventLoop,
  freshRoom,
  liveNodes,
  metric,
  storedSeqs,
  useCluster,
} from "./support/cluster.ts";
import { joinRoom, type PhoenixClient, phoenixClient, push } from "./support/phoenix.ts";

const cluster = await useCluster({
  nodes: 3,
  nodeEnv: {
    PRESENCE_DEAD_AFTER_MS: "2000",
    PRESENCE_HEARTBEAT_MS: "300",
    PRESENCE_STALL_LIMIT_MS: "3000",
    NODE_OPTIONS: INSPECTABLE, // blockEventLoop opens the inspector on a free port
  },
});
const clients: PhoenixClient[] = [];
const client = (...args: Parameters<typeof phoenixClient>) => {
  const created = phoenixClient(...args);
  clients.push(created);
  return created;
};
afterEach(() => {
  for (const { socket } of clients.splice(0)) socket.disconnect();
});

/** Joins `topic` on node 0 as a guest and follows its presence: the names listed, and how many people. */
async function watchPresence(topic: string) {
  const channel = client(fixed(cluster.nodeUrl(0))).socket.channel(topic, {});
  const presence = new Presence(channel);
  let names: string[] = [];
  let people = 0;
  presence.onSync(() => {
    people = presence.list().length;
    names = presence
      .list((_id: string, { metas }: { metas: { name: string }[] }) => metas.map((m) => m.name))
      .flat()
      .sort();
  });
  await new Promise((resolve) => channel.join().receive("ok", resolve));
  return { names: () => names, people: () => people };
}

/** A signed-in user called `name`, joined to `topic` on node `index`. */
async function joinAs(name: string, index: number, topic: string, heartbeatIntervalMs?: number) {
  const response = await fetch(`${cluster.nodeUrl(index)}/api/session`, {
    method: "POST",
    body: JSON.stringify({ name }),
  });
  const { token } = (await response.json()) as { token: string };
  const { socket } = client(fixed(cluster.nodeUrl(index)), {
    params: { token },
    heartbeatIntervalMs,
  });
  const joined = joinRoom(socket, topic);
  await joined.joined;
  return { socket, channel: joined.channel };
}

describe.each(["2.0.0", "1.0.0"] as const)(
  "Phoenix Channels over WebSocket, serializer %s",
  (vsn) => {
    it("joins, pushes speak, and a client on another node receives the broadcast", async () => {
      const topic = `room:${freshRoom("px")}`;
      const alice = joinRoom(client(fixed(cluster.nodeUrl(0)), { vsn }).socket, topic);
      const bob = joinRoom(client(fixed(cluster.nodeUrl(1)), { vsn }).socket, topic);
      await Promise.all([alice.joined, bob.joined]);
      const clientId = randomUUID();
      const stored = (await push(alice.channel, "speak", {
        body: "hello bob",
        client_id: clientId,
      })) as Message;
      expect(stored).toMatchObject({
        seq: 1,
        body: "hello bob",
        client_id: clientId,
        user: "guest",
      });
      await expect
        .poll(() => bob.messages.map((m) => m.body), { timeout: 10_000 })
        .toEqual(["hello bob"]);
      // A resend of the same client id answers with the original and broadcasts nothing new.
      expect(
        await push(alice.channel, "speak", { body: "hello bob", client_id: clientId }),
      ).toEqual(stored);
      await push(alice.channel, "speak", { body: "second" });
      await expect.poll(() => seqs(bob.messages), { timeout: 10_000 }).toEqual([1, 2]);
      expect(seqs(alice.messages)).toEqual([1, 2]);
    });
  },
);

describe("Phoenix Channels", () => {
  it("the bare topic chat is the default room, shared with the thesis routes", async () => {
    const before = (await history(cluster.nodeUrl(0), "chat")).at(-1)?.seq ?? 0;
    const listener = joinRoom(client(fixed(cluster.nodeUrl(2))).socket, "chat");
    await listener.joined;
    await fetch(`${cluster.nodeUrl(0)}/chat/speak`, {
      method: "POST",
      body: JSON.stringify({ message: "from the thesis route" }),
    });
    await expect
      .poll(() => listener.messages.map((m) => m.seq), { timeout: 10_000 })
      .toEqual([before + 1]);
  });

  it("the join reply comes once subscribed: a message pushed the moment it arrives is delivered, on a node new to the room", async () => {
    const rooms = Array.from({ length: 10 }, () => `room:${freshRoom("reply")}`);
    const senders = rooms.map((topic) => joinRoom(client(fixed(cluster.nodeUrl(0))).socket, topic));
    await Promise.all(senders.map((sender) => sender.joined));
    for (const sender of senders) await push(sender.channel, "speak", { body: "before" });
    const socket = client(fixed(cluster.nodeUrl(2))).socket;
    const listeners = rooms.map((topic, i) => {
      const listener = joinRoom(socket, topic);
      const sender = senders[i];
      const pushed = listener.joined.then((reply) =>
        push(sender?.channel as never, "speak", { body: "after" }).then(() => reply),
      );
      return { listener, pushed };
    });
    for (const { listener, pushed } of listeners) {
      expect(await pushed).toMatchObject({ last_seq: 1 });
      await expect
        .poll(() => listener.messages.map((m) => [m.seq, m.body]), { timeout: 10_000 })
        .toEqual([[2, "after"]]);
    }
  });

  it("last_seq replays what was missed, in order, before live messages", async () => {
    const topic = `room:${freshRoom("replay")}`;
    const room = topic.slice(5);
    const sender = joinRoom(client(fixed(cluster.nodeUrl(0))).socket, topic);
    await sender.joined;
    for (let i = 1; i <= 5; i++) await push(sender.channel, "speak", { body: `m${i}` });
    const socket = client(fixed(cluster.nodeUrl(1))).socket;
    const late = socket.channel(topic, { last_seq: 2 });
    const got: number[] = [];
    late.on("publish", (m: Message) => {
      got.push(m.seq);
    });
    await new Promise((resolve) => late.join().receive("ok", resolve));
    await push(sender.channel, "speak", { body: "m6" });
    await expect.poll(() => got, { timeout: 10_000 }).toEqual([3, 4, 5, 6]);
    expect(seqs(await history(cluster.nodeUrl(2), room))).toEqual(range(1, 6));
  });

  it("several topics on one socket, leave, and error replies for bad pushes", async () => {
    const socket = client(fixed(cluster.nodeUrl(0))).socket;
    const one = joinRoom(socket, `room:${freshRoom("multi")}`);
    const two = joinRoom(socket, `room:${freshRoom("multi")}`);
    await Promise.all([one.joined, two.joined]);
    await push(one.channel, "speak", { body: "to one" });
    await push(two.channel, "speak", { body: "to two" });
    await expect
      .poll(() => [one.messages.length, two.messages.length], { timeout: 10_000 })
      .toEqual([1, 1]);
    expect(one.messages[0]?.body).toBe("to one");

    await expect(push(one.channel, "dance", {})).rejects.toMatchObject({
      response: { code: "unknown_event" },
    });
    await expect(push(one.channel, "speak", { body: "" })).rejects.toMatchObject({
      response: { code: "bad_request" },
    });
    await expect(push(one.channel, "speak", { body: "x".repeat(5000) })).rejects.toMatchObject({
      response: { code: "payload_too_large" },
    });
    const bad = socket.channel("room:Not Valid", {});
    const refused = await new Promise((resolve) => bad.join().receive("error", resolve));
    expect(refused).toMatchObject({ code: "invalid_room" });
    bad.leave();

    await new Promise((resolve) => one.channel.leave().receive("ok", resolve));
    await push(two.channel, "speak", { body: "still joined" });
    await expect.poll(() => two.messages.length, { timeout: 10_000 }).toBe(2);
  });

  it("presence across nodes in Phoenix Presence's format; a killed node's users disappear", async () => {
    const topic = `room:${freshRoom("presence")}`;
    const watcher = await watchPresence(topic);
    await joinAs("zoe", 2, topic);
    await expect.poll(watcher.names, { timeout: 10_000 }).toEqual(["guest", "zoe"]);

    await cluster.stopNode(2, "SIGKILL");
    try {
      await expect.poll(watcher.names, { timeout: 8000 }).toEqual(["guest"]);
    } finally {
      await cluster.startNode(2);
    }
  });

  it("leaving a topic takes the user out of its presence, and the leaver gets no more of its diffs", async () => {
    const topic = `room:${freshRoom("leave")}`;
    const watcher = await watchPresence(topic);
    const kim = await joinAs("kim", 1, topic);
    await expect.poll(watcher.names, { timeout: 10_000 }).toEqual(["guest", "kim"]);
    let diffsAfterLeaving = 0;
    let left = false;
    // phoenix.js settles leave() at once, before the server has the phx_leave: the server's
    // phx_close, sent after it let the channel go, is what says the leave took effect.
    const closed = new Promise<void>((resolve) =>
      kim.socket.onMessage((message) => {
        const { topic: to, event } = message as { topic: string; event: string };
        if (to !== topic) return;
        if (left && event === "presence_diff") diffsAfterLeaving++;
        if (event === "phx_close") {
          left = true;
          resolve();
        }
      }),
    );
    kim.channel.leave();
    await closed;
    await expect.poll(watcher.names, { timeout: 10_000 }).toEqual(["guest"]);
    await joinAs("lou", 1, topic);
    await expect.poll(watcher.names, { timeout: 10_000 }).toEqual(["guest", "lou"]);
    expect(diffsAfterLeaving).toBe(0);
  });

  it("a node that stalls past PRESENCE_DEAD_AFTER_MS loses its people's presence and lists them again when it resumes, counted on both sides", async () => {
    const topic = `room:${freshRoom("stall")}`;
    const watcher = await watchPresence(topic);
    await joinAs("ann", 1, topic);
    await expect.poll(watcher.people, { timeout: 10_000 }).toBe(2);
    const reaped = await metric(cluster.nodeUrl(0), "chat_presence_reaped_total");
    const retracked = await metric(cluster.nodeUrl(1), "chat_presence_retracked_total");
    const pid = cluster.nodes[1]?.pid ?? 0;
    process.kill(pid, "SIGSTOP");
    try {
      await expect.poll(watcher.people, { timeout: 8000 }).toBe(1);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await expect.poll(watcher.people, { timeout: 10_000 }).toBe(2);
    expect(await metric(cluster.nodeUrl(0), "chat_presence_reaped_total")).toBeGreaterThan(reaped);
    expect(await metric(cluster.nodeUrl(1), "chat_presence_retracked_total")).toBeGreaterThan(
      retracked,
    );
  });

  it("a node whose event loop lags past PRESENCE_DEAD_AFTER_MS keeps its people listed: its worker thread proves it alive", async () => {
    const topic = `room:${freshRoom("lag")}`;
    const watcher = await watchPresence(topic);
    // phoenix.js's default heartbeat (30 s): a 1 s one would itself reconnect across the block
    await joinAs("bea", 1, topic, 30_000);
    await expect.poll(watcher.people, { timeout: 10_000 }).toBe(2);
    const reaped = await metric(cluster.nodeUrl(0), "chat_presence_reaped_total");
    const retracked = await metric(cluster.nodeUrl(1), "chat_presence_retracked_total");
    const seen = new Set<number>();
    const sampler = setInterval(() => seen.add(watcher.people()), 50);
    const node = cluster.nodes[1];
    if (!node) throw new Error("no node 1");
    await blockEventLoop(node, 2800); // dead-after 2 s, stall limit 3 s
    await sleep(1500); // time for a wrong reap to land after the block
    clearInterval(sampler);
    expect([...seen]).toEqual([2]);
    expect(await metric(cluster.nodeUrl(0), "chat_presence_reaped_total")).toBe(reaped);
    expect(await metric(cluster.nodeUrl(1), "chat_presence_retracked_total")).toBe(retracked);
  });

  it("a node whose event loop is blocked past PRESENCE_STALL_LIMIT_MS stops proving itself alive: its people leave, and come back when it recovers", async () => {
    const topic = `room:${freshRoom("wedged")}`;
    const watcher = await watchPresence(topic);
    await joinAs("cat", 2, topic);
    await expect.poll(watcher.people, { timeout: 10_000 }).toBe(2);
    const node = cluster.nodes[2];
    if (!node) throw new Error("no node 2");
    const blocked = blockEventLoop(node, 7000);
    await expect.poll(watcher.people, { timeout: 7000 }).toBe(1);
    await blocked;
    await expect.poll(watcher.people, { timeout: 10_000 }).toBe(2);
  });

  it("a reaper removes a dead owner's people, but not those of an owner that proved itself alive after the reaper looked", async () => {
    const room = freshRoom("reap");
    const redis = definePresenceCommands(new Redis(cluster.redisUrl));
    try {
      const entry = (name: string): PresenceEntry => ({
        key: name,
        meta: { name, phx_ref: `ref-${name}` },
        owner: `test:${name}-${room}`,
      });
      const [gone, back] = [entry("gone"), entry("back")];
      for (const e of [gone, back])
        await redis.hset(presenceKeys.entries(room), e.meta.phx_ref, JSON.stringify(e));
      // The reaper found both owners' alive keys missing; then "back" beat again (and
      // re-listed its people, finding them still listed) before the reaper removed anything.
      await redis.set(presenceKeys.alive(back.owner), "1", "PX", 10_000);
      const removed = await removeIfOwnerDead(redis, room, [gone, back]);
      expect(removed.map((e) => e.key)).toEqual(["gone"]);
      expect(await redis.hkeys(presenceKeys.entries(room))).toEqual([back.meta.phx_ref]);
    } finally {
      redis.disconnect();
    }
  });

  it("clients resume after the node they were on is killed: nothing lost, nothing doubled", async () => {
    const topic = `room:${freshRoom("failover")}`;
    const room = topic.slice(5);
    const victim = cluster.nodes[1];
    const anyLive = roundRobin(liveNodes(cluster));
    const onVictim = () => (victim?.running ? victim.url : anyLive());
    const receivers = [0, 1, 2].map(() =>
      joinRoom(client(onVictim).socket, topic, { fromStart: true }),
    );
    const sender = joinRoom(client(fixed(cluster.nodeUrl(0))).socket, topic);
    await Promise.all([...receivers, sender].map((r) => r.joined));

    const total = 60;
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        // a well-behaved client retries with the same client id until acknowledged
        const id = randomUUID();
        for (;;) {
          try {
            await push(sender.channel, "speak", { body: `m${i}`, client_id: id }, 2000);
            break;
          } catch {
            await sleep(50);
          }
        }
        await sleep(15);
      }
    })();
    await sleep(300);
    await cluster.stopNode(1, "SIGKILL");
    await sending;
    try {
      for (const receiver of receivers) {
        await expect.poll(() => receiver.messages.length, { timeout: 20_000 }).toBe(total);
        expect(seqs(receiver.messages)).toEqual(range(1, total));
      }
      expect(await storedSeqs(cluster, room)).toEqual(range(1, total));
    } finally {
      await cluster.startNode(1);
    }
  });
});
