import { ChatError, CLOSE } from "@chat/shared";
import {
  type Delivery,
  type FrameEncoding,
  frameEncoding,
  type Recipient,
  type SharedPayload,
  type Subscription,
} from "../../delivery/subscription.ts";
import type { App, NodeServices } from "../../http/context.ts";
import { parseSendInput } from "../../messages/input.ts";
import type { PresenceListener } from "../../presence/presence.ts";
import type { SocketConnection, SocketProtocol } from "../../sockets/connection.ts";
import { LeanMap } from "../../sockets/lean-map.ts";
import { serveSocket } from "../../sockets/serve-socket.ts";
import { Sweep } from "../../sockets/sweep.ts";
import {
  asChatError,
  broadcast,
  decode,
  encode,
  encodeBroadcast,
  encodePublish,
  errorReply,
  notJoined,
  PHOENIX_EVENTS,
  PHOENIX_TOPIC,
  type PhoenixMessage,
  parseLastSeq,
  parseVsn,
  reply,
  roomOfTopic,
  type Vsn,
} from "./serializer.ts";

/** A client that floods this many times in a row is closed rather than answered. */
const FLOODS_BEFORE_CLOSE = 20;

/** `/socket/websocket`: Phoenix Channels over WebSocket, as phoenix.js speaks it. */
export function phoenixSocketRoutes(app: App, services: NodeServices): void {
  const heartbeats = heartbeatSweep(services.config.PHOENIX_HEARTBEAT_TIMEOUT_MS);
  serveSocket(app, services, {
    path: "/socket/websocket",
    transport: "phoenix-websocket",
    onBadToken: "refuse-upgrade", // Phoenix refuses a failed connect/3 with 403 on the upgrade
    open: (connection, query) =>
      new PhoenixSocket(connection, services, parseVsn(query.vsn), heartbeats),
  });
}

/**
 * Closes sockets silent for `timeoutMs`. It looks every quarter of the timeout, so a
 * socket goes between 1 and 1.25 timeouts after its last frame.
 */
function heartbeatSweep(timeoutMs: number): Sweep<PhoenixSocket> {
  return new Sweep(timeoutMs / 4, (sockets) => {
    const silentSince = Date.now() - timeoutMs;
    for (const socket of sockets) socket.closeIfSilentSince(silentSince);
  });
}

/**
 * A joined topic: its join_ref, its room subscription and presence. It hears the room's
 * presence diffs itself, as a method rather than a closure per socket, and sends them as
 * Phoenix does, as broadcasts (join_ref null): one frame for every socket on the topic.
 */
class Channel implements PresenceListener, Recipient {
  readonly topic: string;
  readonly room: string;
  readonly joinRef: string | null;
  /** Its broadcasts: join_ref null, as Phoenix's own, so one frame serves every subscriber.
   * Keys name the event before the topic, which comes last: no two topics can share one. */
  readonly #messages: FrameEncoding;
  readonly #presenceDiffs: FrameEncoding;
  readonly #connection: SocketConnection;
  subscription: Subscription | undefined = undefined;
  /** The presence ref: a promise while tracking, then the ref itself (a settled promise
   * kept per channel would cost its ~50 bytes for the channel's life). */
  presenceRef: Promise<string | null> | string | null | undefined = undefined;

  constructor(connection: SocketConnection, vsn: Vsn, message: PhoenixMessage, room: string) {
    const { topic } = message;
    this.#connection = connection;
    this.topic = topic;
    this.room = room;
    this.joinRef = message.join_ref;
    this.#messages = frameEncoding(`phx${vsn}:publish:${topic}`, (json) =>
      encodePublish(vsn, topic, null, json),
    );
    this.#presenceDiffs = frameEncoding(`phx${vsn}:presence_diff:${topic}`, (json) =>
      encodeBroadcast(vsn, topic, "presence_diff", null, json),
    );
  }

  deliver(delivery: Delivery): void {
    this.#connection.send(delivery.frame(this.#messages));
  }

  presenceChanged(diff: SharedPayload): void {
    this.#connection.send(diff.frame(this.#presenceDiffs));
  }
}

