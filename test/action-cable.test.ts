import { randomUUID } from "node:crypto";
import type { Message } from "@chat/shared";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { range, roundRobin, seqs, sleep } from "./support/clients.ts";
import {
  freshRoom,
  inProcessNode,
  liveNodes,
  metric,
  type OccupiedConnection,
  ONE_PG_CONNECTION,
  occupyOnlyConnection,
  storedSeqs,
  useCluster,
} from "./support/cluster.ts";

/**
 * The official @rails/actioncable client, unchanged, against our nodes. It expects a
 * browser: Node gets the `ws` WebSocket and the few globals its connection monitor touches.
 */
type ActionCable = typeof import("@rails/actioncable");
let ActionCable: ActionCable;
const cluster = await useCluster({ nodes: 3, nodeEnv: { CABLE_PING_MS: "500" } });

beforeAll(async () => {
  Object.assign(globalThis, {
    addEventListener: () => {},
    removeEventListener: () => {},
    document: { visibilityState: "visible" },
  });
  ActionCable = await import("@rails/actioncable");
  ActionCable.adapters.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
});

const consumers: Array<{ disconnect(): void }> = [];
/** Consumers a test is done with: `follow` must not re-subscribe them, as that would reopen them. */
const retired = new WeakSet<object>();
afterEach(() => {
  for (const consumer of consumers.splice(0)) {
    retired.add(consumer);
    consumer.disconnect();
  }
});

/** A consumer whose URL is re-read on every (re)connect: a live node, as the gateway would pick. */
function consumer(pick: () => string, token?: string) {
  const created = ActionCable.createConsumer(
    () => `${pick().replace("http", "ws")}/cable${token ? `?token=${token}` : ""}`,
  );
  consumers.push(created);
  return created;
}

/**
 * How an app resumes with Action Cable: the identifier carries `last_seq`, so on every
 * disconnect the subscription is replaced by one naming the last message seen.
 */
function follow(cable: ReturnType<typeof consumer>, room: string, fromStart = false) {
  const messages: Message[] = [];
  const errors: unknown[] = [];
  let lastSeq = fromStart ? 0 : undefined;
  let confirmed!: () => void;
  let rejected!: () => void;
  const ready = new Promise<void>((resolve, reject) => {
    confirmed = resolve;
    rejected = () => reject(new Error("subscription rejected"));
  });
  const subscribe = () => {
    const params = {
      channel: "ChatChannel",
      room,
      ...(lastSeq === undefined ? {} : { last_seq: lastSeq }),
    };
    const subscription = cable.subscriptions.create(params, {
      connected: () => confirmed(),
      rejected: () => rejected(),
      received: (data: { message?: Message; error?: unknown }) => {
        if (data.error) errors.push(data.error);
        if (data.message) {
          messages.push(data.message);
          lastSeq = data.message.seq;
        }
      },
      disconnected: () => {
        if (retired.has(cable)) return;
        // `remove` exists in @rails/actioncable, though its type definitions lag behind.
        (cable.subscriptions as unknown as { remove(s: unknown): void }).remove(subscription);
        subscribe();
      },
    });
    state.subscription = subscription;
  };
  const state = {
    messages,
    errors,
    ready,
    subscription: undefined as unknown as { perform(action: string, data: object): void },
  };
  subscribe();
  return state;
}

