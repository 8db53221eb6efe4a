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

/** "after: must be at most 1000 (HISTORY_MAX_LIMIT)": a bound names the setting behind it. */
const atMost = (max: number, setting?: string, unit = "") =>
  `must be at most ${max}${unit}${setting ? ` (${setting})` : ""}`;

/** An empty query value counts as absent, as an HTML form sends an unfilled field. */
const blankIsAbsent = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === "" ? undefined : value), schema.optional());

/** A whole number from a query string in decimal digits: "1e3" and "-1" are refused. */
const count = (min: number, max: number, setting?: string) =>
  blankIsAbsent(
    z
      .string()
      .regex(/^\d+$/, "must be a whole number")
      .transform(Number)
      .pipe(z.number().min(min, `must be at least ${min}`).max(max, atMost(max, setting))),
  );

/** A page size from a query: 1 to `max`, `fallback` (never above `max`) when absent. */
export const pageLimit = (max: number, fallback: number, setting: string) =>
  count(1, max, setting).transform((limit) => limit ?? Math.min(fallback, max));

/** Seconds from a query, decimals allowed: the wait of a long poll. */
const seconds = (max: number, setting: string) =>
  blankIsAbsent(
    z
      .string()
      .regex(/^\d+(\.\d+)?$/, "must be a number of seconds")
      .transform(Number)
      .pipe(z.number().max(max, atMost(max, setting, " seconds"))),
  );

const historyQuerySchemas = new WeakMap<NodeConfig, ReturnType<typeof buildHistoryQuery>>();

/** Built once per config, not per request: every poller asks once a second. */
export function historyQuerySchema(config: NodeConfig) {
  const built = historyQuerySchemas.get(config);
  if (built) return built;
  const schema = buildHistoryQuery(config);
  historyQuerySchemas.set(config, schema);
  return schema;
}

/**
 * Query of history, short poll and long poll: `after`, `limit`, `wait`; or `before` and
 * `limit` for a page of scroll-back, which neither starts after a seq nor waits.
 */
function buildHistoryQuery(config: NodeConfig) {
  return z
    .object({
      after: count(0, Number.MAX_SAFE_INTEGER),
      before: count(1, Number.MAX_SAFE_INTEGER),
      limit: pageLimit(config.HISTORY_MAX_LIMIT, config.HISTORY_DEFAULT_LIMIT, "HISTORY_MAX_LIMIT"),
      wait: seconds(config.LONGPOLL_MAX_WAIT_S, "LONGPOLL_MAX_WAIT_S"),
    })
    .refine((query) => query.before === undefined || query.after === undefined, {
      message: "cannot be used with after (after pages forward, before pages back)",
      path: ["before"],
    })
    .refine((query) => query.before === undefined || query.wait === undefined, {
      message: "applies to after (a poll), not to before (a page back)",
      path: ["wait"],
    })
    .transform(({ after = 0, wait = 0, ...rest }) => ({ after, wait, ...rest }));
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
