import type { Message } from "@chat/shared";
import { type Channel, Socket } from "phoenix";
import WebSocket from "ws";
import type { NodePicker } from "./clients.ts";

/** phoenix.js 1.x's own JSON serializer for vsn 1.0.0 (objects), as older clients ship it. */
const V1 = {
  encode: (message: object, callback: (encoded: string) => void) =>
    callback(JSON.stringify(message)),
  decode: (raw: string, callback: (decoded: unknown) => void) => callback(JSON.parse(raw)),
};

export interface PhoenixClient {
  socket: Socket;
  /** Node URLs this client connected to, in order. */
  readonly connections: string[];
}

/**
 * The official phoenix.js Socket over WebSocket (Node 20 has no global WebSocket: `ws`).
 * Before every (re)connect it points itself at a node the picker chooses — what the
 * gateway will do — so a killed node's clients come back on a live one.
 */
export function phoenixClient(
  pick: NodePicker,
  options: { vsn?: "1.0.0" | "2.0.0"; params?: object; heartbeatIntervalMs?: number } = {},
): PhoenixClient {
  const connections: string[] = [];
  const first = pick();
  const socket = new Socket(`${first.replace("http", "ws")}/socket`, {
    transport: WebSocket,
    params: options.params ?? {},
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1000,
    ...(options.vsn === "1.0.0" ? { vsn: "1.0.0", ...V1 } : {}),
  } as object);
  const retarget = () => {
    const url = pick();
    (socket as unknown as { endPoint: string }).endPoint =
      `${url.replace("http", "ws")}/socket/websocket`;
  };
  socket.onOpen(() => {
    connections.push((socket as unknown as { endPoint: string }).endPoint);
  });
  socket.onClose(retarget);
  socket.onError(retarget);
  socket.connect();
  return { socket, connections };
}

/**
 * Joins `topic` resuming from the last seq seen: the join payload is a function, so every
 * rejoin (after a reconnect) sends the current `last_seq`, and the server replays the rest.
 */
export function joinRoom(socket: Socket, topic: string, options: { fromStart?: boolean } = {}) {
  const messages: Message[] = [];
  let lastSeq: number | undefined = options.fromStart ? 0 : undefined;
  const channel: Channel = socket.channel(topic, () =>
    lastSeq === undefined ? {} : { last_seq: lastSeq },
  );
  channel.on("publish", (message: Message) => {
    messages.push(message);
    lastSeq = message.seq;
  });
  const joined = new Promise<unknown>((resolve, reject) => {
    channel
      .join()
      .receive("ok", (reply: { last_seq?: number }) => {
        // A from-now join learns where it stands, so a rejoin after a reconnect misses nothing.
        lastSeq ??= reply.last_seq;
        resolve(reply);
      })
      .receive("error", (reason: unknown) =>
        reject(new Error(`join refused: ${JSON.stringify(reason)}`)),
      );
  });
  return { channel, messages, joined };
}

/** A push and its reply, as a promise: ok → the response, error → a rejection carrying it. */
export function push(
  channel: Channel,
  event: string,
  payload: object,
  timeoutMs = 5000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload, timeoutMs)
      .receive("ok", resolve)
      .receive("error", (response: unknown) =>
        reject(Object.assign(new Error("error reply"), { response })),
      )
      .receive("timeout", () => reject(new Error("push timed out")));
  });
}
