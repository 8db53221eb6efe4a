import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { createLogger } from "@chat/shared";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { loadEdgeConfig } from "../static/src/config.ts";
import { createEdge } from "../static/src/edge.ts";
import { postOn } from "./support/clients.ts";

/**
 * The edge against a real origin: an HTTP server whose routes each test defines, which
 * counts the requests that reach it. (The cluster suites put the edge before real nodes.)
 */
type Route = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Route>();
const seen: IncomingMessage[] = [];
let origin: Server;
let originPort = 0;
let edge: ReturnType<typeof createEdge>;
let edgeUrl = "";
let adminUrl = "";
const ADMIN = "edge-admin-token-0123456789";

/** Requests each origin connection has carried, this one included. */
const requestsOn = new WeakMap<Socket, number>();

function startOrigin(port = 0): Promise<number> {
  origin = createServer((req, res) => {
    seen.push(req);
    requestsOn.set(req.socket, (requestsOn.get(req.socket) ?? 0) + 1);
    const route = routes.get((req.url ?? "/").split("?")[0] ?? "/");
    if (route) route(req, res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  const wss = new WebSocketServer({ server: origin });
  wss.on("connection", (socket) =>
    socket.on("message", (data) => socket.send(`echo:${String(data)}`)),
  );
  return new Promise((resolve) =>
    origin.listen(port, "127.0.0.1", () => resolve((origin.address() as AddressInfo).port)),
  );
}

beforeAll(async () => {
  originPort = await startOrigin();
  const config = loadEdgeConfig({
    PORT: "0",
    ADMIN_PORT: "0",
    ORIGIN_URL: `http://127.0.0.1:${originPort}`,
    CACHE_MAX_BYTES: String(400 * 1024),
    EDGE_ADMIN_TOKEN: ADMIN,
    HEADERS_TIMEOUT_MS: "1000",
  });
  edge = createEdge(config, createLogger({ service: "edge", instance: "test", level: "silent" }));
  const { port, adminPort } = await edge.listen();
  edgeUrl = `http://127.0.0.1:${port}`;
  adminUrl = `http://127.0.0.1:${adminPort}`;
});
afterAll(async () => {
  await edge.close();
  origin.close();
});
beforeEach(() => {
  routes.clear();
  seen.length = 0;
});

const hits = (path: string) => seen.filter((r) => r.url === path).length;

/** A raw GET (fetch would decompress and hide Content-Encoding). */
function get(path: string, headers: Record<string, string> = {}, method = "GET") {
  return new Promise<{ status: number; headers: Record<string, string>; body: Buffer }>(
    (resolve, reject) => {
      const req = request(`${edgeUrl}${path}`, { method, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers as Record<string, string>,
            body: Buffer.concat(chunks),
          }),
        );
      });
      req.on("error", reject);
      req.end();
    },
  );
}

const serve =
  (body: string | Buffer, headers: Record<string, string | string[]>, delayMs = 0): Route =>
  (_req, res) =>
    setTimeout(() => {
      res.writeHead(200, { "content-type": "text/plain", ...headers });
      res.end(body);
    }, delayMs);