/**
 * One Phoenix socket: many topics, heartbeats on `phoenix`, pushes answered with phx_reply.
 * Malformed frames and unknown events get error replies; nothing a client sends crashes
 * the node or touches another socket.
 */
class PhoenixSocket implements SocketProtocol {
  readonly #connection: SocketConnection;
  readonly #services: NodeServices;
  readonly #vsn: Vsn;
  readonly #channels = new LeanMap<Channel>();
  readonly #heartbeats: Sweep<PhoenixSocket>;
  /** When the client last sent a frame (Date.now()). */
  #heardAt = Date.now();
  #floods = 0;
  /** The frame being dispatched and those queued behind it; undefined when idle. */
  #inOrder: Promise<void> | undefined;

  constructor(
    connection: SocketConnection,
    services: NodeServices,
    vsn: Vsn,
    heartbeats: Sweep<PhoenixSocket>,
  ) {
    this.#connection = connection;
    this.#services = services;
    this.#vsn = vsn;
    this.#heartbeats = heartbeats;
    heartbeats.add(this);
  }

  closeIfSilentSince(time: number): void {
    if (this.#heardAt < time) this.#connection.close(CLOSE.heartbeatTimeout, "heartbeat_timeout");
  }

  /** Heartbeats are answered at once; other frames run one after another, like a Phoenix
   * channel process, so a client's pushes are stored in the order it sent them. */
  onText(text: string): Promise<void> | undefined {
    this.#heardAt = Date.now();
    this.#floods = 0;
    let message: PhoenixMessage;
    try {
      message = decode(text, this.#vsn);
    } catch (error) {
      this.#fail(broadcast(PHOENIX_TOPIC, PHOENIX_EVENTS.reply, null), asChatError(error));
      return;
    }
    if (message.topic === PHOENIX_TOPIC && message.event === PHOENIX_EVENTS.heartbeat) {
      this.#send(reply(message, "ok", {}));
      return;
    }
    const dispatch = () =>
      this.#dispatch(message).catch((error: unknown) => this.#fail(message, asChatError(error)));
    const queued = this.#inOrder ? this.#inOrder.then(dispatch) : dispatch();
    this.#inOrder = queued;
    // Let go of the chain once idle: a settled promise per socket is memory for nothing.
    return queued.then(() => {
      if (this.#inOrder === queued) this.#inOrder = undefined;
    });
  }

  onBinary(): void {
    this.#heardAt = Date.now();
    const error = new ChatError("bad_request", "binary frames are not supported; send JSON text");
    this.#fail(broadcast(PHOENIX_TOPIC, PHOENIX_EVENTS.reply, null), error);
  }

  onFlood(text: string): void {
    if (++this.#floods >= FLOODS_BEFORE_CLOSE) {
      this.#connection.close(CLOSE.rateLimited, "flood");
      return;
    }
    let to = broadcast(PHOENIX_TOPIC, PHOENIX_EVENTS.reply, null);
    try {
      to = decode(text, this.#vsn);
    } catch {
      // undecodable as well as too fast: answer on the phoenix topic
    }
    const limit = this.#services.config.SOCKET_FRAMES_PER_SECOND;
    this.#fail(
      to,
      new ChatError(
        "rate_limited",
        `more than ${limit} frames per second (SOCKET_FRAMES_PER_SECOND)`,
      ),
    );
  }

  /** phoenix.js reconnects after any close that it did not ask for; 1001 sends it elsewhere. */
  onDrain(): void {
    this.#connection.close(CLOSE.goingAway, "drain");
  }

  onClose(): void {
    this.#heartbeats.delete(this);
    for (const channel of this.#channels.values()) this.#leave(channel);
    this.#channels.clear();
  }

  async #dispatch(message: PhoenixMessage): Promise<void> {
    if (this.#connection.closed) return;
    switch (message.event) {
      case PHOENIX_EVENTS.join:
        return this.#join(message);
      case PHOENIX_EVENTS.leave:
        return this.#handleLeave(message);
      case "speak":
        return this.#speak(message);
      default:
        if (!this.#channels.has(message.topic)) throw notJoined(message.topic);
        throw new ChatError(
          "unknown_event",
          `unknown event "${message.event}"; this channel handles speak`,
        );
    }
  }

  async #join(message: PhoenixMessage): Promise<void> {
    const room = roomOfTopic(message.topic);
    const lastSeq = parseLastSeq(message.payload);
    const previous = this.#channels.get(message.topic);
    if (previous) {
      // Phoenix closes the old channel when a topic is joined again on the same socket.
      this.#leave(previous);
      this.#send(broadcast(previous.topic, PHOENIX_EVENTS.close, {}, previous.joinRef));
      this.#channels.delete(message.topic);
    }
    const max = this.#services.config.MAX_TOPICS_PER_SOCKET;
    if (this.#channels.size >= max) {
      throw new ChatError(
        "too_many_topics",
        `at most ${max} topics per socket (MAX_TOPICS_PER_SOCKET)`,
      );
    }
    const channel = new Channel(this.#connection, this.#vsn, message, room);
    this.#channels.set(message.topic, channel);
    let replied = false;
    try {
      channel.subscription = await this.#services.chat.subscribe(room, {
        after: lastSeq,
        to: channel,
        paceReplay: () => this.#connection.whenWritable(),
        // The reply goes once the subscription is in place, then the replay streams at the
        // pace the client reads it; `last_seq` lets a client that joined "from now" resume.
        onStart: (cursor) => {
          replied = true;
          this.#send(
            reply(message, "ok", { node: this.#services.config.NODE_ID, last_seq: cursor }),
          );
        },
      });
    } catch (error) {
      this.#channels.delete(message.topic);
      if (!replied) throw error;
      // Phoenix's answer to a channel that failed after joining: phx_error, and the client rejoins.
      this.#services.log.warn({ err: error, room }, "channel subscription failed");
      this.#send(broadcast(message.topic, PHOENIX_EVENTS.error, {}, message.join_ref));
      return;
    }
    if (this.#channels.get(message.topic) !== channel || this.#connection.closed) {
      channel.subscription.close(); // left or closed while the replay ran
      return;
    }
    await this.#joinPresence(channel);
  }

  async #joinPresence(channel: Channel): Promise<void> {
    const { presence } = this.#services;
    const user = this.#connection.user;
    presence.listen(channel.room, channel);
    channel.presenceRef = presence.track(channel.room, user.id, {
      name: user.name,
      online_at: Date.now(),
    });
    channel.presenceRef = await channel.presenceRef;
    const state = await presence.list(channel.room);
    if (this.#channels.get(channel.topic) === channel) {
      this.#send(broadcast(channel.topic, "presence_state", state, channel.joinRef));
    }
  }

  #handleLeave(message: PhoenixMessage): void {
    const channel = this.#channels.get(message.topic);
    if (!channel) throw notJoined(message.topic);
    this.#channels.delete(message.topic);
    this.#leave(channel);
    this.#send(reply(message, "ok", {}));
    this.#send(broadcast(channel.topic, PHOENIX_EVENTS.close, {}, channel.joinRef));
  }

  #leave(channel: Channel): void {
    channel.subscription?.close();
    const { presence } = this.#services;
    presence.unlisten(channel.room, channel); // a no-op for a channel that never listened
    void Promise.resolve(channel.presenceRef).then((ref) => presence.untrack(channel.room, ref));
  }

  async #speak(message: PhoenixMessage): Promise<void> {
    const channel = this.#channels.get(message.topic);
    if (!channel) throw notJoined(message.topic);
    const payload = (message.payload ?? {}) as Record<string, unknown>;
    const input = parseSendInput(
      { body: payload.body, clientId: payload.client_id },
      this.#services.config,
    );
    const sender = { user: this.#connection.user, address: this.#connection.address };
    const { message: stored } = await this.#services.chat.send(channel.room, sender, input);
    this.#send(reply(message, "ok", stored));
  }

  #fail(to: PhoenixMessage, error: ChatError): void {
    this.#services.metrics.socketErrors.inc({ protocol: "phoenix", reason: error.code });
    if (error.code === "internal")
      this.#services.log.error({ err: error.cause ?? error }, "phoenix push failed");
    this.#send(errorReply(to, error));
  }

  #send(message: PhoenixMessage): void {
    this.#connection.send(encode(message, this.#vsn));
  }
}
