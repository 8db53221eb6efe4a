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
 * Messages queue between the room feed and the socket; a client that lets the queue pass
 * SSE_MAX_QUEUED_MESSAGES is cut off with a reconnect hint and resumes from its
 * Last-Event-ID. A backlog is replayed at the pace the client reads it. The subscription
 * starts inside the stream (a replay needs the writer running); if it fails, the client
 * gets a `failure` event and reconnects.
 */
export async function stream(
  c: Context<AppEnv>,
  { chat, config, drainer }: NodeServices,
  room: string,
) {
  const after = resumeAfter(c);
  const queue: Delivery[] = [];
  let wake: (() => void) | undefined;
  let drained: (() => void) | undefined;
  let endReason: "draining" | "slow_consumer" | "closed" | "error" | undefined;
  const end = (reason: NonNullable<typeof endReason>) => {
    endReason ??= reason;
    wake?.();
    drained?.();
  };
  const untrack = drainer.track("sse", () => end("draining"));
  c.header("X-Accel-Buffering", "no");

  return streamSSE(c, async (sse) => {
    sse.onAbort(() => end("closed"));
    const heartbeat = setInterval(() => void sse.write(": ping\n\n"), config.SSE_HEARTBEAT_MS);
    let started: (cursor: number) => void = () => {};
    const subscribed = new Promise<number>((resolve) => {
      started = resolve;
    });
    const subscribing = chat.subscribe(room, {
      onStart: (cursor) => started(cursor),
      after,
      to: {
        deliver: (delivery) => {
          queue.push(delivery);
          if (queue.length > config.SSE_MAX_QUEUED_MESSAGES) end("slow_consumer");
          wake?.();
        },
      },
      paceReplay: () =>
        queue.length < config.SSE_MAX_QUEUED_MESSAGES / 2 || endReason
          ? undefined
          : new Promise<void>((resolve) => {
              drained = resolve;
            }),
    });
    subscribing.catch(async (error: unknown) => {
      end("error");
      const failure =
        error instanceof ChatError
          ? error
          : new ChatError("unavailable", "could not follow the room; retry");
      await sse
        .writeSSE({ event: "failure", data: JSON.stringify(failure.toBody()) })
        .catch(() => undefined);
    });
    try {
      await sse.write(`retry: ${RECONNECT_MS}\n\n`);
      // "ready" once the subscription is in place: nothing sent after it can be missed.
      const cursor = await Promise.race([subscribed, subscribing.then(noop, noop)]);
      if (cursor !== undefined)
        await sse.writeSSE({
          event: "ready",
          data: JSON.stringify({ node: config.NODE_ID, last_seq: cursor }),
        });
      while (!endReason) {
        const delivery = queue.shift();
        if (queue.length < config.SSE_MAX_QUEUED_MESSAGES / 4) drained?.();
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
      if (endReason === "draining" || endReason === "slow_consumer") {
        await sse.writeSSE({ event: "reconnect", data: JSON.stringify({ reason: endReason }) });
      }
    } finally {
      clearInterval(heartbeat);
      void subscribing.then(
        (subscription) => subscription.close(),
        () => undefined,
      );
      untrack();
      await sse.close();
    }
  });
}

const noop = () => undefined;
