import { get, type IncomingHttpHeaders } from "node:http";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { EventSource } from "eventsource";
import { describe, expect, it } from "vitest";
import { fixed, history, receive, send, seqs } from "./support/clients.ts";
import { freshRoom, useCluster } from "./support/cluster.ts";

const cluster = await useCluster({
  nodes: 2,
  nodeEnv: { MAX_MESSAGE_BYTES: "1000", MAX_REQUEST_BYTES: "4096" },
});
const node = () => cluster.nodeUrl(0);

async function call(path: string, init: RequestInit = {}) {
  const response = await fetch(`${node()}${path}`, init);
  const text = await response.text();
  return {
    status: response.status,
    body: text ? JSON.parse(text) : null,
    headers: response.headers,
  };
}

const postJson = (path: string, body: string, headers: Record<string, string> = {}) =>
  call(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

/** A body sent as a stream goes out chunked: Transfer-Encoding, no Content-Length. */
const postChunked = (path: string, body: string) =>
  call(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new Blob([body]).stream(),
    duplex: "half",
  } as RequestInit);

describe("guest identity", () => {
  it("issues a signed token that every node accepts and that names the sender", async () => {
    const session = await postJson("/api/session", JSON.stringify({ name: "  Ada  " }));
    expect(session.status).toBe(201);
    expect(session.body.user).toMatchObject({ name: "Ada", id: expect.stringMatching(/^u_/) });
    const room = freshRoom("id");
    const sent = await send(cluster.nodeUrl(1), room, "signed", { token: session.body.token });
    expect(sent.message.user).toBe("Ada");
    const viaQuery = await call(`/api/rooms/${room}/messages?token=${session.body.token}`);
    expect(viaQuery.status).toBe(200);
  });

  it("tells a client whether the token it kept is still taken, on any node", async () => {
    const { body: session } = await postJson("/api/session", JSON.stringify({ name: "Kit" }));
    const check = (token?: string) =>
      fetch(`${cluster.nodeUrl(1)}/api/session`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    const valid = await check(session.token);
    expect(valid.status).toBe(200);
    expect(await valid.json()).toEqual({ user: session.user });
    const [head, , signature] = session.token.split(".");
    const forged = `${head}.${Buffer.from('{"sub":"u_x","name":"Kit","exp":9999999999}').toString("base64url")}.${signature}`;
    const refused = await check(forged);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    expect(await refused.json()).toMatchObject({ error: { code: "invalid_token" } });
    expect(await (await check()).json()).toEqual({ user: { id: "anonymous", name: "guest" } });
  });
});

describe("rooms", () => {
  it("creates, lists and refuses duplicates; a send creates its room", async () => {
    const name = freshRoom("made");
    expect((await postJson("/api/rooms", JSON.stringify({ name }))).status).toBe(201);
    expect((await postJson("/api/rooms", JSON.stringify({ name }))).body.error.code).toBe(
      "room_exists",
    );
    const implicit = freshRoom("implicit");
    await send(node(), implicit, "first");
    const names = (await call("/api/rooms")).body.rooms.map((r: { name: string }) => r.name);
    expect(names).toEqual(expect.arrayContaining([name, implicit]));
  });

  it("lists rooms a page at a time, in name order, each once, with a cursor to the next", async () => {
    const made = ["c", "a", "e", "b", "d"].map((letter) => `${freshRoom("paged")}-${letter}`);
    for (const name of made) await postJson("/api/rooms", JSON.stringify({ name }));
    const seen: string[] = [];
    let after = "";
    for (let pages = 0; after !== null; pages++) {
      expect(pages).toBeLessThan(100);
      const { status, body } = await call(`/api/rooms?limit=2&after=${after}`);
      expect(status).toBe(200);
      expect(body.rooms.length).toBeLessThanOrEqual(2);
      seen.push(...body.rooms.map((r: { name: string }) => r.name));
      after = body.next;
    }
    expect(seen).toEqual([...new Set(seen)].sort());
    expect(seen).toEqual(expect.arrayContaining(made));
    const bad = await call("/api/rooms?limit=0");
    expect(bad).toMatchObject({ status: 400, body: { error: { code: "bad_request" } } });
    expect(bad.body.error.message).toMatch(/limit/);
  });
});

describe("history and polling", () => {
  it("pages with after and limit, ascending", async () => {
    const room = freshRoom("page");
    for (let i = 0; i < 7; i++) await send(node(), room, `p${i}`);
    expect(seqs(await history(node(), room, 2, 3))).toEqual([3, 4, 5]);
    expect(seqs(await history(cluster.nodeUrl(1), room, 5))).toEqual([6, 7]);
  });

  it("a long poll answers at once when something is newer, else when a message arrives", async () => {
    const room = freshRoom("lp");
    await send(node(), room, "old");
    const started = Date.now();
    const immediate = await call(`/api/rooms/${room}/messages?after=0&wait=20`);
    expect(immediate.body.messages).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5000);
    const waiting = call(`/api/rooms/${room}/messages?after=1&wait=20`);
    setTimeout(() => void send(cluster.nodeUrl(1), room, "new"), 300);
    expect((await waiting).body.messages.map((m: { body: string }) => m.body)).toEqual(["new"]);
  });

  it("a long poll that sees nothing ends with an empty list when the wait runs out", async () => {
    const empty = await call(`/api/rooms/${freshRoom("quiet")}/messages?after=0&wait=1`);
    expect(empty).toMatchObject({ status: 200, body: { messages: [] } });
  });

  it("the thesis routes speak to and poll the default room", async () => {
    const before = (await history(node(), "chat")).at(-1)?.seq ?? 0;
    const form = await call("/chat/speak", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "message=from+a+form",
    });
    expect(form.status).toBe(201);
    const polled = await fetch(`${cluster.nodeUrl(1)}/chat/poll?after=${before}`);
    expect(((await polled.json()) as { messages: { body: string }[] }).messages[0]?.body).toBe(
      "from a form",
    );
  });
});