describe("Action Cable", () => {
  it("subscribes, speaks on one node and broadcasts to a consumer on another", async () => {
    const room = freshRoom("cable");
    const a = follow(
      consumer(() => cluster.nodeUrl(0)),
      room,
    );
    const b = follow(
      consumer(() => cluster.nodeUrl(1)),
      room,
    );
    await Promise.all([a.ready, b.ready]);
    a.subscription.perform("speak", { message: "hello from rails land", client_id: randomUUID() });
    await expect
      .poll(() => b.messages.map((m) => m.body), { timeout: 10_000 })
      .toEqual(["hello from rails land"]);
    expect(b.messages[0]).toMatchObject({ room, seq: 1, user: "guest" });
    expect(a.messages.map((m) => m.seq)).toEqual([1]);
  });

  it("confirms once subscribed: a message sent the moment the confirmation arrives is delivered, on a node new to the room", async () => {
    const rooms = Array.from({ length: 10 }, () => freshRoom("cable-confirm"));
    const sending = consumer(() => cluster.nodeUrl(0));
    const senders = rooms.map((room) => follow(sending, room));
    await Promise.all(senders.map((sender) => sender.ready));
    const listening = consumer(() => cluster.nodeUrl(2));
    const listeners = rooms.map((room, i) => {
      const listener = follow(listening, room);
      void listener.ready.then(() => senders[i]?.subscription.perform("speak", { message: "now" }));
      return listener;
    });
    await expect
      .poll(() => listeners.map((l) => l.messages.map((m) => m.body).join()), { timeout: 10_000 })
      .toEqual(rooms.map(() => "now"));
  });

  it("rejects an unknown channel and a bad room", async () => {
    const cable = consumer(() => cluster.nodeUrl(0));
    const unknown = new Promise((resolve) =>
      cable.subscriptions.create(
        { channel: "NopeChannel" },
        { rejected: () => resolve("rejected") },
      ),
    );
    const badRoom = new Promise((resolve) =>
      cable.subscriptions.create(
        { channel: "ChatChannel", room: "Bad Room" },
        { rejected: () => resolve("rejected") },
      ),
    );
    expect(await Promise.all([unknown, badRoom])).toEqual(["rejected", "rejected"]);
  });

  it("last_seq replays what was missed, then live", async () => {
    const room = freshRoom("cable-replay");
    for (let i = 1; i <= 4; i++) {
      await fetch(`${cluster.nodeUrl(2)}/api/rooms/${room}/messages`, {
        method: "POST",
        body: JSON.stringify({ body: `m${i}` }),
      });
    }
    const cable = consumer(() => cluster.nodeUrl(0));
    const got: number[] = [];
    const subscription = cable.subscriptions.create(
      { channel: "ChatChannel", room, last_seq: 2 },
      { received: (data: { message: Message }) => got.push(data.message.seq) },
    );
    await expect.poll(() => got, { timeout: 10_000 }).toEqual([3, 4]);
    subscription.perform("speak", { message: "m5" });
    await expect.poll(() => got, { timeout: 10_000 }).toEqual([3, 4, 5]);
  });

  it("errors come back on the subscription, naming Action Cable's own fields: size limit, empty message, unknown action", async () => {
    const room = freshRoom("cable-errors");
    const a = follow(
      consumer(() => cluster.nodeUrl(1)),
      room,
    );
    await a.ready;
    a.subscription.perform("speak", { message: "x".repeat(5000) });
    a.subscription.perform("speak", { message: " " });
    a.subscription.perform("dance", {});
    await expect
      .poll(() => a.errors, { timeout: 10_000 })
      .toEqual([
        expect.objectContaining({
          code: "payload_too_large",
          message: expect.stringMatching(/^message is 5000 bytes/),
        }),
        { code: "bad_request", message: "message must be a non-empty string" },
        expect.objectContaining({ code: "unknown_event" }),
      ]);
  });

  it("a send the node cannot take now comes back as a retryable error naming its client id; sent again, it lands once", async () => {
    const busy = await inProcessNode(cluster, { NODE_ID: "busy", ...ONE_PG_CONNECTION });
    const cable = consumer(() => busy.url);
    let occupied: OccupiedConnection | undefined;
    try {
      const room = freshRoom("cable-busy");
      const a = follow(cable, room);
      await a.ready;
      occupied = await occupyOnlyConnection(cluster, busy.url);
      const clientId = randomUUID();
      a.subscription.perform("speak", { message: "while busy", client_id: clientId });
      await expect
        .poll(() => a.errors, { timeout: 10_000 })
        .toEqual([
          { code: "overloaded", message: expect.any(String), retryable: true, client_id: clientId },
        ]);
      expect(await occupied.release()).toBe(201);
      a.subscription.perform("speak", { message: "while busy", client_id: clientId });
      await expect
        .poll(() => a.messages.map((m) => m.body), { timeout: 10_000 })
        .toEqual(["while busy"]);
      expect(await storedSeqs(cluster, room)).toEqual([1]);
    } finally {
      await occupied?.release();
      retired.add(cable);
      cable.disconnect();
      await busy.stop();
    }
  });

  it("a bad token gets a disconnect with reason unauthorized and no reconnect; the node keeps nothing of it", async () => {
    const openCables = () =>
      metric(cluster.nodeUrl(0), 'chat_open_streams{transport="actioncable"');
    await expect.poll(openCables, { timeout: 10_000 }).toBe(0); // earlier tests' consumers gone
    const socket = new WebSocket(`${cluster.nodeUrl(0).replace("http", "ws")}/cable?token=forged`, [
      "actioncable-v1-json",
    ]);
    const frames: unknown[] = [];
    socket.on("message", (data) => frames.push(JSON.parse(String(data))));
    const code = await new Promise((resolve) => socket.on("close", resolve));
    expect(frames).toContainEqual({ type: "disconnect", reason: "unauthorized", reconnect: false });
    expect(code).toBe(4401);
    expect(await openCables()).toBe(0);
  });

  it("pings every connection each CABLE_PING_MS with the time in seconds", async () => {
    const url = `${cluster.nodeUrl(1).replace("http", "ws")}/cable`;
    const sockets = [0, 1].map(() => new WebSocket(url, ["actioncable-v1-json"]));
    const pings = sockets.map((socket) => {
      const seen: number[] = [];
      socket.on("message", (data) => {
        const frame = JSON.parse(String(data)) as { type?: string; message?: number };
        if (frame.type === "ping" && typeof frame.message === "number") seen.push(frame.message);
      });
      return seen;
    });
    await sleep(1600); // CABLE_PING_MS is 500 here
    for (const socket of sockets) socket.close();
    const now = Date.now() / 1000;
    for (const seen of pings) {
      expect(seen.length).toBeGreaterThanOrEqual(2);
      for (const seconds of seen) expect(Math.abs(now - seconds)).toBeLessThan(5);
    }
  });

  it("malformed frames get error frames; the connection and everyone else carry on", async () => {
    const room = freshRoom("cable-fuzz");
    const bystander = follow(
      consumer(() => cluster.nodeUrl(0)),
      room,
    );
    await bystander.ready;
    const socket = new WebSocket(`${cluster.nodeUrl(0).replace("http", "ws")}/cable`, [
      "actioncable-v1-json",
    ]);
    const frames: Array<{ type?: string; error?: { code: string } }> = [];
    socket.on("message", (data) => frames.push(JSON.parse(String(data))));
    await new Promise((resolve) => socket.on("open", resolve));
    const junk = [
      "{",
      "[]",
      "null",
      '{"command":"subscribe"}',
      '{"command":"fly","identifier":"{}"}',
      '{"command":"message","identifier":"{}","data":"{}"}',
    ];
    for (const frame of junk) socket.send(frame);
    await expect
      .poll(() => frames.filter((f) => f.type === "error").length, { timeout: 5000 })
      .toBe(junk.length);
    const identifier = JSON.stringify({ channel: "ChatChannel", room });
    socket.send(JSON.stringify({ command: "subscribe", identifier }));
    socket.send(
      JSON.stringify({
        command: "message",
        identifier,
        data: JSON.stringify({ action: "speak", message: "still fine" }),
      }),
    );
    await expect
      .poll(() => bystander.messages.map((m) => m.body), { timeout: 5000 })
      .toEqual(["still fine"]);
    socket.close();
  });

  it("consumers of a killed node reconnect and resume: history matches Postgres exactly", async () => {
    const room = freshRoom("cable-kill");
    const victim = cluster.nodes[1];
    const anyLive = roundRobin(liveNodes(cluster));
    const onVictim = () => (victim?.running ? victim.url : anyLive());
    const followers = [0, 1].map(() => follow(consumer(onVictim), room, true));
    await Promise.all(followers.map((f) => f.ready));
    const total = 40;
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        await fetch(`${cluster.nodeUrl(0)}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `m${i}`, client_id: randomUUID() }),
        });
        await sleep(25);
      }
    })();
    await sleep(300);
    await cluster.stopNode(1, "SIGKILL");
    await sending;
    try {
      for (const follower of followers) {
        await expect.poll(() => follower.messages.length, { timeout: 30_000 }).toBe(total);
        expect(seqs(follower.messages)).toEqual(range(1, total));
      }
      expect(await storedSeqs(cluster, room)).toEqual(range(1, total));
    } finally {
      await cluster.startNode(1);
    }
  });

  it("a draining node tells its consumers to reconnect", async () => {
    const socket = new WebSocket(`${cluster.nodeUrl(2).replace("http", "ws")}/cable`, [
      "actioncable-v1-json",
    ]);
    const frames: unknown[] = [];
    socket.on("message", (data) => frames.push(JSON.parse(String(data))));
    await new Promise((resolve) => socket.on("open", resolve));
    const stopped = cluster.stopNode(2, "SIGTERM");
    await expect
      .poll(() => frames, { timeout: 10_000 })
      .toContainEqual({ type: "disconnect", reason: "server_restart", reconnect: true });
    await stopped;
    await cluster.startNode(2);
  });
});

describe("the thesis WebSocket /chat/socket", () => {
  it("sends and receives JSON across nodes, acks, errors, and raw text", async () => {
    const open = async (i: number) => {
      const socket = new WebSocket(`${cluster.nodeUrl(i).replace("http", "ws")}/chat/socket`);
      const frames: Array<Record<string, unknown>> = [];
      socket.on("message", (data) => frames.push(JSON.parse(String(data))));
      await new Promise((resolve) => socket.on("open", resolve));
      return { socket, frames };
    };
    const a = await open(0);
    const b = await open(1);
    await sleep(200); // let both subscriptions start "from now"
    const clientId = randomUUID();
    a.socket.send(JSON.stringify({ body: "json hello", client_id: clientId }));
    b.socket.send("raw text hello");
    a.socket.send(JSON.stringify({ body: "y".repeat(5000) }));
    a.socket.send(JSON.stringify({ message: "" })); // the thesis's field: its error names it
    const bodies = (frames: Array<Record<string, unknown>>) =>
      frames.filter((f) => "body" in f).map((f) => f.body);
    for (const client of [a, b]) {
      await expect
        .poll(() => bodies(client.frames), { timeout: 10_000 })
        .toEqual(expect.arrayContaining(["json hello", "raw text hello"]));
    }
    const stored = a.frames.find((f) => f.body === "json hello");
    expect(a.frames.find((f) => f.type === "ack")).toEqual({
      type: "ack",
      seq: stored?.seq,
      id: stored?.id,
      client_id: clientId,
    });
    await expect
      .poll(() => a.frames.filter((f) => f.type === "error").map((f) => f.error))
      .toEqual([
        expect.objectContaining({ code: "payload_too_large" }),
        { code: "bad_request", message: "message must be a non-empty string" },
      ]);
    a.socket.close();
    b.socket.close();
  });
});
