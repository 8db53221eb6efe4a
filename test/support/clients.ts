import { type Agent, request } from "node:http";
import type { Message } from "@chat/shared";
import { EventSource } from "eventsource";

/** Picks the node URL for each request; a rotating picker stands in for the gateway. */
export type NodePicker = () => string;

export const fixed =
  (url: string): NodePicker =>
  () =>
    url;

/** Round-robin over whichever nodes `live()` reports, like a load balancer would. */
export function roundRobin(live: () => string[]): NodePicker {
  let next = 0;
  return () => {
    const urls = live();
    const url = urls[next++ % urls.length];
    if (!url) throw new Error("no live node to pick");
    return url;
  };
}

export interface SendOptions {
  clientId?: string;
  token?: string;
}

export async function send(
  base: string,
  room: string,
  body: string,
  options: SendOptions = {},
): Promise<{ status: number; message: Message }> {
  const response = await fetch(`${base}/api/rooms/${room}/messages`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    },
    body: JSON.stringify({ body, client_id: options.clientId }),
  });
  const json = (await response.json()) as Message;
  if (response.status >= 300)
    throw new Error(`send failed: ${response.status} ${JSON.stringify(json)}`);
  return { status: response.status, message: json };
}

/** Sends, retrying with the same client id on any failure: what a well-behaved client does. */
export async function sendReliably(
  pick: NodePicker,
  room: string,
  body: string,
  clientId: string,
): Promise<Message> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await send(pick(), room, body, { clientId })).message;
    } catch (error) {
      if (attempt > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

export async function history(
  base: string,
  room: string,
  after = 0,
  limit = 1000,
): Promise<Message[]> {
  const response = await fetch(`${base}/api/rooms/${room}/messages?after=${after}&limit=${limit}`);
  if (!response.ok) throw new Error(`history failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { messages: Message[] }).messages;
}

/** A client receiving a room's messages over some transport, from a resume point on. */
export interface Receiver {
  readonly name: string;
  readonly messages: Message[];
  close(): void;
}

export type Transport = "sse" | "longpoll" | "shortpoll" | "thesis-stream" | "thesis-poll";
export const TRANSPORTS: Transport[] = [
  "sse",
  "longpoll",
  "shortpoll",
  "thesis-stream",
  "thesis-poll",
];

export function receive(transport: Transport, pick: NodePicker, room: string, after = 0): Receiver {
  switch (transport) {
    case "sse":
      return sseReceiver(pick, `/api/rooms/${room}/stream`, after);
    case "thesis-stream":
      return sseReceiver(pick, "/chat/stream", after);
    case "longpoll":
      return pollReceiver(
        pick,
        (a) => `/api/rooms/${room}/messages?after=${a}&wait=5`,
        after,
        transport,
      );
    case "thesis-poll":
      return pollReceiver(pick, (a) => `/chat/poll?after=${a}`, after, transport);
    case "shortpoll":
      return pollReceiver(
        pick,
        (a) => `/api/rooms/${room}/messages?after=${a}`,
        after,
        transport,
        100,
      );
  }
}

/**
 * The real `eventsource` client: it reconnects by itself and sends Last-Event-ID. Its fetch
 * is pointed at a picked node on every (re)connect, as the gateway would do.
 */
export function sseReceiver(pick: NodePicker, path: string, after: number): Receiver {
  const messages: Message[] = [];
  const source = new EventSource(`http://chat.invalid${path}?after=${after}`, {
    fetch: (input, init) => fetch(String(input).replace("http://chat.invalid", pick()), init),
  });
  source.addEventListener("publish", (event) => {
    messages.push(JSON.parse((event as MessageEvent).data as string) as Message);
  });
  return { name: "sse", messages, close: () => source.close() };
}

/** Polls in a loop from its last seq; on any failure it waits a little and polls elsewhere. */
export function pollReceiver(
  pick: NodePicker,
  pathAfter: (after: number) => string,
  after: number,
  name: string,
  pauseMs = 0,
): Receiver {
  const messages: Message[] = [];
  let cursor = after;
  let closed = false;
  const controller = new AbortController();
  void (async () => {
    while (!closed) {
      try {
        const response = await fetch(`${pick()}${pathAfter(cursor)}`, {
          signal: controller.signal,
        });
        if (!response.ok) throw new Error(`poll ${response.status}`);
        const page = ((await response.json()) as { messages: Message[] }).messages;
        messages.push(...page);
        cursor = page.at(-1)?.seq ?? cursor;
        if (pauseMs) await sleep(pauseMs);
      } catch {
        if (!closed) await sleep(100);
      }
    }
  })();
  return {
    name,
    messages,
    close: () => {
      closed = true;
      controller.abort();
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const seqs = (messages: Message[]) => messages.map((m) => m.seq);

/** 1..n: what a subscriber from the start of a room must have received, exactly. */
export const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Numbers sockets in the order postOn first sees them. */
const connectionIds = new WeakMap<object, number>();
let connectionsSeen = 0;

/**
 * A JSON POST on `agent` (keep-alive, one socket, to see what its connection carries next):
 * the status, and a number for the connection it went on, the same for a reused one. Gives
 * up after 5 s, so a request stuck behind another's unread body fails instead of hanging.
 */
export function postOn(
  agent: Agent,
  url: string,
  body: string,
): Promise<{ status: number; connection: number }> {
  return new Promise((resolve, reject) => {
    const post = request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        signal: AbortSignal.timeout(5000),
      },
      (response) => {
        const socket = response.socket;
        if (!connectionIds.has(socket)) connectionIds.set(socket, ++connectionsSeen);
        response.resume();
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, connection: connectionIds.get(socket) ?? 0 }),
        );
      },
    );
    post.on("error", reject);
    post.end(body);
  });
}
