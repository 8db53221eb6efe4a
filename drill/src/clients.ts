import type { Message } from "@chat/shared";
import { EventSource } from "eventsource";
import { type Channel, LongPoll, Socket } from "phoenix";
import WebSocket from "ws";
import { Link } from "./link.ts";

/** Every way a user can be connected; the drill runs clients on all of them at once. */
export const DRILL_TRANSPORTS = [
  "phoenix-ws",
  "phoenix-longpoll",
  "cable",
  "sse",
  "longpoll",
  "shortpoll",
] as const;
export type DrillTransport = (typeof DRILL_TRANSPORTS)[number];

/** A chat user in one room: what it received, how its connection fared, and a way to send. */
export interface DrillClient {
  readonly name: string;
  readonly transport: DrillTransport;
  readonly room: string;
  readonly received: Message[];
  /** performance.now() at each arrival, parallel to `received`. */
  readonly arrivals: number[];
  readonly link: Link;
  /** Failed requests other than sends (polls, reconnect attempts answered with an error). */
  readonly errors: number;
  /** The last such error, for reports. */
  readonly lastError: string | undefined;
  /** One send attempt; resolves with the stored message or rejects. Retries are the caller's. */
  send(body: string, clientId: string): Promise<Message>;
  close(): void;
}

export interface ClientSetup {
  entry: string;
  name: string;
  room: string;
  token: string;
}

const SEND_TIMEOUT_MS = 5000;

/** Sends over HTTP through the public entry, as every non-socket client does. */
async function httpSend(setup: ClientSetup, body: string, clientId: string): Promise<Message> {
  const response = await fetch(`${setup.entry}/api/rooms/${setup.room}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${setup.token}` },
    body: JSON.stringify({ body, client_id: clientId }),
    signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
  });
  if (response.status >= 300)
    throw new Error(`send ${response.status} ${await errorCode(response)}`);
  return (await response.json()) as Message;
}

/** The API's error code, or what answered instead (an edge or gateway page, say). */
async function errorCode(response: Response): Promise<string> {
  const text = await response.text();
  try {
    return (JSON.parse(text) as { error: { code: string } }).error.code;
  } catch {
    return `(not the API's error: ${text.slice(0, 60)})`;
  }
}

