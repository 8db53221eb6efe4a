import { ChatError } from "@chat/shared";
import type { Context } from "hono";

/** The request body as a JSON object; malformed JSON is a 400 `invalid_json`. */
export async function readJsonObject(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChatError("invalid_json", "the request body is not valid JSON");
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
