import { z } from "zod";
import { readJsonObject } from "../http/body.ts";
import type { App, NodeServices } from "../http/context.ts";
import { parseOr400 } from "../messages/input.ts";

/** `POST /api/session { name }` → `{ token, user }`: guest mode, any node can verify the token. */
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
}
