import { ChatError, CLOSE, DEFAULT_ROOM } from "@chat/shared";
import { z } from "zod";
import type { FrameEncoding, Subscription } from "../delivery/subscription.ts";
import type { App, NodeServices } from "../http/context.ts";
import { parseSendInput } from "../messages/input.ts";
import type { SocketConnection, SocketProtocol } from "../sockets/connection.ts";
import { serveSocket } from "../sockets/serve-socket.ts";
import { asChatError } from "./phoenix/serializer.ts";

/** The thesis socket sends each message's JSON as it is. */
const AS_IS: FrameEncoding = { key: "thesis", encode: (json) => json };
const AFTER = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * `/chat/socket`: the thesis's plain WebSocket prototype on the default room. Out: each
 * message as JSON. In: `{ "body" | "message", "client_id" }`, or plain text as the body (the
 * thesis client sent raw text); answered with `{ type: "ack", seq, id, client_id }` or
 * `{ type: "error", error: { code, message } }`. `?after=SEQ` resumes.
 */
export function thesisSocketRoutes(app: App, services: NodeServices): void {
  serveSocket(app, services, {
    path: "/chat/socket",
    transport: "thesis-websocket",
    onBadToken: "refuse-upgrade",
    open: (connection, query) => new ThesisSocket(connection, services, query.after),
  });
}

class ThesisSocket implements SocketProtocol {
  readonly #connection: SocketConnection;
  readonly #services: NodeServices;
  #subscription: Promise<Subscription | undefined>;
  #inOrder: Promise<void> = Promise.resolve();

  /** `afterParam` (the `after` query param) resumes after that seq; without it the socket joins from now. */
  constructor(
    connection: SocketConnection,
    services: NodeServices,
    afterParam: string | undefined,
  ) {
    this.#connection = connection;
    this.#services = services;
    const after = afterParam === undefined ? null : (AFTER.safeParse(afterParam).data ?? null);
    this.#subscription = services.chat
      .subscribe(DEFAULT_ROOM, {
        after,
        to: { deliver: (delivery) => connection.send(delivery.frame(AS_IS)) },
        paceReplay: () => connection.whenWritable(),
      })
      .catch((error: unknown) => {
        this.#error(asChatError(error));
        connection.close(CLOSE.goingAway, "subscribe_failed");
        return undefined;
      });
  }

  onText(text: string): Promise<void> {
    this.#inOrder = this.#inOrder.then(() => this.#speak(text));
    return this.#inOrder;
  }

  onBinary(): void {
    this.#error(new ChatError("bad_request", "binary frames are not supported; send text"));
  }

  onFlood(): void {
    const limit = this.#services.config.SOCKET_FRAMES_PER_SECOND;
    this.#error(
      new ChatError(
        "rate_limited",
        `more than ${limit} frames per second (SOCKET_FRAMES_PER_SECOND)`,
      ),
    );
  }

  onDrain(): void {
    this.#connection.send(JSON.stringify({ type: "reconnect", reason: "draining" }));
    this.#connection.close(CLOSE.goingAway, "drain");
  }

  onClose(): void {
    void this.#subscription.then((subscription) => subscription?.close());
  }

  async #speak(text: string): Promise<void> {
    try {
      const input = parseSendInput(bodyOf(text), this.#services.config);
      const sender = { user: this.#connection.user, address: this.#connection.address };
      const { message } = await this.#services.chat.send(DEFAULT_ROOM, sender, input);
      // The sender gets its message like everyone else; the ack names it, not repeats it.
      const { seq, id, client_id } = message;
      this.#connection.send(JSON.stringify({ type: "ack", seq, id, client_id }));
    } catch (error) {
      this.#error(asChatError(error));
    }
  }

  #error(error: ChatError): void {
    this.#services.metrics.socketErrors.inc({ protocol: "thesis-websocket", reason: error.code });
    this.#connection.send(
      JSON.stringify({ type: "error", error: { code: error.code, message: error.message } }),
    );
  }
}

/** JSON `{ body | message, client_id }`, or the whole frame as the body when it is not a JSON object. */
function bodyOf(text: string): { body: unknown; clientId: unknown; bodyField: string } {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      const fields = value as Record<string, unknown>;
      const bodyField =
        fields.body === undefined && fields.message !== undefined ? "message" : "body";
      return { body: fields[bodyField], clientId: fields.client_id, bodyField };
    }
  } catch {
    // not JSON: the thesis client's raw text
  }
  return { body: text, clientId: undefined, bodyField: "body" };
}