describe("SSE", () => {
  it("a stream joined from now says ready once subscribed, with where it stands: the next send always arrives", async () => {
    const room = freshRoom("ready");
    await send(cluster.nodeUrl(0), room, "one");
    await send(cluster.nodeUrl(0), room, "two");
    const source = new EventSource(`${cluster.nodeUrl(1)}/api/rooms/${room}/stream`);
    const received: number[] = [];
    source.addEventListener("publish", (event) => received.push(JSON.parse(event.data).seq));
    try {
      const ready = await new Promise<{ node: string; last_seq: number }>((resolve) =>
        source.addEventListener("ready", (event) => resolve(JSON.parse(event.data))),
      );
      expect(ready).toEqual({ node: "node-1", last_seq: 2 });
      await send(cluster.nodeUrl(0), room, "three");
      await expect.poll(() => received, { timeout: 10_000 }).toEqual([3]);
    } finally {
      source.close();
    }
  });
});

describe("responses", () => {
  it("name their node in X-Chat-Node: JSON, a chunked send, an error and an SSE stream", async () => {
    const room = freshRoom("named");
    const chunked = await postChunked(
      `/api/rooms/${room}/messages`,
      JSON.stringify({ body: "streamed" }),
    );
    expect(chunked.status).toBe(201);
    expect(chunked.body).toMatchObject({ seq: 1, body: "streamed" });
    const error = await call("/api/nothing-here");
    const stream = await fetch(`${node()}/api/rooms/${room}/stream`);
    await stream.body?.cancel();
    for (const headers of [chunked.headers, error.headers, stream.headers]) {
      expect(headers.get("x-chat-node")).toBe("node-0");
    }
  });
});

