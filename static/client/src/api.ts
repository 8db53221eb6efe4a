import type { Message } from "@chat/shared";

/** The HTTP API, same origin (the edge passes it through to the gateway). */
export interface Session {
  token: string;
  user: { id: string; name: string };
}

const authHeaders = (token?: string): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {};

async function json<T>(response: Response): Promise<T> {
  const body = (await response.json()) as T & { error?: { message: string } };
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body;
}

export async function createSession(name: string): Promise<Session> {
  return json(await fetch("/api/session", { method: "POST", body: JSON.stringify({ name }) }));
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
    headers: authHeaders(token),
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

/** Sends over HTTP, retrying with the same client id until the server acknowledges. */
export async function send(
  room: string,
  body: string,
  clientId: string,
  token?: string,
): Promise<Message> {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(`/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders(token) },
        body: JSON.stringify({ body, client_id: clientId }),
      });
      if (response.status < 500) return await json<Message>(response);
    } catch (error) {
      if (attempt >= 10) throw error;
    }
    if (attempt >= 10) throw new Error("the server did not take the message; try again");
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 200 * 2 ** attempt)));
  }
}
