import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { fixed, range, send, seqs } from "./support/clients.ts";
import { freshRoom, useCluster } from "./support/cluster.ts";
import { joinRoom, type PhoenixClient, phoenixClient, push } from "./support/phoenix.ts";

const cluster = await useCluster({
  nodes: 2,
  nodeEnv: {
    RATE_LIMIT_SENDS: "100",
    RATE_LIMIT_WINDOW_MS: "60000",
    MAX_TOPICS_PER_SOCKET: "3",
    PHOENIX_HEARTBEAT_TIMEOUT_MS: "1500",
    SOCKET_FRAMES_PER_SECOND: "50",
    SOCKET_FRAME_BURST: "400",
    MAX_MESSAGE_BYTES: "200000",
    MAX_REQUEST_BYTES: "300000",
    MAX_FRAME_BYTES: "65536",
    MAX_SOCKET_BUFFER_BYTES: "262144",
    PRESENCE_MAX_PER_ROOM: "3",
  },
});
const wsUrl = (i: number, query = "vsn=2.0.0") =>
  `${cluster.nodeUrl(i).replace("http", "ws")}/socket/websocket?${query}`;
const opened: Array<{ close(): void }> = [];
afterEach(() => {
  for (const socket of opened.splice(0)) socket.close();
});

type Frame = [string | null, string | null, string, string, Record<string, unknown>];

/** A raw WebSocket speaking Phoenix's v2 frames, recording every frame it receives. */
async function rawPhoenix(i = 0, options: WebSocket.ClientOptions & { heartbeat?: boolean } = {}) {
  const socket = new WebSocket(wsUrl(i), options);
  if (options.heartbeat !== false) {
    const beat = setInterval(
      () => socket.send(JSON.stringify([null, "hb", "phoenix", "heartbeat", {}])),
      500,
    );
    socket.on("close", () => clearInterval(beat));
  }
  const frames: Frame[] = [];
  socket.on("message", (data) => frames.push(JSON.parse(String(data)) as Frame));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  opened.push(socket);
  const replies = () => frames.filter((f) => f[3] === "phx_reply" && f[1] !== "hb");
  return { socket, frames, replies, closed };
}

/** The HTTP status an upgrade was refused with. */
function refusedUpgrade(url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, options);
    socket.on("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0));
    socket.on("open", () => reject(new Error("the upgrade was accepted")));
    socket.on("error", () => {});
  });
}

describe("presence in a crowded room", () => {
  it("lists at most PRESENCE_MAX_PER_ROOM people, batches diffs, and everyone still chats", async () => {
    const topic = `room:${freshRoom("crowd")}`;
    const clients = await Promise.all(range(0, 4).map((i) => rawPhoenix(i % 2)));
    for (const [i, client] of clients.entries()) {
      client.socket.send(JSON.stringify(["1", "1", topic, "phx_join", {}]));
      await expect.poll(() => client.frames.some((f) => f[3] === "presence_state")).toBe(true);
      const state = client.frames.find((f) => f[3] === "presence_state")?.[4] ?? {};
      const listed = Object.values(state).flatMap((v) => (v as { metas: unknown[] }).metas);
      expect(listed.length, JSON.stringify(client.frames)).toBe(Math.min(i + 1, 3)); // joiners past the third are not listed
    }
    // The first member saw the next two arrive (one diff or several), never the last two.
    const diffs = () => clients[0]?.frames.filter((f) => f[3] === "presence_diff") ?? [];
    const joined = () =>
      diffs().flatMap((f) => Object.values(f[4].joins as object).flatMap((v) => v.metas));
    await expect.poll(() => joined().length).toBeGreaterThanOrEqual(3);
    expect(new Set(joined().map((m: { phx_ref: string }) => m.phx_ref)).size).toBe(3);
    // The unlisted fifth member sends; all five receive.
    const last = clients[4];
    last?.socket.send(JSON.stringify(["1", "2", topic, "speak", { body: "from the crowd" }]));
    for (const client of clients)
      await expect
        .poll(() => client.frames.some((f) => f[3] === "publish" && f[4].body === "from the crowd"))
        .toBe(true);
  });
});