describe("bad input gets the documented JSON error and loses nothing", () => {
  const room = freshRoom("bad");
  // A short message in a request over 4096 bytes: only the request limit can refuse it.
  const OVER_REQUEST_LIMIT = JSON.stringify({ body: "x", padding: "y".repeat(5000) });
  const cases: Array<[string, () => ReturnType<typeof call>, number, string]> = [
    [
      "malformed JSON",
      () => postJson(`/api/rooms/${room}/messages`, "{not json"),
      400,
      "invalid_json",
    ],
    ["a JSON array", () => postJson(`/api/rooms/${room}/messages`, "[1]"), 400, "bad_request"],
    [
      "an empty body",
      () => postJson(`/api/rooms/${room}/messages`, JSON.stringify({ body: " " })),
      400,
      "bad_request",
    ],
    [
      "a NUL in the body",
      () => postJson(`/api/rooms/${room}/messages`, JSON.stringify({ body: "a\u0000b" })),
      400,
      "bad_request",
    ],
    [
      "a message over MAX_MESSAGE_BYTES",
      () => postJson(`/api/rooms/${room}/messages`, JSON.stringify({ body: "é".repeat(501) })),
      413,
      "payload_too_large",
    ],
    [
      "a request over MAX_REQUEST_BYTES",
      () => postJson(`/api/rooms/${room}/messages`, OVER_REQUEST_LIMIT),
      413,
      "payload_too_large",
    ],
    [
      "a chunked request over MAX_REQUEST_BYTES (no Content-Length to judge by)",
      () => postChunked(`/api/rooms/${room}/messages`, OVER_REQUEST_LIMIT),
      413,
      "payload_too_large",
    ],
    [
      "a bad client id",
      () =>
        postJson(
          `/api/rooms/${room}/messages`,
          JSON.stringify({ body: "x", client_id: "has space" }),
        ),
      400,
      "bad_request",
    ],
    [
      "a bad room name",
      () => postJson("/api/rooms/Not_OK!/messages", JSON.stringify({ body: "x" })),
      400,
      "invalid_room",
    ],
    [
      "a too-long room name",
      () => call(`/api/rooms/${"a".repeat(65)}/messages`),
      400,
      "invalid_room",
    ],
    ["a bad limit", () => call(`/api/rooms/${room}/messages?limit=0`), 400, "bad_request"],
    [
      "a wait over the maximum",
      () => call(`/api/rooms/${room}/messages?wait=9999`),
      400,
      "bad_request",
    ],
    [
      "a bad Last-Event-ID",
      () => call(`/api/rooms/${room}/stream`, { headers: { "last-event-id": "x" } }),
      400,
      "bad_request",
    ],
    ["an unknown route", () => call("/api/nothing-here"), 404, "not_found"],
    [
      "a method the route does not take",
      () => call(`/api/rooms/${room}/messages`, { method: "DELETE" }),
      405,
      "method_not_allowed",
    ],
    [
      "a forged token",
      () =>
        call(`/api/rooms/${room}/messages`, { headers: { authorization: "Bearer abc.def.ghi" } }),
      401,
      "invalid_token",
    ],
    [
      "a malformed Authorization header",
      () => call(`/api/rooms/${room}/messages`, { headers: { authorization: "Basic xyz" } }),
      401,
      "invalid_token",
    ],
    [
      "a session without a name",
      () => postJson("/api/session", JSON.stringify({ name: "" })),
      400,
      "bad_request",
    ],
  ];

  it.each(cases)("%s", async (_label, request, status, code) => {
    const response = await request();
    expect(response.status).toBe(status);
    expect(response.body).toEqual({ error: { code, message: expect.any(String) } });
  });

  it("a method a path does not take is 405 with the methods it does take in Allow", async () => {
    const allowed = async (method: string, path: string) =>
      (await fetch(`${node()}${path}`, { method })).headers.get("allow");
    expect(await allowed("DELETE", `/api/rooms/${room}/messages`)).toBe("GET, HEAD, POST");
    expect(await allowed("PUT", "/api/session")).toBe("GET, HEAD, POST");
    expect(await allowed("POST", "/")).toBe("GET, HEAD");
    expect(await allowed("GET", "/chat/speak")).toBe("POST");
    expect(await allowed("POST", "/nothing-here")).toBeNull(); // 404: no method would do
  });

  it("a query number out of bounds says which bound and which setting; after and before do not mix", async () => {
    const error = async (query: string) =>
      (await call(`/api/rooms/${room}/messages?${query}`)).body.error?.message;
    expect(await error("limit=0")).toBe("limit: must be at least 1"); // was "must be a whole number"
    expect(await error("limit=1001")).toBe("limit: must be at most 1000 (HISTORY_MAX_LIMIT)");
    expect(await error("wait=31")).toBe("wait: must be at most 30 seconds (LONGPOLL_MAX_WAIT_S)");
    expect(await error("after=1e3")).toBe("after: must be a whole number"); // was read as 1000
    expect(await error("after=0x10")).toBe("after: must be a whole number");
    expect(await error("after=1&before=5")).toBe(
      "before: cannot be used with after (after pages forward, before pages back)",
    ); // was the page before 5, from seq 1: neither meaning of after=1
    expect(await error("before=5&wait=1")).toBe(
      "wait: applies to after (a poll), not to before (a page back)",
    );
    expect((await call("/api/rooms?limit=1001")).body.error.message).toBe(
      "limit: must be at most 1000 (ROOM_LIST_MAX_LIMIT)",
    );
    // An unfilled form field is no value: the defaults apply.
    const blank = await call(`/api/rooms/${room}/messages?after=&limit=&wait=`);
    expect(blank).toMatchObject({ status: 200, body: { messages: expect.any(Array) } });
    expect((await call(`/api/rooms/${room}/messages?wait=0.2`)).status).toBe(200);
  });

  it("says what was wrong: a form sent where JSON belongs, each bad field once, with its name", async () => {
    const form = await call(`/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "body=hello",
    });
    expect(form.body.error.message).toBe(
      "the request body is not valid JSON (it came as application/x-www-form-urlencoded)",
    );
    const huge = await call(`/api/rooms/${room}/messages?after=1e30&limit=0`);
    expect(huge.body.error.message).toMatch(/^after: [^;]+; limit: [^;]+$/);
    const word = await call(`/api/rooms/${room}/messages?after=abc&wait=soon`);
    expect(word.body.error.message).toBe(
      "after: must be a whole number; wait: must be a number of seconds",
    ); // was "after: Invalid input: expected number, received NaN"
    const speak = await postJson("/chat/speak", JSON.stringify({ message: "" }));
    expect(speak.body.error.message).toBe("message must be a non-empty string");
    const id = await postJson(
      `/api/rooms/${room}/messages`,
      JSON.stringify({ body: "x", client_id: "" }),
    );
    expect(id.body.error.message).toMatch(/^client_id: /);
  });

  it("after all of that the node still serves an open stream and new sends", async () => {
    const receiver = receive("sse", fixed(node()), room);
    for (const [, request] of cases) await request();
    await send(cluster.nodeUrl(1), room, "still here");
    await expect
      .poll(() => receiver.messages.map((m) => m.body), { timeout: 10_000 })
      .toEqual(["still here"]);
    expect(seqs(await history(node(), room))).toEqual([1]); // none of the bad sends was stored
    receiver.close();
  });
});

describe("the web client, straight from a node", () => {
  /** A GET as sent, read as received: fetch would ask for and undo compression itself. */
  const raw = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>(
      (resolve, reject) => {
        get(`${node()}${path}`, { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
            }),
          );
        }).on("error", reject);
      },
    );

  it("goes out precompressed to clients that accept brotli or gzip, each encoding with its own ETag", async () => {
    const page = await raw("/chat");
    expect(page.status).toBe(200);
    expect(page.headers["content-encoding"]).toBeUndefined();
    expect(page.headers.vary).toBe("Accept-Encoding");
    const script = /src="(\/assets\/main-[^"]+\.js)"/.exec(page.body.toString())?.[1] ?? "";
    expect(script).not.toBe("");

    const plain = await raw(script, { "accept-encoding": "identity" });
    const br = await raw(script, { "accept-encoding": "gzip, deflate, br" });
    const gzip = await raw(script, { "accept-encoding": "gzip;q=1, br;q=0" });
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(br.headers["content-encoding"]).toBe("br");
    expect(gzip.headers["content-encoding"]).toBe("gzip");
    expect(brotliDecompressSync(br.body).equals(plain.body)).toBe(true);
    expect(gunzipSync(gzip.body).equals(plain.body)).toBe(true);
    expect(br.body.length).toBeLessThan(plain.body.length / 2);
    for (const response of [plain, br, gzip]) {
      expect(response.headers["cache-control"]).toContain("immutable");
      expect(response.headers.vary).toBe("Accept-Encoding");
    }
    expect(new Set([plain, br, gzip].map((r) => r.headers.etag)).size).toBe(3);

    const etag = String(br.headers.etag);
    expect((await raw(script, { "accept-encoding": "br", "if-none-match": etag })).status).toBe(
      304,
    );
    // As a cache in front may send it: in a list, or weak (If-None-Match compares weakly).
    for (const held of [`"other", ${etag}`, `W/${etag}`]) {
      const answer = await raw(script, { "accept-encoding": "br", "if-none-match": held });
      expect(answer.status, held).toBe(304);
    }
    // The brotli bytes' ETag does not name the plain ones: a client without brotli gets them.
    const other = await raw(script, { "if-none-match": etag });
    expect(other.status).toBe(200);
    expect(other.body.equals(plain.body)).toBe(true);
  });
});
