import { ChatError, PUBLISH_EVENT } from "@chat/shared";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import type { Delivery } from "../delivery/subscription.ts";
import type { App, AppEnv, NodeServices } from "../http/context.ts";
import { parseRoomName } from "../rooms/room-name.ts";

/** How long EventSource clients wait before reconnecting (the SSE `retry:` field). */
const RECONNECT_MS = 1000;
const LAST_EVENT_ID = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** `GET /api/rooms/:room/stream`: SSE events `publish` with `id:` = seq; Last-Event-ID resumes. */
export function sseRoutes(app: App, services: NodeServices): void {
  app.get("/api/rooms/:room/stream", (c) =>
    stream(c, services, parseRoomName(c.req.param("room"))),
  );
}

/** Resume point: Last-Event-ID (what EventSource sends on reconnect) beats `?after=`. */
function resumeAfter(c: Context): number | null {
  const raw = c.req.header("last-event-id") ?? c.req.query("after");
  if (raw === undefined || raw === "") return null;
  const parsed = LAST_EVENT_ID.safeParse(raw);
  if (!parsed.success)
    throw new ChatError("bad_request", "Last-Event-ID / after must be a non-negative integer seq");
  return parsed.data;
}

/**
 * Subscribes before the response starts, so a failure is still a JSON error. Messages queue
 * between the feed and the socket; a client that lets the queue pass SSE_MAX_QUEUED_MESSAGES
 * is cut off with a reconnect hint and resumes from its Last-Event-ID.
 */
export async function stream(
  c: Context<AppEnv>,
  { chat, config, drainer }: NodeServices,
  room: string,
) {
  const queue: Delivery[] = [];
  let wake: (() => void) | undefined;
  let endReason: "draining" | "slow_consumer" | "closed" | undefined;
  const end = (reason: NonNullable<typeof endReason>) => {
    endReason ??= reason;
    wake?.();
  };
  const subscription = await chat.subscribe(room, {
    after: resumeAfter(c),
    deliver: (delivery) => {
      queue.push(delivery);
      if (queue.length > config.SSE_MAX_QUEUED_MESSAGES) end("slow_consumer");
      wake?.();
    },
  });
  const untrack = drainer.track("sse", () => end("draining"));
  c.header("X-Accel-Buffering", "no");

  return streamSSE(c, async (sse) => {
    sse.onAbort(() => end("closed"));
    const heartbeat = setInterval(() => void sse.write(": ping\n\n"), config.SSE_HEARTBEAT_MS);
    try {
      await sse.write(`retry: ${RECONNECT_MS}\n\n`);
      await sse.writeSSE({ event: "ready", data: JSON.stringify({ node: config.NODE_ID }) });
      while (!endReason) {
        const delivery = queue.shift();
        if (delivery) {
          await sse.writeSSE({
            event: PUBLISH_EVENT,
            id: String(delivery.message.seq),
            data: delivery.json,
          });
        } else {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      }
      if (endReason !== "closed") {
        await sse.writeSSE({ event: "reconnect", data: JSON.stringify({ reason: endReason }) });
      }
    } finally {
      clearInterval(heartbeat);
      subscription.close();
      untrack();
      await sse.close();
    }
  });
}
