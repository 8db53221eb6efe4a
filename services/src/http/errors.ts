import { ChatError, type Logger } from "@chat/shared";
import type { Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { METHOD_NAME_ALL } from "hono/router";
import { TrieRouter } from "hono/router/trie-router";
import type { AppEnv } from "./context.ts";

/** The one error boundary: every failure leaves as `{ error: { code, message } }`. */
export function errorResponse(error: unknown, c: Context, log: Logger): Response {
  const chatError = toChatError(error);
  if (chatError.code === "internal") log.error({ err: error, path: c.req.path }, "unhandled error");
  if (chatError.retryAfter !== undefined) c.header("Retry-After", String(chatError.retryAfter));
  // Only a node shedding work it has not started says overloaded: the gateway tries another.
  if (chatError.code === "overloaded") c.header("X-Chat-Overloaded", "1");
  // A 401 names its scheme (RFC 9110 §11.6.1); a refused token says so as RFC 6750 §3 does.
  if (chatError.status === 401)
    c.header(
      "WWW-Authenticate",
      chatError.code === "invalid_token" ? 'Bearer error="invalid_token"' : "Bearer",
    );
  return c.json(chatError.toBody(c.req.path), chatError.status);
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

/**
 * What no route answers: `405` with `Allow` when the path has routes for other methods
 * (RFC 9110 §15.5.6), else `404`. Built once the app's routes are all registered.
 */
export function unrouted(app: Hono<AppEnv>): (c: Context) => Response {
  const router = new TrieRouter<string>();
  const methods = new Set<string>();
  for (const { method, path } of app.routes) {
    if (method === METHOD_NAME_ALL) continue; // middleware, not a route
    router.add(method, path, method);
    methods.add(method);
  }
  const allowedFor = (path: string) => {
    const allowed = [...methods].filter((method) => router.match(method, path)[0].length > 0);
    if (allowed.includes("GET")) allowed.push("HEAD"); // Hono answers HEAD with the GET route
    return allowed.sort();
  };
  return (c) => {
    const allowed = allowedFor(c.req.path);
    if (allowed.length === 0) {
      const error = new ChatError("not_found", `no route for ${c.req.method} ${c.req.path}`);
      return c.json(error.toBody(), error.status);
    }
    c.header("Allow", allowed.join(", "));
    const error = new ChatError(
      "method_not_allowed",
      `${c.req.path} takes ${allowed.join(", ")}, not ${c.req.method}`,
    );
    return c.json(error.toBody(), error.status);
  };
}
