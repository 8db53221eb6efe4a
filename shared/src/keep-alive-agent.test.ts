import { createServer, get } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { keepAliveAgent } from "./keep-alive-agent.ts";

const servers: ReturnType<typeof createServer>[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** A server that keeps idle connections `keepAliveMs` (and says so in `Keep-Alive`). */
async function server(keepAliveMs: number) {
  const closedByClients = { count: 0 };
  const created = createServer((_req, res) => res.end("ok"));
  created.keepAliveTimeout = keepAliveMs;
  created.on("connection", (socket) => socket.on("end", () => closedByClients.count++));
  servers.push(created);
  await new Promise<void>((resolve) => created.listen(0, "127.0.0.1", resolve));
  return { port: (created.address() as AddressInfo).port, closedByClients };
}

const fetchWith = (agent: ReturnType<typeof keepAliveAgent>, port: number) =>
  new Promise<void>((resolve, reject) =>
    get({ host: "127.0.0.1", port, agent }, (res) => res.resume().on("end", resolve)).on(
      "error",
      reject,
    ),
  );

describe("keepAliveAgent", () => {
  it("reuses a connection, and lets it go a second before the server's Keep-Alive timeout", async () => {
    const { port, closedByClients } = await server(3000);
    const agent = keepAliveAgent();
    await fetchWith(agent, port);
    await fetchWith(agent, port);
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1); // one connection, reused
    await new Promise((resolve) => setTimeout(resolve, 2300));
    // Gone before the server's 3 s: no request can be sent on a connection as it closes.
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(0);
    expect(closedByClients.count).toBe(1);
    agent.destroy();
  });
});
