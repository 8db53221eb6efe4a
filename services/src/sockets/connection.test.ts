import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { createLogger } from "@chat/shared";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { Drainer } from "../lifecycle/drainer.ts";
import { createNodeMetrics } from "../metrics.ts";
import { SocketConnection, type SocketProtocol } from "./connection.ts";

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A real ws server whose one socket is wrapped as the node wraps it; and a real client. */
async function connected(maxBufferBytes = 1 << 20) {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
  servers.push(server);
  await once(server, "listening");
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const [raw] = (await once(server, "connection")) as [WebSocket];
  await once(client, "open");
  const metrics = createNodeMetrics("test");
  const settings = {
    transport: "phoenix-websocket",
    maxBufferBytes,
    framesPerSecond: 100,
    frameBurst: 100,
    drainer: new Drainer(metrics),
    metrics,
    log: createLogger({ service: "test", instance: "test", level: "silent" }),
  } as const;
  const connection = new SocketConnection(raw, settings, { id: "u", name: "u" }, "127.0.0.1");
  const received: string[] = [];
  client.on("message", (data, isBinary) => received.push(isBinary ? "<binary>" : String(data)));
  return { connection, client, raw, received };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe("SocketConnection.send", () => {
  it("sends shared payloads of every header size as text frames, in order with strings", async () => {
    const { connection, received } = await connected();
    // 7-bit, 16-bit and 64-bit payload lengths; strings in between take ws's own path.
    const shared = [5, 126, 200, 65_535, 70_000].map((n) => Buffer.from("x".repeat(n)));
    const expected: string[] = [];
    for (const [i, payload] of shared.entries()) {
      connection.send(payload);
      connection.send(`reply ${i}`);
      expected.push(String(payload), `reply ${i}`);
    }
    await until(() => received.length >= expected.length);
    expect(received).toEqual(expected);
  });

  it("gives one payload shared by many sockets to each of them intact", async () => {
    const sockets = await Promise.all([connected(), connected(), connected()]);
    const payload = Buffer.from(JSON.stringify({ body: "é ✓ shared" }));
    for (const { connection } of sockets) connection.send(payload);
    for (const { received } of sockets) await until(() => received.length === 1);
    expect(sockets.map((s) => s.received)).toEqual(sockets.map(() => [String(payload)]));
  });

  it("keeps frames whole and ordered while the socket is corked for a client's own frame", async () => {
    const { connection, client, received } = await connected();
    const protocol: SocketProtocol = {
      onText: async (text) => {
        connection.send(`ack ${text}`);
        connection.send(Buffer.from(`copy ${text}`));
      },
      onBinary: () => {},
      onFlood: () => {},
      onDrain: () => {},
      onClose: () => {},
    };
    connection.attach(protocol);
    connection.receive("hello");
    await until(() => received.length === 2);
    expect(received).toEqual(["ack hello", "copy hello"]);
    client.close();
  });

  it("writes a turn's first frame at once and what follows in the same turn in one more write", async () => {
    const { connection, raw, received } = await connected();
    const handle = (raw as unknown as { _socket: { _handle: Record<string, unknown> } })._socket
      ._handle;
    let writes = 0;
    for (const name of ["writeBuffer", "writev", "writeUtf8String", "writeLatin1String"]) {
      const original = handle[name] as (...args: unknown[]) => unknown;
      handle[name] = (...args: unknown[]) => {
        writes++;
        return original.apply(handle, args);
      };
    }
    connection.send(Buffer.from("one"));
    expect(writes).toBe(1); // a broadcast's first write never waits
    for (const body of ["two", "three"]) connection.send(Buffer.from(body)); // a node behind
    connection.send("a reply");
    expect(writes).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toBe(2);
    await until(() => received.length === 4);
    expect(received).toEqual(["one", "two", "three", "a reply"]);
    connection.send(Buffer.from("next turn"));
    expect(writes).toBe(3);
    await until(() => received.length === 5);
    expect(received.at(-1)).toBe("next turn");
  });

  it("cuts off a client whose unread frames pass the buffer bound (4503)", async () => {
    const { connection, client } = await connected(100_000);
    const closed = once(client, "close");
    client.pause(); // reads nothing: the server's buffer fills
    const payload = Buffer.alloc(50_000, "y");
    for (let i = 0; i < 200 && !connection.closed; i++) connection.send(payload);
    client.resume();
    const [code] = (await closed) as [number];
    expect(code).toBe(4503);
  });
});
