import type { ErrorBody, Message, User } from "@chat/shared";

/** The HTTP API, same origin (the edge passes it through to the gateway). */
export interface Session {
  token: string;
  user: User;
}

/** A refusal from the server, with its stable code (`invalid_token`, `payload_too_large`…). */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, message: string, status: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const authHeaders = (token?: string): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {};

async function json<T>(response: Response): Promise<T> {
  const body = (await response.json().catch(() => ({}))) as T & Partial<ErrorBody>;
  if (!response.ok) {
    const { code = "http_error", message = `HTTP ${response.status}` } = body.error ?? {};
    throw new ApiError(code, message, response.status);
  }
  return body;
}

export async function createSession(name: string): Promise<Session> {
  return json(
    await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    }),
  );
}

/** Whether the server still takes this token: false once it expired or the secret changed. */
export async function sessionIsValid(token: string): Promise<boolean> {
  try {
    await json(await fetch("/api/session", { headers: authHeaders(token) }));
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
}

/** A page of room names after `after` (by name); `next` is the next page's `after`, or null. */
export async function listRooms(after = ""): Promise<{ rooms: string[]; next: string | null }> {
  const params = new URLSearchParams({ after });
  const { rooms, next } = await json<{ rooms: { name: string }[]; next: string | null }>(
    await fetch(`/api/rooms?${params}`),
  );
  return { rooms: rooms.map((room) => room.name), next };
}

export async function createRoom(name: string, token?: string): Promise<void> {
  const response = await fetch("/api/rooms", {
    method: "POST",
    headers: { "content-type": "application/json", ...authHeaders(token) },
    body: JSON.stringify({ name }),
  });
  if (response.status !== 409) await json(response);
}

/** Messages after `after`, or the `limit` just before `before` (scroll-back); ascending. */
export async function history(
  room: string,
  query: { after?: number; before?: number; limit?: number },
): Promise<{ messages: Message[]; node: string | null }> {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  const response = await fetch(`/api/rooms/${room}/messages?${params}`);
  const { messages } = await json<{ messages: Message[] }>(response);
  return { messages, node: response.headers.get("x-chat-node") };
}

/** A status worth asking again for: the server failed or shed load, or asked to be given time. */
export function isRetryable(status: number): boolean {
  return status >= 500 || status === 429;
}

const SEND_ATTEMPTS = 10;

/**
 * Sends over HTTP. A lost connection, a 5xx or a 429 is tried again with the same client id
 * (the server stores it once), after `Retry-After` when given; any other refusal is final.
 */
export async function send(
  room: string,
  body: string,
  clientId: string,
  token?: string,
): Promise<Message> {
  for (let attempt = 1; ; attempt++) {
    let response: Response | undefined;
    try {
      response = await fetch(`/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders(token) },
        body: JSON.stringify({ body, client_id: clientId }),
      });
    } catch (error) {
      if (attempt >= SEND_ATTEMPTS) throw error;
    }
    const retryable = !response || isRetryable(response.status);
    if (response && (!retryable || attempt >= SEND_ATTEMPTS)) return json<Message>(response);
    await pause(retryDelayMs(response, attempt));
  }
}

function retryDelayMs(response: Response | undefined, attempt: number): number {
  const retryAfter = Number(response?.headers.get("retry-after"));
  if (retryAfter > 0) return retryAfter * 1000;
  return backoffMs(attempt + 1, 100, 2000);
}

/** How long to wait before asking again, attempt 1, 2, …: doubling from `firstMs` to `maxMs`. */
export const backoffMs = (attempt: number, firstMs: number, maxMs = 5000) =>
  Math.min(maxMs, firstMs * 2 ** (attempt - 1));

export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
