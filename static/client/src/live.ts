import type { Message } from "@chat/shared";
import { LongPoll, Presence, Socket } from "phoenix";
import { backoffMs, history, pause, send as sendOverHttp } from "./api.ts";

export type TransportName = "websocket" | "longpoll" | "sse" | "polling";

export interface LiveHandlers {
  onMessage(message: Message): void;
  onStatus(state: "connecting" | "live" | "reconnecting", node?: string | null): void;
  onPresence(names: string[] | null): void;
}

/** A room followed live over one transport; resumes from `lastSeq()` whenever it reconnects. */
export interface Live {
  send(body: string, clientId: string): Promise<Message>;
  close(): void;
}

export function openLive(
  transport: TransportName,
  room: string,
  lastSeq: () => number,
  token: string | undefined,
  handlers: LiveHandlers,
): Live {
  switch (transport) {
    case "websocket":
    case "longpoll":
      return phoenixLive(transport, room, lastSeq, token, handlers);
    case "sse":
      return sseLive(room, lastSeq, token, handlers);
    case "polling":
      return pollingLive(room, lastSeq, token, handlers);
  }
}

/** The thesis's winning prototype: Phoenix Channels, over WebSocket or its LongPoll fallback. */
function phoenixLive(
  transport: "websocket" | "longpoll",
  room: string,
  lastSeq: () => number,
  token: string | undefined,
  handlers: LiveHandlers,
): Live {
  const socket = new Socket("/socket", {
    params: token ? { token } : {},
    ...(transport === "longpoll" ? { transport: LongPoll } : {}),
  });
  socket.onError(() => handlers.onStatus("reconnecting"));
  socket.connect();
  // A params function: every rejoin after a reconnect asks for what came after the last seq seen.
  const channel = socket.channel(`room:${room}`, () => ({ last_seq: lastSeq() }));
  channel.on("publish", (message: Message) => handlers.onMessage(message));
  const presence = new Presence(channel);
  presence.onSync(() =>
    handlers.onPresence(
      presence.list(
        (_key: string, { metas }: { metas: { name: string }[] }) => metas[0]?.name ?? "?",
      ),
    ),
  );
  channel
    .join()
    .receive("ok", (reply: { node?: string }) => handlers.onStatus("live", reply.node))
    .receive("error", () => handlers.onStatus("reconnecting"));
  channel.onError(() => handlers.onStatus("reconnecting"));
  return {
    send: (body, clientId) =>
      new Promise((resolve, reject) => {
        channel
          .push("speak", { body, client_id: clientId }, 10_000)
          .receive("ok", (message: Message) => resolve(message))
          // A refusal worth retrying (storage down, node overloaded) and a lost reply go on
          // over HTTP, which retries with backoff; the client id keeps it to one message.
          .receive("error", (reply: { reason?: string; retryable?: boolean }) =>
            reply.retryable
              ? sendOverHttp(room, body, clientId, token).then(resolve, reject)
              : reject(new Error(reply.reason ?? "refused")),
          )
          .receive("timeout", () =>
            sendOverHttp(room, body, clientId, token).then(resolve, reject),
          );
      }),
    close: () => {
      channel.leave();
      socket.disconnect();
    },
  };
}

/**
 * Streaming: EventSource resumes by itself with Last-Event-ID after a dropped connection, but
 * gives up for good on an answer that is not a stream (a 502 while no node is up); then a new
 * one is opened from the last seq shown, after a pause that grows to 5 s.
 */
function sseLive(
  room: string,
  lastSeq: () => number,
  token: string | undefined,
  handlers: LiveHandlers,
): Live {
  let source: EventSource;
  let retries = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  const open = () => {
    const params = new URLSearchParams({ after: String(lastSeq()), ...(token ? { token } : {}) });
    source = new EventSource(`/api/rooms/${room}/stream?${params}`);
    source.addEventListener("ready", (event) => {
      retries = 0;
      handlers.onStatus("live", (JSON.parse(event.data) as { node: string }).node);
    });
    source.addEventListener("publish", (event) =>
      handlers.onMessage(JSON.parse(event.data) as Message),
    );
    source.onerror = () => {
      handlers.onStatus("reconnecting");
      if (source.readyState !== EventSource.CLOSED) return; // EventSource retries this one
      retryTimer = setTimeout(open, backoffMs(++retries, 500));
    };
  };
  open();
  handlers.onPresence(null);
  return {
    send: (body, clientId) => sendOverHttp(room, body, clientId, token),
    close: () => {
      clearTimeout(retryTimer);
      source.close();
    },
  };
}

/** The thesis's first prototype: ask every second. */
function pollingLive(
  room: string,
  lastSeq: () => number,
  token: string | undefined,
  handlers: LiveHandlers,
): Live {
  let stopped = false;
  const tick = async () => {
    while (!stopped) {
      try {
        const { messages, node } = await history(room, { after: lastSeq() });
        handlers.onStatus("live", node);
        for (const message of messages) handlers.onMessage(message);
      } catch {
        handlers.onStatus("reconnecting");
      }
      await pause(1000);
    }
  };
  void tick();
  handlers.onPresence(null);
  return {
    send: (body, clientId) => sendOverHttp(room, body, clientId, token),
    close: () => {
      stopped = true;
    },
  };
}