/** A guest identity for the drill user (its own rate-limit bucket), retried while the entry wakes. */
export async function guestToken(entry: string, name: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`${entry}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    }).catch(() => null);
    if (response?.ok) return ((await response.json()) as { token: string }).token;
    if (attempt > 50) throw new Error(`no session for ${name}: ${response?.status}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export function createClient(transport: DrillTransport, setup: ClientSetup): DrillClient {
  switch (transport) {
    case "phoenix-ws":
    case "phoenix-longpoll":
      return phoenixClient(transport, setup);
    case "cable":
      return cableClient(setup);
    case "sse":
      return sseClient(setup);
    case "longpoll":
    case "shortpoll":
      return pollClient(transport, setup);
  }
}

const backoff = (tries: number) => [100, 250, 500, 1000][tries - 1] ?? 2000;

/** What every drill client keeps: its stream with arrival times, its link, its errors. */
class ClientState {
  readonly received: Message[] = [];
  readonly arrivals: number[] = [];
  readonly link = new Link();
  errors = 0;
  lastError: string | undefined;
  lastSeq = 0;
  readonly setup: ClientSetup;
  readonly transport: DrillTransport;

  constructor(setup: ClientSetup, transport: DrillTransport) {
    this.setup = setup;
    this.transport = transport;
  }

  record(message: Message): void {
    this.received.push(message);
    this.arrivals.push(performance.now());
    this.lastSeq = Math.max(this.lastSeq, message.seq);
  }

  fail(error: string): void {
    this.errors++;
    this.lastError = error;
  }

  /** The client's public face, with the transport's own send and close. */
  client(actions: Pick<DrillClient, "send" | "close">): DrillClient {
    const state = this;
    return {
      name: this.setup.name,
      transport: this.transport,
      room: this.setup.room,
      received: this.received,
      arrivals: this.arrivals,
      link: this.link,
      get errors() {
        return state.errors;
      },
      get lastError() {
        return state.lastError;
      },
      ...actions,
    };
  }
}

/** The official phoenix.js client; the join payload carries the last seq, so rejoins resume. */
function phoenixClient(transport: "phoenix-ws" | "phoenix-longpoll", setup: ClientSetup) {
  const state = new ClientState(setup, transport);
  const { link } = state;
  const socket = new Socket(`${setup.entry.replace(/^http/, "ws")}/socket`, {
    transport: transport === "phoenix-ws" ? WebSocket : LongPoll,
    params: { token: setup.token },
    heartbeatIntervalMs: 5000,
    timeout: SEND_TIMEOUT_MS,
    reconnectAfterMs: backoff,
    rejoinAfterMs: backoff,
  } as object);
  const channel: Channel = socket.channel(`room:${setup.room}`, () => ({
    last_seq: state.lastSeq,
  }));
  channel.on("publish", (message: Message) => state.record(message));
  channel.onError(() => link.down());
  socket.onClose(() => link.down());
  socket.onError(() => link.down());
  // Rejoins reuse the join push: its "ok" hook runs again on every successful rejoin.
  channel
    .join()
    .receive("ok", (reply: { node?: string }) => link.up(reply.node ?? null))
    .receive("error", (reason: unknown) => state.fail(`join refused: ${JSON.stringify(reason)}`));
  socket.connect();
  return state.client({
    send: (body, clientId) =>
      new Promise<Message>((resolve, reject) => {
        channel
          .push("speak", { body, client_id: clientId }, SEND_TIMEOUT_MS)
          .receive("ok", (message: Message) => resolve(message))
          .receive("error", (reason: unknown) => reject(new Error(JSON.stringify(reason))))
          .receive("timeout", () => reject(new Error("push timeout")));
      }),
    close: () => socket.disconnect(),
  });
}

type ActionCableModule = typeof import("@rails/actioncable");
let actionCable: Promise<ActionCableModule> | undefined;
/** @rails/actioncable expects a browser: Node gets `ws` and the globals its monitor touches. */
function loadActionCable(): Promise<ActionCableModule> {
  actionCable ??= (async () => {
    Object.assign(globalThis, {
      addEventListener: () => {},
      removeEventListener: () => {},
      document: { visibilityState: "visible" },
    });
    const module = await import("@rails/actioncable");
    module.adapters.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
    module.logger.enabled = false;
    return module;
  })();
  return actionCable;
}

/** The official Action Cable client; each resubscription names the last seq it saw. */
function cableClient(setup: ClientSetup): DrillClient {
  const state = new ClientState(setup, "cable");
  let closed = false;
  let consumer: { disconnect(): void } | undefined;
  void loadActionCable().then((ActionCable) => {
    if (closed) return;
    const cable = ActionCable.createConsumer(
      `${setup.entry.replace(/^http/, "ws")}/cable?token=${setup.token}`,
    );
    consumer = cable;
    const subscribe = () => {
      const subscription = cable.subscriptions.create(
        { channel: "ChatChannel", room: setup.room, last_seq: state.lastSeq },
        {
          connected: () => state.link.up(null),
          rejected: () => state.fail("subscription rejected"),
          received: (data: { message?: Message }) => data.message && state.record(data.message),
          disconnected: () => {
            state.link.down();
            // Replace the subscription so the next one resumes from the last seq seen.
            (cable.subscriptions as unknown as { remove(s: unknown): void }).remove(subscription);
            if (!closed) subscribe();
          },
        },
      );
    };
    subscribe();
  });
  return state.client({
    send: (body, clientId) => httpSend(setup, body, clientId),
    close: () => {
      closed = true;
      consumer?.disconnect();
    },
  });
}

/**
 * The `eventsource` client: it reconnects with Last-Event-ID by itself. An error answer
 * (a 503 while nodes restart) closes it for good, so then a new one resumes from the last seq.
 */
function sseClient(setup: ClientSetup): DrillClient {
  const state = new ClientState(setup, "sse");
  let closed = false;
  let node: string | null = null;
  let source: EventSource | undefined;
  const open = () => {
    const url = `${setup.entry}/api/rooms/${setup.room}/stream?after=${state.lastSeq}`;
    source = new EventSource(url, {
      fetch: async (input, init) => {
        const response = await fetch(input, {
          ...init,
          headers: { ...init?.headers, authorization: `Bearer ${setup.token}` },
        });
        node = response.headers.get("x-chat-node");
        return response;
      },
    });
    source.addEventListener("open", () => state.link.up(node));
    source.addEventListener("publish", (event) =>
      state.record(JSON.parse((event as MessageEvent).data as string) as Message),
    );
    source.addEventListener("error", (event) => {
      state.link.down();
      state.fail((event as { message?: string }).message ?? "stream error");
      if (source?.readyState === EventSource.CLOSED && !closed) {
        setTimeout(() => !closed && open(), 200);
      }
    });
  };
  open();
  return state.client({
    send: (body, clientId) => httpSend(setup, body, clientId),
    close: () => {
      closed = true;
      source?.close();
    },
  });
}

/** Long polling (held up to 10 s) or short polling (every 500 ms) from the last seq. */
function pollClient(transport: "longpoll" | "shortpoll", setup: ClientSetup): DrillClient {
  const state = new ClientState(setup, transport);
  let closed = false;
  const controller = new AbortController();
  const query = transport === "longpoll" ? "&wait=10" : "";
  const poll = async () => {
    const response = await fetch(
      `${setup.entry}/api/rooms/${setup.room}/messages?after=${state.lastSeq}${query}`,
      {
        headers: { authorization: `Bearer ${setup.token}` },
        signal: AbortSignal.any([controller.signal, AbortSignal.timeout(30_000)]),
      },
    );
    if (!response.ok) throw new Error(`poll ${response.status} ${await response.text()}`);
    const page = ((await response.json()) as { messages: Message[] }).messages;
    state.link.up(response.headers.get("x-chat-node"));
    for (const message of page) state.record(message);
  };
  void (async () => {
    while (!closed) {
      try {
        await poll();
        if (transport === "shortpoll") await sleep(500);
      } catch (error) {
        if (closed) return;
        state.fail(String(error));
        state.link.down();
        await sleep(200);
      }
    }
  })();
  return state.client({
    send: (body, clientId) => httpSend(setup, body, clientId),
    close: () => {
      closed = true;
      controller.abort();
    },
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
