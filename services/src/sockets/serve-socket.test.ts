import { once } from "node:events";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createLogger } from "@chat/shared";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { loadNodeConfig } from "../config.ts";
import type { AppEnv, NodeServices } from "../http/context.ts";
import { Drainer } from "../lifecycle/drainer.ts";
import { createNodeMetrics } from "../metrics.ts";
import type { SocketConnection } from "./connection.ts";
import { serveSocket } from "./serve-socket.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const closers: Array<() => void> = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A real node:http server with @hono/node-server's WebSocket support, as node.ts builds it. */
async function echoServer(onUpgrade: (c: object, incoming: IncomingMessage) => void) {
  const metrics = createNodeMetrics("test");
  const services = {
    config: loadNodeConfig({}),
    metrics,
    drainer: new Drainer(metrics),
    log: createLogger({ service: "test", instance: "test", level: "silent" }),
  } as NodeServices;
  const app = new Hono<AppEnv>();
  app.use("/socket", async (c, next) => {
    onUpgrade(c, (c.env as { incoming: IncomingMessage }).incoming);
    await next();
  });
  serveSocket(app, services, {
    path: "/socket",
    transport: "phoenix-websocket",
    open: (connection: SocketConnection, query: Record<string, string>) => {
      openedWith = new WeakRef(query);
      return {
        onText: (text) => connection.send(`echo ${text}`),
        onBinary: () => {},
        onFlood: () => {},
        onDrain: () => {},
        onClose: () => {},
      };
    },
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const server = createAdaptorServer({ fetch: app.fetch, websocket: { server: wss } });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  closers.push(() => {
    for (const client of wss.clients) client.terminate();
    server.close();
  });
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/socket`;
}

/** The query the last socket was opened with, held weakly. */
let openedWith: WeakRef<object> | undefined;

async function collectGarbage() {
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    gc();
  }
}

describe("serveSocket", () => {
  it("keeps neither the upgrade's request context, its IncomingMessage nor its query once the socket is open", async () => {
    let context: WeakRef<object> | undefined;
    let incoming: WeakRef<IncomingMessage> | undefined;
    const url = await echoServer((c, request) => {
      context = new WeakRef(c);
      incoming = new WeakRef(request);
    });
    const client = new WebSocket(url);
    await once(client, "open");
    client.send("before");
    const [before] = await once(client, "message");
    expect(String(before)).toBe("echo before");

    await collectGarbage();
    expect(context?.deref()).toBeUndefined();
    expect(incoming?.deref()).toBeUndefined();
    expect(openedWith?.deref()).toBeUndefined();

    // The socket still works without them.
    client.send("after");
    const [after] = await once(client, "message");
    expect(String(after)).toBe("echo after");
    client.close();
  });
});
