import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { fixed, history, range, receive, send, seqs, TRANSPORTS } from "./support/clients.ts";
import { freshRoom, useCluster } from "./support/cluster.ts";

const cluster = await useCluster({ nodes: 3 });

describe.each(TRANSPORTS)("cross-node delivery over %s", (transport) => {
  it("a message sent on one node reaches a client on another", async () => {
    const room = transport.startsWith("thesis") ? "chat" : freshRoom(transport);
    const before = (await history(cluster.nodeUrl(0), room)).at(-1)?.seq ?? 0;
    const receiver = receive(transport, fixed(cluster.nodeUrl(1)), room, before);
    const body = `hello over ${transport} ${randomUUID()}`;
    await send(cluster.nodeUrl(0), room, body);
    await expect
      .poll(() => receiver.messages.map((m) => m.body), { timeout: 10_000 })
      .toContain(body);
    expect(seqs(receiver.messages)).toEqual([before + 1]);
    expect(receiver.messages[0]).toMatchObject({
      room,
      seq: before + 1,
      user: "guest",
      client_id: null,
    });
    receiver.close();
  });
});

describe("ordering", () => {
  it("concurrent senders on every node: every subscriber gets each seq once, in order, no gaps", async () => {
    const room = freshRoom("order");
    const receivers = cluster.nodes.flatMap((node) => [
      receive("sse", fixed(node.url), room),
      receive("longpoll", fixed(node.url), room),
    ]);
    const perSender = 40;
    await Promise.all(
      cluster.nodes.map(async (node) => {
        for (let i = 0; i < perSender; i++) await send(node.url, room, `${node.index}:${i}`);
      }),
    );
    const total = perSender * cluster.nodes.length;
    for (const receiver of receivers) {
      await expect.poll(() => receiver.messages.length, { timeout: 15_000 }).toBe(total);
      expect(seqs(receiver.messages), receiver.name).toEqual(range(1, total));
      receiver.close();
    }
    const stored = await history(cluster.nodeUrl(2), room);
    expect(seqs(stored)).toEqual(range(1, total));
    // Each sender's own messages keep the order it sent them in.
    for (const node of cluster.nodes) {
      const mine = stored.filter((m) => m.body.startsWith(`${node.index}:`)).map((m) => m.body);
      expect(mine).toEqual(range(0, perSender - 1).map((i) => `${node.index}:${i}`));
    }
  });

  it("a subscriber joining mid-stream with after=N gets N+1.. and nothing before", async () => {
    const room = freshRoom("join");
    for (let i = 0; i < 5; i++) await send(cluster.nodeUrl(0), room, `early ${i}`);
    const receiver = receive("sse", fixed(cluster.nodeUrl(1)), room, 3);
    for (let i = 0; i < 3; i++) await send(cluster.nodeUrl(2), room, `late ${i}`);
    await expect.poll(() => seqs(receiver.messages), { timeout: 10_000 }).toEqual([4, 5, 6, 7, 8]);
    receiver.close();
  });
});

describe("idempotent sends", () => {
  it("a resend with the same client id is stored and delivered once, on any node", async () => {
    const room = freshRoom("idem");
    const receiver = receive("sse", fixed(cluster.nodeUrl(2)), room);
    const clientId = randomUUID();
    const results = await Promise.all(
      [0, 1, 0, 1, 2, 2].map((i) => send(cluster.nodeUrl(i), room, "only once", { clientId })),
    );
    const ids = new Set(results.map((r) => r.message.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(5);
    await send(cluster.nodeUrl(0), room, "next");
    await expect.poll(() => seqs(receiver.messages), { timeout: 10_000 }).toEqual([1, 2]);
    expect(receiver.messages.map((m) => m.body)).toEqual(["only once", "next"]);
    expect(seqs(await history(cluster.nodeUrl(1), room))).toEqual([1, 2]);
    receiver.close();
  });

  it("the Idempotency-Key header works as the client id", async () => {
    const room = freshRoom("idem-header");
    const post = () =>
      fetch(`${cluster.nodeUrl(0)}/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": "key-1" },
        body: JSON.stringify({ body: "via header" }),
      });
    expect((await post()).status).toBe(201);
    const again = await post();
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ seq: 1, client_id: "key-1" });
  });
});
