import { ChatError } from "@chat/shared";
import type { NodeServices } from "../../http/context.ts";
import { parseSendInput } from "../../messages/input.ts";
import {
  asChatError,
  broadcast,
  decode,
  encode,
  errorReply,
  notJoined,
  PHOENIX_EVENTS,
  PHOENIX_TOPIC,
  type PhoenixMessage,
  parseLastSeq,
  reply,
  roomOfTopic,
} from "../phoenix/serializer.ts";
import { type JoinedTopic, LongPollSessions, type SessionInfo } from "./sessions.ts";

/**
 * The frames a LongPoll client POSTs, handled like a Phoenix socket handles them, but with
 * the session's state in Redis: joins record a cursor, pushes are answered by frames that
 * the session's next poll (on any node) picks up.
 */
export class LongPollFrames {
  readonly #services: NodeServices;
  readonly #sessions: LongPollSessions;

  constructor(services: NodeServices, sessions: LongPollSessions) {
    this.#services = services;
    this.#sessions = sessions;
  }

  /** Handles one POSTed frame; returns the encoded frames to queue for the client. */
  async handle(sid: string, session: SessionInfo, text: string): Promise<string[]> {
    let message: PhoenixMessage;
    try {
      message = decode(text, session.vsn);
    } catch (error) {
      return [this.#fail(session, broadcast(PHOENIX_TOPIC, PHOENIX_EVENTS.reply, null), error)];
    }
    try {
      const replies = await this.#dispatch(sid, session, message);
      return replies.map((m) => encode(m, session.vsn));
    } catch (error) {
      return [this.#fail(session, message, error)];
    }
  }

  async #dispatch(
    sid: string,
    session: SessionInfo,
    message: PhoenixMessage,
  ): Promise<PhoenixMessage[]> {
    if (message.topic === PHOENIX_TOPIC && message.event === PHOENIX_EVENTS.heartbeat)
      return [reply(message, "ok", {})];
    const topics = await this.#sessions.topics(sid);
    const joined = topics.get(message.topic);
    switch (message.event) {
      case PHOENIX_EVENTS.join:
        return this.#join(sid, session, message, topics);
      case PHOENIX_EVENTS.leave:
        if (!joined) throw notJoined(message.topic);
        await this.#leave(sid, message.topic, joined);
        return [
          reply(message, "ok", {}),
          broadcast(message.topic, PHOENIX_EVENTS.close, {}, joined.joinRef),
        ];
      case "speak": {
        if (!joined) throw notJoined(message.topic);
        const payload = (message.payload ?? {}) as Record<string, unknown>;
        const input = parseSendInput(
          { body: payload.body, clientId: payload.client_id },
          this.#services.config,
        );
        const sender = { user: session.user, address: session.address };
        const { message: stored } = await this.#services.chat.send(joined.room, sender, input);
        return [reply(message, "ok", stored)];
      }
      default:
        if (!joined) throw notJoined(message.topic);
        throw new ChatError(
          "unknown_event",
          `unknown event "${message.event}"; this channel handles speak`,
        );
    }
  }

  async #join(
    sid: string,
    session: SessionInfo,
    message: PhoenixMessage,
    topics: Map<string, JoinedTopic>,
  ) {
    const { config, store, presence } = this.#services;
    const room = roomOfTopic(message.topic);
    const lastSeq = parseLastSeq(message.payload);
    const frames: PhoenixMessage[] = [];
    const previous = topics.get(message.topic);
    if (previous) {
      await this.#leave(sid, message.topic, previous);
      frames.push(broadcast(message.topic, PHOENIX_EVENTS.close, {}, previous.joinRef));
    } else if (topics.size >= config.MAX_TOPICS_PER_SOCKET) {
      throw new ChatError(
        "too_many_topics",
        `at most ${config.MAX_TOPICS_PER_SOCKET} topics per socket (MAX_TOPICS_PER_SOCKET)`,
      );
    }
    await store.ensureRoom(room).catch(() => undefined); // joins create rooms; the primary may be down
    const start = lastSeq ?? (await store.heads([room])).get(room) ?? 0;
    const owner = LongPollSessions.owner(sid);
    await presence.keepAlive(owner, config.LONGPOLL_SESSION_TTL_MS).catch(() => undefined);
    const presenceRef = await presence.track(
      room,
      session.user.id,
      { name: session.user.name, online_at: Date.now() },
      owner,
    );
    await this.#sessions.setTopic(sid, message.topic, {
      room,
      joinRef: message.join_ref,
      presenceRef: presenceRef ?? undefined,
      start,
      cursors: {},
      presenceSent: {},
    });
    frames.push(reply(message, "ok", { node: config.NODE_ID, last_seq: start }));
    return frames;
  }

  async #leave(sid: string, topic: string, joined: JoinedTopic): Promise<void> {
    await this.#sessions.removeTopic(sid, topic);
    if (joined.presenceRef) await this.#services.presence.untrack(joined.room, joined.presenceRef);
  }

  #fail(session: SessionInfo, to: PhoenixMessage, error: unknown): string {
    const chatError = asChatError(error);
    this.#services.metrics.socketErrors.inc({
      protocol: "phoenix-longpoll",
      reason: chatError.code,
    });
    if (chatError.code === "internal")
      this.#services.log.error({ err: error }, "longpoll frame failed");
    return encode(errorReply(to, chatError), session.vsn);
  }
}
