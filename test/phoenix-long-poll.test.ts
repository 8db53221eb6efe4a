import { randomUUID } from "node:crypto";
import type { Message } from "@chat/shared";
import { LongPoll, Presence, Socket } from "phoenix";
import { afterEach, describe, expect, it } from "vitest";
import { range, seqs, sleep } from "./support/clients.ts";
import { freshRoom, liveNodes, storedSeqs, useCluster } from "./support/cluster.ts";
import { joinRoom, push } from "./support/phoenix.ts";
import { roundRobinProxy } from "./support/round-robin-proxy.ts";

const cluster = await useCluster({
  nodes: 3,
  nodeEnv: { LONGPOLL_HOLD_MS: "2000", LONGPOLL_SESSION_TTL_MS: "4000" },
});
const proxy = await roundRobinProxy(liveNodes(cluster));
const sockets: Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect();
});

/** The official phoenix.js client on its LongPoll transport, through the round-robin proxy. */
function longPollSocket(params: object = {}): Socket {
  const socket = new Socket(`${proxy.url}/socket`, {
    transport: LongPoll,
    params,
    timeout: 5000,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
  } as object);
  socket.connect();
  sockets.push(socket);
  return socket;
}

describe("Phoenix LongPoll, sticky-free", () => {
  it("joins, speaks and receives while consecutive requests land on different nodes", async () => {
    const topic = `room:${freshRoom("lp")}`;
    const alice = joinRoom(longPollSocket(), topic);
    const bob = joinRoom(longPollSocket(), topic);
    expect(await alice.joined).toMatchObject({
      node: expect.stringMatching(/^node-/),
      last_seq: 0,
    });
    await bob.joined;
    const stored = (await push(alice.channel, "speak", {
      body: "over long polling",
      client_id: randomUUID(),
    })) as Message;
    expect(stored).toMatchObject({ seq: 1, body: "over long polling" });
    await push(bob.channel, "speak", { body: "and back" });
    for (const client of [alice, bob]) {
      await expect
        .poll(() => client.messages.map((m) => m.body), { timeout: 10_000 })
        .toEqual(["over long polling", "and back"]);
    }
    expect([...proxy.perNode.values()].filter((count) => count > 0).length).toBe(3);
  });

  it("the bare chat topic, last_seq replay then live, and error replies", async () => {
    const topic = `room:${freshRoom("lp-replay")}`;
    const writer = joinRoom(longPollSocket(), topic);
    await writer.joined;
    for (let i = 1; i <= 4; i++) await push(writer.channel, "speak", { body: `m${i}` });
    const socket = longPollSocket();
    const late = socket.channel(topic, { last_seq: 2 });
    const got: number[] = [];
    late.on("publish", (m: Message) => {
      got.push(m.seq);
    });
    await new Promise((resolve) => late.join().receive("ok", resolve));
    await push(writer.channel, "speak", { body: "m5" });
    await expect.poll(() => got, { timeout: 10_000 }).toEqual([3, 4, 5]);
    await expect(push(writer.channel, "speak", { body: "" })).rejects.toMatchObject({
      response: { code: "bad_request" },
    });
    await expect(push(writer.channel, "speak", { body: "x".repeat(5000) })).rejects.toMatchObject({
      response: { code: "payload_too_large" },
    });
    await expect(push(writer.channel, "wave", {})).rejects.toMatchObject({
      response: { code: "unknown_event" },
    });
    const bad = socket.channel("room:NOT OK", {});
    expect(await new Promise((resolve) => bad.join().receive("error", resolve))).toMatchObject({
      code: "invalid_room",
    });
    bad.leave();
    const chat = joinRoom(socket, "chat");
    await chat.joined;
  });

  it("presence syncs across long-poll sessions and a signed token names the user", async () => {
    const topic = `room:${freshRoom("lp-presence")}`;
    const session = (await (
      await fetch(`${cluster.nodeUrl(0)}/api/session`, {
        method: "POST",
        body: JSON.stringify({ name: "lena" }),
      })
    ).json()) as { token: string };
    const watcherSocket = longPollSocket();
    const channel = watcherSocket.channel(topic, {});
    const presence = new Presence(channel);
    let names: string[] = [];
    presence.onSync(() => {
      names = presence
        .list((_id: string, { metas }: { metas: { name: string }[] }) => metas[0]?.name ?? "?")
        .sort();
    });
    await new Promise((resolve) => channel.join().receive("ok", resolve));
    const lena = joinRoom(longPollSocket({ token: session.token }), topic);
    await lena.joined;
    await expect.poll(() => names, { timeout: 10_000 }).toEqual(["guest", "lena"]);
    expect(await push(lena.channel, "speak", { body: "signed" })).toMatchObject({ user: "lena" });
  });

  it("a bad token is refused with 403", async () => {
    const response = await fetch(`${proxy.url}/socket/longpoll?vsn=2.0.0&token=forged`);
    expect(await response.json()).toEqual({ status: 403 });
  });

  it("a session nobody polls expires: its token then answers 410", async () => {
    const raw = (await (await fetch(`${proxy.url}/socket/longpoll?vsn=2.0.0`)).json()) as {
      token: string;
    };
    expect(raw).toMatchObject({ status: 410, token: expect.stringMatching(/^lp\./) });
    await sleep(4500);
    expect(
      await (await fetch(`${proxy.url}/socket/longpoll?vsn=2.0.0&token=${raw.token}`)).json(),
    ).toEqual({ status: 410 });
  });

  it("a poll answer lost on the way (a retried GET) is answered again: nothing lost, nothing doubled", async () => {
    const room = freshRoom("lp-retry");
    const poll = async (token: string) =>
      (await (await fetch(`${proxy.url}/socket/longpoll?vsn=2.0.0&token=${token}`)).json()) as {
        status: number;
        token: string;
        messages?: string[];
      };
    const t0 = (await poll("")).token;
    const post = await fetch(`${proxy.url}/socket/longpoll?vsn=2.0.0&token=${t0}`, {
      method: "POST",
      body: JSON.stringify(["1", "1", `room:${room}`, "phx_join", {}]),
    });
    expect(await post.json()).toEqual({ status: 200 });
    const joined = await poll(t0);
    expect(joined.messages?.map((m) => JSON.parse(m)[3])).toEqual(["phx_reply", "presence_state"]);
    await fetch(`${cluster.nodeUrl(1)}/api/rooms/${room}/messages`, {
      method: "POST",
      body: JSON.stringify({ body: "once" }),
    });
    const first = await poll(joined.token);
    const again = await poll(joined.token); // as if `first` never reached the client
    const publishes = (answer: typeof first) =>
      (answer.messages ?? [])
        .map((m) => JSON.parse(m))
        .filter((f) => f[3] === "publish")
        .map((f) => f[4].body);
    expect(publishes(first)).toEqual(["once"]);
    expect(publishes(again)).toEqual(["once"]);
    expect(again.token).toBe(first.token);
    expect(await poll(first.token)).toEqual({ status: 204, token: first.token });
    expect(await poll(t0)).toEqual({ status: 410 });
  });

  it("clients carry on when nodes die: nothing lost, nothing doubled", async () => {
    const topic = `room:${freshRoom("lp-kill")}`;
    const room = topic.slice(5);
    const receivers = [0, 1].map(() => joinRoom(longPollSocket(), topic, { fromStart: true }));
    const sender = joinRoom(longPollSocket(), topic);
    await Promise.all([...receivers, sender].map((r) => r.joined));
    const total = 40;
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        const id = randomUUID();
        for (;;) {
          try {
            await push(sender.channel, "speak", { body: `m${i}`, client_id: id }, 3000);
            break;
          } catch {
            await sleep(100);
          }
        }
        await sleep(20);
      }
    })();
    await sleep(500);
    await cluster.stopNode(2, "SIGKILL");
    await sending;
    try {
      for (const receiver of receivers) {
        await expect
          .poll(() => receiver.messages.length, { timeout: 30_000 })
          .toBeGreaterThanOrEqual(total);
        expect(seqs(receiver.messages)).toEqual(range(1, total));
      }
      expect(await storedSeqs(cluster, room)).toEqual(range(1, total));
    } finally {
      await cluster.startNode(2);
    }
  });
});
