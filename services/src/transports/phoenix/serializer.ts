import { ChatError, DEFAULT_ROOM, PUBLISH_EVENT } from "@chat/shared";
import { parseRoomName } from "../../rooms/room-name.ts";

/**
 * Phoenix Channels messages and their two JSON serializers, as phoenix.js speaks them:
 *   vsn 1.0.0  {"join_ref","ref","topic","event","payload"}
 *   vsn 2.0.0  [join_ref, ref, topic, event, payload]
 */
export interface PhoenixMessage {
  join_ref: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

export type Vsn = "1.0.0" | "2.0.0";

export const PHOENIX_EVENTS = {
  join: "phx_join",
  leave: "phx_leave",
  reply: "phx_reply",
  error: "phx_error",
  close: "phx_close",
  heartbeat: "heartbeat",
} as const;

/** The topic heartbeats travel on. */
export const PHOENIX_TOPIC = "phoenix";

/** phoenix.js sends `vsn` on connect; like Phoenix, no vsn (Tsung, old clients) means 1.0.0. */
export function parseVsn(raw: string | undefined): Vsn {
  return raw === undefined || raw.startsWith("1.") ? "1.0.0" : "2.0.0";
}

export function encode(message: PhoenixMessage, vsn: Vsn): string {
  const { join_ref, ref, topic, event, payload } = message;
  return vsn === "2.0.0"
    ? JSON.stringify([join_ref, ref, topic, event, payload])
    : JSON.stringify({ join_ref, ref, topic, event, payload });
}

/** Decodes one frame; anything malformed is a ChatError the caller answers with. */
export function decode(text: string, vsn: Vsn): PhoenixMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChatError("invalid_json", "the frame is not valid JSON");
  }
  const fields = vsn === "2.0.0" ? fromArray(value) : fromObject(value);
  if (!fields) throw new ChatError("bad_request", `the frame does not match the ${vsn} serializer`);
  return fields;
}

function fromArray(value: unknown): PhoenixMessage | undefined {
  if (!Array.isArray(value) || value.length !== 5) return undefined;
  const [join_ref, ref, topic, event, payload] = value as unknown[];
  return checked({ join_ref, ref, topic, event, payload });
}

function fromObject(value: unknown): PhoenixMessage | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const { join_ref = null, ref = null, topic, event, payload } = value as Record<string, unknown>;
  return checked({ join_ref, ref, topic, event, payload });
}

function checked(m: Record<string, unknown>): PhoenixMessage | undefined {
  const isRef = (r: unknown) =>
    r === null || r === undefined || typeof r === "string" || typeof r === "number";
  if (typeof m.topic !== "string" || typeof m.event !== "string") return undefined;
  if (!isRef(m.join_ref) || !isRef(m.ref)) return undefined;
  return {
    join_ref: m.join_ref === null || m.join_ref === undefined ? null : String(m.join_ref),
    ref: m.ref === null || m.ref === undefined ? null : String(m.ref),
    topic: m.topic,
    event: m.event,
    payload: m.payload ?? {},
  };
}

/** `room:<name>` is a room; the bare `chat` is the default room, as in the thesis. */
export function roomOfTopic(topic: string): string {
  if (topic === DEFAULT_ROOM) return DEFAULT_ROOM;
  if (!topic.startsWith("room:")) {
    throw new ChatError("not_found", `unknown topic "${topic}": use room:<name> or chat`);
  }
  return parseRoomName(topic.slice("room:".length));
}

/** The reply to a push: phx_reply with status ok or error, on the push's topic and refs. */
export function reply(
  to: PhoenixMessage,
  status: "ok" | "error",
  response: unknown,
): PhoenixMessage {
  return {
    join_ref: to.join_ref,
    ref: to.ref,
    topic: to.topic,
    event: PHOENIX_EVENTS.reply,
    payload: { status, response },
  };
}

/** An error reply carrying our stable code, so every transport reports failures alike. */
export function errorReply(to: PhoenixMessage, error: ChatError): PhoenixMessage {
  const response: Record<string, unknown> = { reason: error.message, code: error.code };
  if (error.retryable) response.retryable = true;
  return reply(to, "error", response);
}

/** A server-initiated event (broadcast) on a topic. */
export function broadcast(
  topic: string,
  event: string,
  payload: unknown,
  join_ref: string | null = null,
): PhoenixMessage {
  return { join_ref, ref: null, topic, event, payload };
}

/**
 * A `publish` broadcast of a stored message. The message's JSON, encoded once for all
 * subscribers, is spliced in as is; only the topic and join_ref are encoded per channel.
 */
export function encodePublish(
  vsn: Vsn,
  topic: string,
  joinRef: string | null,
  messageJson: string,
): string {
  return encodeBroadcast(vsn, topic, PUBLISH_EVENT, joinRef, messageJson);
}

/** A broadcast whose payload is JSON already made (shared by many sockets), spliced in as is. */
export function encodeBroadcast(
  vsn: Vsn,
  topic: string,
  event: string,
  joinRef: string | null,
  payloadJson: string,
): string {
  const t = JSON.stringify(topic);
  const j = JSON.stringify(joinRef);
  const e = JSON.stringify(event);
  return vsn === "2.0.0"
    ? `[${j},null,${t},${e},${payloadJson}]`
    : `{"join_ref":${j},"ref":null,"topic":${t},"event":${e},"payload":${payloadJson}}`;
}

/** The optional resume point of a phx_join. */
export function parseLastSeq(payload: unknown): number | null {
  const raw = (payload as { last_seq?: unknown } | null)?.last_seq;
  if (raw === undefined || raw === null) return null;
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return raw;
  throw new ChatError("bad_request", "last_seq must be a non-negative integer");
}

/** Phoenix's answer to a push on a topic the socket has not joined. */
export function notJoined(topic: string): ChatError {
  return new ChatError("not_joined", `unmatched topic "${topic}": join it first`);
}

export function asChatError(error: unknown): ChatError {
  return error instanceof ChatError
    ? error
    : new ChatError("internal", "internal error", { cause: error });
}