describe("identity and origin on the socket", () => {
  it("refuses a forged token and a cross-site Origin at the upgrade", async () => {
    expect(await refusedUpgrade(wsUrl(0, "vsn=2.0.0&token=forged.token.here"))).toBe(401);
    expect(await refusedUpgrade(wsUrl(0), { origin: "https://evil.example" })).toBe(403);
    // An opaque origin (sandboxed frame, file://) is a browser too.
    expect(await refusedUpgrade(wsUrl(0), { origin: "null" })).toBe(403);
  });

  it("lets non-browser clients in whatever they put in Origin (Tsung sends a bare host)", async () => {
    const { socket } = await rawPhoenix(0, { origin: "127.0.0.1" });
    expect(socket.readyState).toBe(WebSocket.OPEN);
  });

  it("accepts a same-origin browser and a signed token, whose name the messages carry", async () => {
    const session = (await (
      await fetch(`${cluster.nodeUrl(0)}/api/session`, {
        method: "POST",
        body: JSON.stringify({ name: "ana" }),
      })
    ).json()) as { token: string };
    const ana = phoenixClient(fixed(cluster.nodeUrl(1)), { params: { token: session.token } });
    opened.push({ close: () => ana.socket.disconnect() });
    const room = joinRoom(ana.socket, `room:${freshRoom("ana")}`);
    await room.joined;
    expect(await push(room.channel, "speak", { body: "signed" })).toMatchObject({ user: "ana" });
    const { socket } = await rawPhoenix(0, { origin: cluster.nodeUrl(0) });
    expect(socket.readyState).toBe(WebSocket.OPEN);
  });
});

describe("limits", () => {
  it("a user over RATE_LIMIT_SENDS gets rate_limited replies, on every node alike", async () => {
    const session = (await (
      await fetch(`${cluster.nodeUrl(0)}/api/session`, {
        method: "POST",
        body: JSON.stringify({ name: "fast" }),
      })
    ).json()) as { token: string };
    const clients: PhoenixClient[] = [0, 1].map((i) =>
      phoenixClient(fixed(cluster.nodeUrl(i)), { params: { token: session.token } }),
    );
    for (const c of clients) opened.push({ close: () => c.socket.disconnect() });
    const topic = `room:${freshRoom("rate")}`;
    const rooms = clients.map((c) => joinRoom(c.socket, topic));
    await Promise.all(rooms.map((r) => r.joined));
    const results = await Promise.allSettled(
      range(1, 110).map((i) => push(rooms[i % 2]?.channel as never, "speak", { body: `m${i}` })),
    );
    const refused = results.filter((r) => r.status === "rejected");
    expect(results.length - refused.length).toBe(100);
    for (const r of refused)
      expect((r as PromiseRejectedResult).reason.response).toMatchObject({ code: "rate_limited" });
  });

  it("HTTP sends share the same per-user limit: 429 rate_limited with Retry-After", async () => {
    const session = (await (
      await fetch(`${cluster.nodeUrl(1)}/api/session`, {
        method: "POST",
        body: JSON.stringify({ name: "http" }),
      })
    ).json()) as { token: string; user: { id: string } };
    const room = freshRoom("rate-http");
    for (let i = 0; i < 100; i++)
      await send(cluster.nodeUrl(i % 2), room, `m${i}`, { token: session.token });
    const over = await fetch(`${cluster.nodeUrl(0)}/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${session.token}` },
      body: JSON.stringify({ body: "one too many" }),
    });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await over.json()).toMatchObject({ error: { code: "rate_limited" } });
    // The window's counter in Redis expires on its own (after two windows): no key lives on.
    const redis = new Redis(cluster.redisUrl);
    try {
      const [key, ...others] = await redis.keys(`chat:rate:user:${session.user.id}:*`);
      expect(others).toEqual([]);
      expect(await redis.get(key ?? "")).toBe("101");
      const ttl = await redis.pttl(key ?? "");
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(120_000);
    } finally {
      redis.disconnect();
    }
  });

  it("at most MAX_TOPICS_PER_SOCKET topics per socket", async () => {
    const { socket, replies } = await rawPhoenix();
    for (let i = 1; i <= 4; i++)
      socket.send(
        JSON.stringify([String(i), String(i), `room:${freshRoom("topics")}`, "phx_join", {}]),
      );
    await expect.poll(() => replies().length, { timeout: 5000 }).toBe(4);
    const byRef = Object.fromEntries(replies().map((f) => [f[1], f[4]]));
    expect([1, 2, 3, 4].map((ref) => byRef[String(ref)]?.status)).toEqual([
      "ok",
      "ok",
      "ok",
      "error",
    ]);
    expect(byRef["4"]?.response).toMatchObject({ code: "too_many_topics" });
  });

  it("a frame over MAX_FRAME_BYTES closes that socket with 1009, and only that one", async () => {
    const bystander = await rawPhoenix();
    const { socket, closed } = await rawPhoenix();
    socket.send("x".repeat(70_000));
    expect((await closed).code).toBe(1009);
    bystander.socket.send(JSON.stringify([null, "1", "phoenix", "heartbeat", {}]));
    await expect.poll(() => bystander.replies().length).toBe(1);
  });

  it("a socket that stops heartbeating is closed with 4408", async () => {
    const { closed } = await rawPhoenix(0, { heartbeat: false });
    expect(await closed).toMatchObject({ code: 4408, reason: "heartbeat timeout" });
  });

  it("a flood of frames gets rate_limited replies, then the socket is closed with 4429", async () => {
    const { socket, replies, closed } = await rawPhoenix(0, { heartbeat: false });
    for (let i = 0; i < 600; i++)
      socket.send(JSON.stringify([null, String(i), "phoenix", "heartbeat", {}]));
    expect((await closed).code).toBe(4429);
    const codes = replies().map((f) => (f[4].response as { code?: string }).code ?? f[4].status);
    expect(codes).toContain("rate_limited");
    expect(codes.filter((c) => c === "ok").length).toBeGreaterThanOrEqual(400);
  });
});

