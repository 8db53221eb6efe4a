import { ChatError, CLOSE, DEFAULT_ROOM } from "@chat/shared";
import {
  type FrameEncoding,
  frameEncoding,
  type Recipient,
  type Subscription,
} from "../../delivery/subscription.ts";
import type { App, NodeServices } from "../../http/context.ts";
import { parseSendInput } from "../../messages/input.ts";
import { parseRoomName } from "../../rooms/room-name.ts";
import type { SocketConnection, SocketProtocol } from "../../sockets/connection.ts";
import { LeanMap } from "../../sockets/lean-map.ts";
import { INVALID_TOKEN_USER, serveSocket } from "../../sockets/serve-socket.ts";
import { Sweep } from "../../sockets/sweep.ts";
import { asChatError } from "../phoenix/serializer.ts";

const CHANNEL = "ChatChannel";
const FLOODS_BEFORE_CLOSE = 20;

/** `/cable`: Action Cable's protocol (actioncable-v1-json), so `@rails/actioncable` works unchanged. */
export function actionCableRoutes(app: App, services: NodeServices): void {
  const pings = pingSweep(services.config.CABLE_PING_MS);
  serveSocket(app, services, {
    path: "/cable",
    transport: "actioncable",
    // Action Cable accepts the upgrade, then refuses with a disconnect frame.
    onBadToken: "accept-as-invalid",
    open: (connection) => new CableConnection(connection, services, pings),
  });
}

/** Pings every connection from one timer, as Rails does: one frame, built once per beat. */
function pingSweep(intervalMs: number): Sweep<CableConnection> {
  return new Sweep(intervalMs, (connections) => {
    const ping = Buffer.from(
      JSON.stringify({ type: "ping", message: Math.floor(Date.now() / 1000) }),
    );
    for (const connection of connections) connection.ping(ping);
  });
}

interface CableSubscription {
  room: string;
  /** The identifier exactly as the client sent it: frames echo it byte for byte. */
  identifierJson: string;
  /** Its broadcasts: `{ identifier, message: { message } }` with the message's JSON spliced in. */
  broadcast: FrameEncoding;
  subscription?: Subscription;
}

/**
 * One Action Cable connection: welcome, pings every CABLE_PING_MS, `ChatChannel`
 * subscriptions with `{ room, last_seq }`, the `speak` action, broadcasts
 * `{ identifier, message: { message } }`. Commands run in order, like Rails' worker pool
 * does per connection. Errors, which Action Cable has no frame for, are transmitted on the
 * subscription as `{ message: { error: { code, message, retryable?, client_id? } } }`.
 */
class CableConnection implements SocketProtocol {
  readonly #connection: SocketConnection;
  readonly #services: NodeServices;
  readonly #subscriptions = new LeanMap<CableSubscription>();
  readonly #pings: Sweep<CableConnection>;
  #inOrder: Promise<void> = Promise.resolve();
  #floods = 0;

  constructor(connection: SocketConnection, services: NodeServices, pings: Sweep<CableConnection>) {
    this.#connection = connection;
    this.#services = services;
    this.#pings = pings;
    if (connection.user === INVALID_TOKEN_USER) {
      this.#send({ type: "disconnect", reason: "unauthorized", reconnect: false });
      connection.close(CLOSE.unauthorized, "unauthorized");
      return;
    }
    pings.add(this);
    this.#send({ type: "welcome" });
  }

  ping(frame: Buffer): void {
    this.#connection.send(frame);
  }

  onText(text: string): Promise<void> {
    this.#floods = 0;
    this.#inOrder = this.#inOrder.then(() => this.#command(text));
    return this.#inOrder;
  }