describe("edge cache", () => {
  it("serves a fresh response from the cache with Age, Cache-Status and X-Cache", async () => {
    routes.set("/fresh", serve("fresh body", { "cache-control": "public, max-age=60" }));
    const first = await get("/fresh");
    expect(first.headers["x-cache"]).toBe("MISS");
    expect(first.headers["cache-status"]).toBe("chat-edge; fwd=miss; stored");
    const second = await get("/fresh");
    expect(second.body.toString()).toBe("fresh body");
    expect(second.headers).toMatchObject({ "x-cache": "HIT", "cache-status": "chat-edge; hit" });
    expect(Number(second.headers.age)).toBeGreaterThanOrEqual(0);
    expect(hits("/fresh")).toBe(1);
  });

  it("a client's own Cache-Control or Pragma: no-cache still reaches the origin", async () => {
    routes.set("/asked", serve("asked", { "cache-control": "public, max-age=60" }));
    await get("/asked");
    expect((await get("/asked")).headers["x-cache"]).toBe("HIT");
    expect(hits("/asked")).toBe(1);
    await get("/asked", { "cache-control": "no-cache" });
    await get("/asked", { "cache-control": "max-age=0" });
    await get("/asked", { pragma: "no-cache" });
    expect(hits("/asked")).toBe(4);
  });

  it("collapses 200 concurrent misses into one origin fetch", async () => {
    routes.set("/popular", serve("popular", { "cache-control": "public, max-age=60" }, 300));
    const responses = await Promise.all(Array.from({ length: 200 }, () => get("/popular")));
    expect(responses.every((r) => r.status === 200 && r.body.toString() === "popular")).toBe(true);
    expect(hits("/popular")).toBe(1);
    expect(responses.filter((r) => r.headers["cache-status"]?.includes("collapsed")).length).toBe(
      199,
    );
  });

  it("revalidates a stale entry with its ETag; a 304 refreshes it", async () => {
    let etagChecks = 0;
    routes.set("/etag", (req, res) => {
      if (req.headers["if-none-match"] === '"v1"') {
        etagChecks++;
        res.writeHead(304, { etag: '"v1"', "cache-control": "public, max-age=0" });
        res.end();
        return;
      }
      res.writeHead(200, {
        etag: '"v1"',
        "cache-control": "public, max-age=0",
        "content-type": "text/plain",
      });
      res.end("versioned");
    });
    await get("/etag");
    const revalidated = await get("/etag");
    expect(revalidated.body.toString()).toBe("versioned");
    expect(revalidated.headers["x-cache"]).toBe("REVALIDATED");
    expect(revalidated.headers["cache-status"]).toContain("fwd-status=304");
    expect(etagChecks).toBe(1);
    const conditional = await get("/etag", { "if-none-match": '"v1"' });
    expect(conditional.status).toBe(304);
  });

  it("serves stale while revalidating in the background (stale-while-revalidate)", async () => {
    let version = 1;
    routes.set("/swr", (_req, res) => {
      res.writeHead(200, {
        "cache-control": "public, max-age=1, stale-while-revalidate=30",
        "content-type": "text/plain",
      });
      res.end(`v${version++}`);
    });
    await get("/swr");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const stale = await get("/swr");
    expect(stale.body.toString()).toBe("v1");
    expect(stale.headers["x-cache"]).toBe("STALE");
    await expect.poll(() => hits("/swr")).toBe(2);
    await expect.poll(async () => (await get("/swr")).body.toString()).toBe("v2");
  });

  it("with the origin down, serves what it has, stale (stale-if-error)", async () => {
    routes.set(
      "/resilient",
      serve("still here", { "cache-control": "public, max-age=1, stale-if-error=600" }),
    );
    await get("/resilient");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await new Promise<void>((resolve) => origin.close(() => resolve()));
    origin.closeAllConnections();
    try {
      const stale = await get("/resilient");
      expect(stale.status).toBe(200);
      expect(stale.body.toString()).toBe("still here");
      expect(stale.headers["cache-status"]).toContain("stale-if-error");
      const uncached = await get("/never-seen");
      expect(uncached.status).toBe(502);
      expect(JSON.parse(uncached.body.toString())).toMatchObject({
        error: { code: "unavailable" },
      });
      expect(JSON.parse(uncached.body.toString())).not.toHaveProperty("status");
      // phoenix.js reads a long poll's status from the body, and stopped for good without one.
      const poll = await get("/socket/longpoll?vsn=2.0.0");
      expect(poll.status).toBe(502);
      expect(JSON.parse(poll.body.toString())).toEqual({
        status: 500,
        error: { code: "unavailable", message: expect.any(String), retryable: true },
      });
    } finally {
      await startOrigin(originPort);
    }
  });

  it("sends a fetch again when the origin closes the kept-alive connection it went out on", async () => {
    // What an origin's idle timeout does when a request arrives just as it fires.
    routes.set("/closing", (req, res) => {
      if ((requestsOn.get(req.socket) ?? 0) > 1) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { "cache-control": "no-store" });
      res.end("answered");
    });
    for (let i = 0; i < 3; i++) {
      const response = await get(`/closing?i=${i}`);
      expect(response.status).toBe(200);
      expect(response.body.toString()).toBe("answered");
    }
    expect(hits("/closing?i=2")).toBeGreaterThanOrEqual(2); // its first try met a closed connection
  });

  it("evicts least recently used objects to stay within CACHE_MAX_BYTES", async () => {
    const big = Buffer.alloc(100 * 1024, 7);
    for (let i = 0; i < 6; i++)
      routes.set(
        `/big${i}`,
        serve(big, {
          "cache-control": "public, max-age=60",
          "content-type": "application/octet-stream",
        }),
      );
    for (let i = 0; i < 6; i++) await get(`/big${i}`);
    expect((await get("/big5")).headers["x-cache"]).toBe("HIT");
    expect((await get("/big0")).headers["x-cache"]).toBe("MISS");
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/edge_cache_evictions_total\{[^}]*\} [1-9]/);
    expect(Number(/edge_cache_bytes\{[^}]*\} (\d+)/.exec(metrics)?.[1])).toBeLessThanOrEqual(
      400 * 1024,
    );
  });

  it("purges by URL and by Surrogate-Key tag, only with the admin token", async () => {
    routes.set(
      "/a",
      serve("a", { "cache-control": "public, max-age=60", "surrogate-key": "posts all" }),
    );
    routes.set("/b", serve("b", { "cache-control": "public, max-age=60", "surrogate-key": "all" }));
    await get("/a");
    await get("/b");
    const purge = (body: object, token = ADMIN) =>
      fetch(`${edgeUrl}/.edge/purge`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    expect((await purge({ urls: ["/a"] }, "wrong-token-wrong-token")).status).toBe(401);
    expect(await (await purge({ urls: ["/a"] })).json()).toEqual({ purged: 1 });
    expect((await get("/a")).headers["x-cache"]).toBe("MISS");
    expect(await (await purge({ tags: ["all"] })).json()).toEqual({ purged: 2 });
    expect((await get("/b")).headers["x-cache"]).toBe("MISS");
  });

  it("never stores a response that sets a cookie, nor one for an Authorization request", async () => {
    routes.set(
      "/cookie",
      serve("personal", { "cache-control": "max-age=60", "set-cookie": "session=abc" }),
    );
    expect((await get("/cookie")).headers["set-cookie"]).toBeDefined();
    await get("/cookie");
    expect(hits("/cookie")).toBe(2);
    routes.set("/auth", serve("for you", { "cache-control": "max-age=60" }));
    await get("/auth", { authorization: "Bearer x" });
    await get("/auth", { authorization: "Bearer y" });
    expect(hits("/auth")).toBe(2);
  });

  it("keys on nothing a client can use to poison the cache (X-Forwarded-Host and friends)", async () => {
    routes.set("/page", (req, res) => {
      res.writeHead(200, { "cache-control": "public, max-age=60", "content-type": "text/html" });
      res.end(`<a href="//${req.headers["x-forwarded-host"] ?? req.headers.host}/next">next</a>`);
    });
    await get("/page", { "x-forwarded-host": "evil.example" });
    const victim = await get("/page");
    expect(victim.body.toString()).not.toContain("evil.example");
    expect(seen[0]?.headers["x-forwarded-host"]).toBeUndefined();
  });

  it("stores gzip and brotli variants, compressing once per variant", async () => {
    const text = "chat ".repeat(2000);
    routes.set(
      "/app.js",
      serve(text, {
        "cache-control": "public, max-age=60",
        "content-type": "application/javascript",
      }),
    );
    const br = await get("/app.js", { "accept-encoding": "gzip, br" });
    expect(br.headers["content-encoding"]).toBe("br");
    expect(brotliDecompressSync(br.body).toString()).toBe(text);
    const gz = await get("/app.js", { "accept-encoding": "gzip" });
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(gz.body).toString()).toBe(text);
    const again = await get("/app.js", { "accept-encoding": "br;q=1, gzip;q=0.5" });
    expect(again.body.equals(br.body)).toBe(true);
    expect((await get("/app.js")).body.toString()).toBe(text);
    expect(hits("/app.js")).toBe(1);
    expect(br.headers.vary).toContain("Accept-Encoding");
  });

  it("names each encoding's bytes with its own ETag, and answers a conditional request by any of them with a full 304", async () => {
    routes.set(
      "/v.js",
      serve("chat ".repeat(2000), {
        "cache-control": "public, max-age=60",
        "content-type": "application/javascript",
        etag: '"v7"',
      }),
    );
    const plain = await get("/v.js"); // a miss: answered from the object just stored
    const br = await get("/v.js", { "accept-encoding": "br" });
    const gz = await get("/v.js", { "accept-encoding": "gzip" });
    // The origin's strong tag names its unencoded bytes; the edge's own encodings get it weak.
    expect([plain.headers.etag, br.headers.etag, gz.headers.etag]).toEqual([
      '"v7"',
      'W/"v7"',
      'W/"v7"',
    ]);
    const conditional = (etags: string, encoding = "br") =>
      get("/v.js", { "accept-encoding": encoding, "if-none-match": etags });
    for (const etags of ['W/"v7"', '"v7"', '"v6", W/"v7"', "*"]) {
      const answer = await conditional(etags);
      expect(answer.status, etags).toBe(304);
      expect(answer.body.length).toBe(0);
      expect(answer.headers).toMatchObject({
        etag: 'W/"v7"',
        "cache-control": "public, max-age=60",
        vary: expect.stringContaining("Accept-Encoding"),
      });
    }
    expect((await conditional('"v6"')).status).toBe(200);
    routes.set("/new.js", serve("new", { "cache-control": "public, max-age=60", etag: '"n1"' }));
    // A miss for a client that already holds the bytes: the stored copy answers 304 too.
    expect((await get("/new.js", { "if-none-match": '"n1"' })).status).toBe(304);
    expect(hits("/v.js")).toBe(1);
  });
});

