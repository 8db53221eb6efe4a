import { ChatError } from "@chat/shared";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "./context.ts";

/**
 * Refuses bodies over `maxBytes` with a 413 `payload_too_large`. A body of declared length
 * is judged by its header alone, straight from Node's request: Hono's bodyLimit reads
 * `req.body`, which makes @hono/node-server build a Web Request and stream per request.
 * Only chunked bodies (no length up front) are counted as they stream, by bodyLimit.
 */
export function limitRequestBody(maxBytes: number): MiddlewareHandler<AppEnv> {
  const tooLarge = (): never => {
    throw new ChatError(
      "payload_too_large",
      `the request body is over ${maxBytes} bytes (MAX_REQUEST_BYTES)`,
    );
  };
  const counted = bodyLimit({ maxSize: maxBytes, onError: tooLarge });
  return async (c, next) => {
    const headers = c.env.incoming?.headers;
    if (!headers || headers["transfer-encoding"] !== undefined) return counted(c, next);
    // HTTP/1.1: without Content-Length or Transfer-Encoding a request has no body.
    if (Number(headers["content-length"] ?? 0) > maxBytes) tooLarge();
    await next();
  };
}

/** The request body as a JSON object; malformed JSON is a 400 `invalid_json`. */
export async function readJsonObject(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const type = c.req.header("content-type")?.split(";")[0]?.trim();
    const sentAs = type && type !== "application/json" ? ` (it came as ${type})` : "";
    throw new ChatError("invalid_json", `the request body is not valid JSON${sentAs}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ChatError("bad_request", "the request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** JSON, or a form (the thesis's HTML form posts `message=...`), as one flat object. */
export async function readJsonOrForm(c: Context): Promise<Record<string, unknown>> {
  const type = c.req.header("content-type") ?? "";
  if (
    type.startsWith("application/x-www-form-urlencoded") ||
    type.startsWith("multipart/form-data")
  ) {
    return (await c.req.parseBody()) as Record<string, unknown>;
  }
  return readJsonObject(c);
}