  onBinary(): void {
    this.#error(
      undefined,
      new ChatError("bad_request", "binary frames are not supported; send JSON text"),
    );
  }

  onFlood(): void {
    if (++this.#floods >= FLOODS_BEFORE_CLOSE) this.#connection.close(CLOSE.rateLimited, "flood");
    else {
      const limit = this.#services.config.SOCKET_FRAMES_PER_SECOND;
      this.#error(
        undefined,
        new ChatError(
          "rate_limited",
          `more than ${limit} frames per second (SOCKET_FRAMES_PER_SECOND)`,
        ),
      );
    }
  }

  onDrain(): void {
    this.#send({ type: "disconnect", reason: "server_restart", reconnect: true });
    this.#connection.close(CLOSE.goingAway, "drain");
  }

  onClose(): void {
    this.#pings.delete(this);
    for (const entry of this.#subscriptions.values()) entry.subscription?.close();
    this.#subscriptions.clear();
  }

  async #command(text: string): Promise<void> {
    if (this.#connection.closed) return;
    let identifier: string | undefined;
    try {
      const frame = parseObject(text, "the frame");
      identifier = typeof frame.identifier === "string" ? frame.identifier : undefined;
      if (identifier === undefined)
        throw new ChatError("bad_request", "the command needs an identifier string");
      switch (frame.command) {
        case "subscribe":
          return await this.#subscribe(identifier);
        case "unsubscribe":
          this.#subscriptions.get(identifier)?.subscription?.close();
          this.#subscriptions.delete(identifier);
          return;
        case "message":
          return await this.#perform(identifier, frame.data);
        default:
          throw new ChatError("unknown_event", `unknown command ${JSON.stringify(frame.command)}`);
      }
    } catch (error) {
      this.#error(identifier, asChatError(error));
    }
  }

  async #subscribe(identifierJson: string): Promise<void> {
    if (this.#subscriptions.has(identifierJson)) return; // already subscribed: Rails ignores it too
    const params = parseSubscription(identifierJson);
    const max = this.#services.config.MAX_TOPICS_PER_SOCKET;
    if (!params || this.#subscriptions.size >= max) {
      this.#send({ identifier: identifierJson, type: "reject_subscription" });
      return;
    }
    const identifier = JSON.stringify(identifierJson);
    const entry: CableSubscription = {
      room: params.room,
      identifierJson,
      broadcast: frameEncoding(
        `cable:${identifierJson}`,
        (json) => `{"identifier":${identifier},"message":{"message":${json}}}`,
      ),
    };
    this.#subscriptions.set(identifierJson, entry);
    try {
      entry.subscription = await this.#services.chat.subscribe(params.room, {
        after: params.lastSeq,
        to: this.#broadcaster(entry),
        paceReplay: () => this.#connection.whenWritable(),
        // Confirmed once the subscription is in place, then the replay streams at the pace
        // the client reads it.
        onStart: () => this.#send({ identifier: identifierJson, type: "confirm_subscription" }),
      });
    } catch (error) {
      // Action Cable cannot un-confirm: reconnecting makes the client subscribe afresh.
      this.#subscriptions.delete(identifierJson);
      this.#services.log.warn({ err: error, room: params.room }, "cable subscription failed");
      this.#send({ type: "disconnect", reason: "server_restart", reconnect: true });
      this.#connection.close(CLOSE.goingAway, "subscribe_failed");
    }
  }

  async #perform(identifierJson: string, rawData: unknown): Promise<void> {
    const entry = this.#subscriptions.get(identifierJson);
    if (!entry) throw new ChatError("not_joined", "not subscribed with this identifier");
    const data = parseObject(typeof rawData === "string" ? rawData : "", "data");
    if (data.action !== "speak")
      throw new ChatError(
        "unknown_event",
        `unknown action ${JSON.stringify(data.action)}; ChatChannel handles speak`,
      );
    const input = parseSendInput(
      { body: data.message, clientId: data.client_id, bodyField: "message" },
      this.#services.config,
    );
    const sender = { user: this.#connection.user, address: this.#connection.address };
    // A failed send names its client id, so the client knows which message to send again.
    await this.#services.chat.send(entry.room, sender, input).catch((error: unknown) => {
      this.#error(identifierJson, asChatError(error), input.clientId);
    });
  }

  /** Made apart from #subscribe so that the subscription, which keeps it, keeps nothing
   * else of the command that subscribed. */
  #broadcaster(entry: CableSubscription): Recipient {
    const connection = this.#connection;
    return { deliver: (delivery) => connection.send(delivery.frame(entry.broadcast)) };
  }

  #error(identifier: string | undefined, error: ChatError, clientId: string | null = null): void {
    this.#services.metrics.socketErrors.inc({ protocol: "actioncable", reason: error.code });
    const body = { ...error.toBody().error, ...(clientId === null ? {} : { client_id: clientId }) };
    if (identifier !== undefined && this.#subscriptions.has(identifier))
      this.#send({ identifier, message: { error: body } });
    else this.#send({ type: "error", error: body });
  }

  #send(frame: object): void {
    this.#connection.send(JSON.stringify(frame));
  }
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChatError("invalid_json", `${what} is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ChatError("bad_request", `${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** `{ channel: "ChatChannel", room?, last_seq? }`, or undefined to reject the subscription. */
function parseSubscription(
  identifierJson: string,
): { room: string; lastSeq: number | null } | undefined {
  try {
    const params = parseObject(identifierJson, "the identifier");
    if (params.channel !== CHANNEL) return undefined;
    const room = parseRoomName(params.room ?? DEFAULT_ROOM);
    const lastSeq = params.last_seq;
    if (lastSeq === undefined || lastSeq === null) return { room, lastSeq: null };
    if (typeof lastSeq === "number" && Number.isSafeInteger(lastSeq) && lastSeq >= 0)
      return { room, lastSeq };
    return undefined;
  } catch {
    return undefined; // a malformed identifier is a rejected subscription, as in Rails
  }
}