describe("ranges from the stored copy", () => {
  const text = "0123456789".repeat(100); // 1,000 bytes
  beforeEach(() =>
    routes.set(
      "/big.txt",
      serve(text, {
        "cache-control": "public, max-age=60",
        etag: '"r1"',
        "last-modified": "Tue, 01 Dec 2026 10:00:00 GMT",
      }),
    ),
  );
  const ranged = (range: string, extra: Record<string, string> = {}) =>
    get("/big.txt", { range, ...extra });

  it("answers one range with 206 and Content-Range, from a copy fetched whole once", async () => {
    expect((await get("/big.txt")).headers["accept-ranges"]).toBe("bytes");
    for (const [range, start, end] of [
      ["bytes=0-9", 0, 9],
      ["bytes=995-", 995, 999],
      ["bytes=-5", 995, 999],
      ["bytes=990-5000", 990, 999],
      ["bytes=10-19,15-29", 10, 29], // overlapping ranges combined into one
    ] as const) {
      const answer = await ranged(range);
      expect(answer.status, range).toBe(206);
      expect(answer.headers["content-range"]).toBe(`bytes ${start}-${end}/1000`);
      expect(answer.headers["content-length"]).toBe(String(end - start + 1));
      expect(answer.body.toString()).toBe(text.slice(start, end + 1));
    }
    expect(hits("/big.txt")).toBe(1);
    expect(seen[0]?.headers.range).toBeUndefined(); // the origin was asked for the whole body
  });

  it("416 for a range wholly past the end; the whole body for a malformed one, several, or an If-Range that does not hold", async () => {
    const past = await ranged("bytes=1000-1010");
    expect(past.status).toBe(416);
    expect(past.headers["content-range"]).toBe("bytes */1000");
    for (const [range, extra] of [
      ["bytes=abc", {}],
      ["lines=1-2", {}],
      ["bytes=0-1,500-501", {}],
      ["bytes=0-9", { "if-range": '"r0"' }],
      ["bytes=0-9", { "if-range": 'W/"r1"' }], // If-Range compares strongly
      ["bytes=0-9", { "if-range": "Mon, 30 Nov 2026 10:00:00 GMT" }],
    ] as const) {
      const answer = await ranged(range, extra);
      expect(answer.status, `${range} ${JSON.stringify(extra)}`).toBe(200);
      expect(answer.body.toString()).toBe(text);
    }
    for (const ifRange of ['"r1"', "Tue, 01 Dec 2026 10:00:00 GMT"])
      expect((await ranged("bytes=0-9", { "if-range": ifRange })).status, ifRange).toBe(206);
  });
});

