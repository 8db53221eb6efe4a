import { ChatError, type Logger } from "@chat/shared";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";

/** The one error boundary: every failure leaves as `{ error: { code, message } }`. */
export function errorResponse(error: unknown, c: Context, log: Logger): Response {
  const chatError = toChatError(error);
  if (chatError.code === "internal") log.error({ err: error, path: c.req.path }, "unhandled error");
  if (chatError.retryAfter !== undefined) c.header("Retry-After", String(chatError.retryAfter));
  // Only a node shedding work it has not started says overloaded: the gateway tries another.
  if (chatError.code === "overloaded") c.header("X-Chat-Overloaded", "1");
  return c.json(chatError.toBody(), chatError.status);
}

function toChatError(error: unknown): ChatError {
  if (error instanceof ChatError) return error;
  if (error instanceof HTTPException && error.status === 413) {
    return new ChatError("payload_too_large", "the request body is too large (MAX_REQUEST_BYTES)");
  }
  if (error instanceof HTTPException && error.status < 500) {
    return new ChatError("bad_request", error.message || "bad request");
  }
  return new ChatError("internal", "internal error", { cause: error });
}

export function notFound(c: Context): Response {
  return c.json(
    new ChatError("not_found", `no route for ${c.req.method} ${c.req.path}`).toBody(),
    404,
  );
}
