import { DEFAULT_ROOM } from "@chat/shared";
import { readJsonOrForm } from "../http/body.ts";
import type { App, NodeServices } from "../http/context.ts";
import { poll, send } from "./http-messages.ts";
import { stream } from "./sse.ts";

/**
 * The thesis prototypes' routes, all on the default room:
 *   POST /chat/speak   form field `message` or JSON { message | body, client_id }
 *   GET  /chat/poll    long poll (?after=), held up to THESIS_POLL_WAIT_S
 *   GET  /chat/stream  SSE
 */
export function thesisRoutes(app: App, services: NodeServices): void {
  app.post("/chat/speak", async (c) => {
    const input = await readJsonOrForm(c);
    return send(c, services, DEFAULT_ROOM, {
      body: input.message ?? input.body,
      bodyField: input.body === undefined ? "message" : "body",
      clientId: input.client_id ?? c.req.header("idempotency-key"),
    });
  });

  app.get("/chat/poll", (c) =>
    poll(c, services, DEFAULT_ROOM, {
      wait: String(services.config.THESIS_POLL_WAIT_S),
      ...c.req.query(),
    }),
  );

  app.get("/chat/stream", (c) => stream(c, services, DEFAULT_ROOM));
}