describe("several edges", () => {
  it("each keeps its own cache in front of the same origin", async () => {
    const second = createEdge(
      loadEdgeConfig({ PORT: "0", ADMIN_PORT: "0", ORIGIN_URL: `http://127.0.0.1:${originPort}` }),
      createLogger({ service: "edge", instance: "second", level: "silent" }),
    );
    const secondUrl = `http://127.0.0.1:${(await second.listen()).port}`;
    try {
      routes.set("/shared", serve("same origin", { "cache-control": "public, max-age=60" }));
      expect((await get("/shared")).headers["x-cache"]).toBe("MISS");
      expect((await get("/shared")).headers["x-cache"]).toBe("HIT");
      const other = await fetch(`${secondUrl}/shared`);
      expect(other.headers.get("x-cache")).toBe("MISS");
      expect(await other.text()).toBe("same origin");
      expect(hits("/shared")).toBe(2);
    } finally {
      await second.close();
    }
  });
});

describe("pass-through", () => {
  it("streams SSE without buffering and never caches API calls", async () => {
    routes.set("/api/rooms/x/stream", (_req, res) => {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "public, max-age=60",
      });
      res.write("data: first\n\n");
      setTimeout(() => res.end("data: second\n\n"), 1500);
    });
    const started = Date.now();
    const response = await fetch(`${edgeUrl}/api/rooms/x/stream`);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("first");
    expect(Date.now() - started).toBeLessThan(1200);
    expect(response.headers.get("x-cache")).toBe("BYPASS");
    await reader.cancel();
    routes.set("/api/rooms", serve("[]", { "cache-control": "public, max-age=60" }));
    await get("/api/rooms");
    await get("/api/rooms");
    expect(hits("/api/rooms")).toBe(2);
  });

  it("passes POSTs and WebSocket upgrades through", async () => {
    routes.set("/api/rooms/x/messages", (req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(body);
      });
    });
    const posted = await fetch(`${edgeUrl}/api/rooms/x/messages`, {
      method: "POST",
      body: '{"body":"hi"}',
    });
    expect(posted.status).toBe(201);
    expect(await posted.text()).toBe('{"body":"hi"}');
    const socket = new WebSocket(`${edgeUrl.replace("http", "ws")}/socket/websocket`);
    const reply = await new Promise<string>((resolve, reject) => {
      socket.on("open", () => socket.send("ping"));
      socket.on("message", (data) => resolve(String(data)));
      socket.on("error", reject);
    });
    expect(reply).toBe("echo:ping");
    socket.close();
  });

  it("drops the rest of a body the origin refused unread, so the connection carries the next request", async () => {
    // As a chat node does: 413 judged by Content-Length, no more reading, the connection closed soon after.
    routes.set("/api/rooms/x/messages", (req, res) => {
      if (Number(req.headers["content-length"]) > 16_384) {
        req.once("data", () => req.pause());
        res.writeHead(413, { "content-type": "application/json" }).end("{}");
        setTimeout(() => req.socket.destroy(), 200);
      } else {
        req.resume().on("end", () => res.writeHead(201).end("{}"));
      }
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const url = `${edgeUrl}/api/rooms/x/messages`;
    try {
      for (let i = 0; i < 3; i++) {
        const oversized = JSON.stringify({ body: "x".repeat(40_000_000) }); // more than socket buffers hold
        const refused = await postOn(agent, url, oversized);
        expect(refused.status).toBe(413);
        const next = await postOn(agent, url, '{"body":"next"}');
        expect(next).toEqual({ status: 201, connection: refused.connection });
      }
    } finally {
      agent.destroy();
    }
  });

  it("keeps the nodes', the gateway's and its own metrics and health from the public, however the path is spelled", async () => {
    for (const path of ["/metrics", "/healthz", "/readyz", "/.gateway/status"])
      routes.set(path, serve("internal", {}));
    routes.set("/api/metrics", serve("public", {}));
    const spellings = [
      "/metrics",
      "/metrics?x=1",
      "/%6Detrics",
      "/api/../metrics",
      "/healthz",
      "/readyz",
      "/.gateway/status",
      "/%2Egateway/status",
      "/.gateway/metrics",
    ];
    for (const path of spellings) {
      const answer = await get(path);
      expect(answer.status, path).toBe(404);
      expect(JSON.parse(answer.body.toString()).error.code, path).toBe("not_found");
    }
    expect(seen.map((req) => req.url)).toEqual([]);
    expect((await get("/api/metrics")).body.toString()).toBe("public");
    // Its own metrics and health are on the admin port only.
    expect((await get("/.edge/metrics")).status).toBe(404);
    expect(await (await fetch(`${adminUrl}/metrics`)).text()).toContain("edge_cache_hits_total");
    expect(await (await fetch(`${adminUrl}/healthz`)).json()).toMatchObject({ status: "ok" });
  });

  it("answers what it cannot pass on, never with a bare hang-up: 431, 408, and 502 to an upgrade", async () => {
    expect((await get("/x", { "x-big": "y".repeat(20_000) })).status).toBe(431);

    const slow = connect(Number(new URL(edgeUrl).port), "127.0.0.1");
    slow.write("GET / HTTP/1.1\r\nHost: x\r\n"); // a head that never ends
    let answer = "";
    slow.setEncoding("utf8").on("data", (chunk: string) => (answer += chunk));
    await new Promise((resolve) => slow.on("close", resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);

    await new Promise<void>((resolve) => origin.close(() => resolve()));
    origin.closeAllConnections();
    try {
      const refused = await new Promise<IncomingMessage>((resolve, reject) => {
        const socket = new WebSocket(`${edgeUrl.replace("http", "ws")}/socket/websocket`);
        socket.on("unexpected-response", (_request, response) => resolve(response));
        socket.on("open", () => reject(new Error("upgraded with the origin down")));
        socket.on("error", reject);
      });
      expect(refused.statusCode).toBe(502);
      expect(refused.headers["retry-after"]).toBe("1");
      let body = "";
      for await (const chunk of refused.setEncoding("utf8")) body += chunk;
      expect(JSON.parse(body)).toMatchObject({ error: { code: "unavailable", retryable: true } });
    } finally {
      await startOrigin(originPort);
    }
  });
});
