import type { Context } from "hono";
import { readJsonObject } from "../http/body.ts";
import { clientAddress } from "../http/client-address.ts";
import type { App, AppEnv, NodeServices } from "../http/context.ts";
import { historyQuerySchema, parseOr400, parseSendInput } from "../messages/input.ts";
import { parseRoomName } from "../rooms/room-name.ts";

/**
 * The JSON message API: send, history (= short poll) and long poll on one URL.
 *   POST /api/rooms/:room/messages { body, client_id }   201 new, 200 the original on a resend
 *   GET  /api/rooms/:room/messages?after=&limit=[&wait=]
 */
export function messageRoutes(app: App, services: NodeServices): void {
  app.post("/api/rooms/:room/messages", async (c) => {
    const room = parseRoomName(c.req.param("room"));
    const body = await readJsonObject(c);
    // An Idempotency-Key header serves as the client id for clients that prefer headers.
    return send(c, services, room, {
      body: body.body,
      clientId: body.client_id ?? c.req.header("idempotency-key"),
    });
  });

  app.get("/api/rooms/:room/messages", async (c) =>
    poll(c, services, parseRoomName(c.req.param("room")), c.req.query()),
  );
}

export async function send(
  c: Context<AppEnv>,
  { chat, config }: NodeServices,
  room: string,
  raw: { body: unknown; clientId: unknown; bodyField?: string },
): Promise<Response> {
  const sender = { user: c.get("user"), address: clientAddress(c) };
  const { message, created } = await chat.send(room, sender, parseSendInput(raw, config));
  return c.json(message, created ? 201 : 200);
}

/** A short poll when `wait` is 0, a long poll otherwise; drain or a client hang-up ends it early. */
export async function poll(
  c: Context<AppEnv>,
  { chat, config, drainer }: NodeServices,
  room: string,
  query: Record<string, string>,
): Promise<Response> {
  const { after, before, limit, wait } = parseOr400(historyQuerySchema(config), query);
  if (before !== undefined)
    return c.json({ messages: await chat.historyBefore(room, before, limit) });
  if (wait === 0) return c.json({ messages: await chat.history(room, after, limit) });
  let endEarly!: () => void;
  const ended = new Promise<void>((resolve) => {
    endEarly = resolve;
  });
  const untrack = drainer.track("longpoll", endEarly);
  c.req.raw.signal.addEventListener("abort", endEarly, { once: true });
  try {
    return c.json({ messages: await chat.poll(room, after, limit, wait * 1000, ended) });
  } finally {
    untrack();
  }
}
