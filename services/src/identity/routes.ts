import { z } from "zod";
import { readJsonObject } from "../http/body.ts";
import type { App, NodeServices } from "../http/context.ts";
import { parseOr400 } from "../messages/input.ts";
import { authenticate } from "./auth.ts";

/**
 * `POST /api/session { name }` → `{ token, user }`: guest mode, any node can verify the token.
 * `GET /api/session` → `{ user }` for the caller's token, or 401: how a client learns that
 * the token it kept has expired (or the secret changed) before a socket refuses it.
 */
export function sessionRoutes(app: App, { tokens, config }: NodeServices): void {
  const sessionBody = z.object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(config.MAX_NAME_CHARS)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
      .regex(/^[^\u0000-\u001f\u007f]+$/, "must not contain control characters"),
  });
  app.post("/api/session", async (c) => {
    const { name } = parseOr400(sessionBody, await readJsonObject(c));
    return c.json(await tokens.issueGuest(name), 201);
  });
  app.get("/api/session", authenticate(tokens, config.REQUIRE_TOKEN), (c) =>
    c.json({ user: c.var.user }),
  );
}