describe("a fuzzed decoder", () => {
  it("answers every random or truncated frame with an error reply and keeps serving", async () => {
    const room = freshRoom("fuzz");
    const bystander = joinRoom(phoenixClient(fixed(cluster.nodeUrl(0))).socket, `room:${room}`);
    await bystander.joined;
    const { socket, frames, replies } = await rawPhoenix(0, { heartbeat: false });
    const valid = JSON.stringify([
      "1",
      "1",
      `room:${room}`,
      "speak",
      { body: "hello", client_id: "c" },
    ]);
    const fuzz: Array<string | Buffer> = [];
    for (let i = 0; i < 120; i++) fuzz.push(randomBytes(1 + (i % 40)).toString("latin1"));
    for (let i = 1; i < valid.length; i += 3) fuzz.push(valid.slice(0, i));
    fuzz.push(
      "[]",
      "{}",
      "null",
      "42",
      '"text"',
      "[1,2,3,4,5]",
      '[null,null,"room:x"]',
      "[null,null,1,2,3]",
    );
    fuzz.push(
      '[null,"9","room:NOPE","phx_join",{}]',
      '[null,"9","room:ok","speak",{}]',
      randomBytes(64),
    );
    for (const frame of fuzz) socket.send(frame, { binary: Buffer.isBuffer(frame) });
    await expect.poll(() => replies().length, { timeout: 10_000 }).toBe(fuzz.length);
    expect(replies().every((f) => f[4].status === "error")).toBe(true);
    expect(socket.readyState).toBe(WebSocket.OPEN);

    socket.send(JSON.stringify(["j", "j", `room:${room}`, "phx_join", {}]));
    socket.send(JSON.stringify(["j", "s", `room:${room}`, "speak", { body: "after the fuzz" }]));
    await expect
      .poll(() => frames.some((f) => f[3] === "publish" && f[4].body === "after the fuzz"), {
        timeout: 5000,
      })
      .toBe(true);
    await expect
      .poll(() => bystander.messages.map((m) => m.body), { timeout: 5000 })
      .toEqual(["after the fuzz"]);
  });
});

describe("slow consumers", () => {
  it("a client that stops reading is cut off; others get everything; it resumes from its last seq", async () => {
    const room = freshRoom("slow");
    const healthy = joinRoom(phoenixClient(fixed(cluster.nodeUrl(0))).socket, `room:${room}`);
    await healthy.joined;
    const slow = await rawPhoenix();
    slow.socket.send(JSON.stringify(["1", "1", `room:${room}`, "phx_join", {}]));
    await expect.poll(() => slow.replies().length).toBe(1);
    // Stop reading: the kernel buffers fill, then the node's send buffer passes its bound.
    (slow.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

    const total = 90;
    const body = "y".repeat(190_000);
    for (let i = 0; i < total; i++) await send(cluster.nodeUrl(1), room, `${i}:${body}`);
    await expect.poll(() => healthy.messages.length, { timeout: 30_000 }).toBe(total);
    expect(seqs(healthy.messages)).toEqual(range(1, total));
    const metrics = await (await fetch(`${cluster.nodeUrl(0)}/metrics`)).text();
    expect(metrics).toMatch(
      /chat_sockets_closed_by_server_total\{[^}]*reason="slow_consumer"[^}]*\} [1-9]/,
    );

    (slow.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    await slow.closed;
    const got = slow.frames.filter((f) => f[3] === "publish").map((f) => Number(f[4].seq));
    expect(got.length).toBeLessThan(total);
    expect(got).toEqual(range(1, got.length)); // what it got was in order, without gaps
    const resumed = await rawPhoenix(1);
    resumed.socket.send(
      JSON.stringify(["2", "2", `room:${room}`, "phx_join", { last_seq: got.length }]),
    );
    await expect
      .poll(() => resumed.frames.filter((f) => f[3] === "publish").map((f) => Number(f[4].seq)), {
        timeout: 20_000,
      })
      .toEqual(range(got.length + 1, total));
  });
});
