import { ChatError } from "@chat/shared";
import { z } from "zod";
import type { NodeConfig } from "../config.ts";

/** The identifying parts of a send, as every transport hands them over. */
export interface SendInput {
  body: string;
  clientId: string | null;
}

const CLIENT_ID = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21-\x7e]+$/, "must be 1-128 printable ASCII characters without spaces");

/**
 * Validates a send: the body's size in bytes, no NUL (Postgres text cannot hold it), a sane id.
 * Errors name the text's field as the client's protocol calls it (`message` in Action Cable).
 */
export function parseSendInput(
  raw: { body: unknown; clientId: unknown; bodyField?: string },
  config: NodeConfig,
): SendInput {
  const { body, bodyField = "body" } = raw;
  if (typeof body !== "string" || body.trim() === "") {
    throw new ChatError("bad_request", `${bodyField} must be a non-empty string`);
  }
  if (body.includes("\u0000"))
    throw new ChatError("bad_request", `${bodyField} must not contain NUL characters`);
  const bytes = Buffer.byteLength(body, "utf8");
  if (bytes > config.MAX_MESSAGE_BYTES) {
    throw new ChatError(
      "payload_too_large",
      `${bodyField} is ${bytes} bytes; the limit is ${config.MAX_MESSAGE_BYTES} (MAX_MESSAGE_BYTES)`,
    );
  }
  if (raw.clientId === undefined || raw.clientId === null) return { body, clientId: null };
  const clientId = CLIENT_ID.safeParse(raw.clientId);
  if (!clientId.success) {
    throw new ChatError(
      "bad_request",
      `client_id: ${clientId.error.issues[0]?.message ?? "is invalid"}`,
    );
  }
  return { body, clientId: clientId.data };
}

const WHOLE_NUMBER = { error: "must be a whole number" };
const count = (max: number) => z.coerce.number(WHOLE_NUMBER).int(WHOLE_NUMBER).min(0).max(max);

/** A page size from a query: 1 to `max`, `fallback` (never above `max`) when absent. */
export const pageLimit = (max: number, fallback: number) =>
  count(max).min(1).default(Math.min(fallback, max));

/** Query of history, short poll and long poll: `after`, `limit`, `wait`. */
export function historyQuerySchema(config: NodeConfig) {
  return z.object({
    after: count(Number.MAX_SAFE_INTEGER).default(0),
    /** Scroll-back: the `limit` messages before this seq instead of after `after`. */
    before: count(Number.MAX_SAFE_INTEGER).min(1).optional(),
    limit: pageLimit(config.HISTORY_MAX_LIMIT, config.HISTORY_DEFAULT_LIMIT),
    wait: z.coerce
      .number({ error: "must be a number of seconds" })
      .min(0)
      .max(config.LONGPOLL_MAX_WAIT_S)
      .default(0),
  });
}

/** Parses with a zod schema; a failure is a 400 naming each bad field and its first broken rule. */
export function parseOr400<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const firstPerField = new Map<string, string>();
  for (const issue of result.error.issues) {
    const field = issue.path.join(".") || "value";
    if (!firstPerField.has(field)) firstPerField.set(field, `${field}: ${issue.message}`);
  }
  throw new ChatError("bad_request", [...firstPerField.values()].join("; "));
}
