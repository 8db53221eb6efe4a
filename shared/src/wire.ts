/**
 * The wire contract every client relies on (see ../shared/ARCHITECTURE.md, "The contract
 * clients rely on"). One module so the shapes and codes are defined once for every service.
 */

/** A stored chat message as every transport sends it. */
export interface Message {
  room: string;
  /** The room's gapless, strictly increasing sequence number, assigned by Postgres. */
  seq: number;
  /** Server-made unique id. */
  id: string;
  /** The sender's idempotency key, or null. */
  client_id: string | null;
  /** The sender's display name. */
  user: string;
  body: string;
  /** ISO-8601 time of storage. */
  at: string;
}

export interface User {
  id: string;
  name: string;
}

/** Room names as URLs, topics and Redis channels carry them. */
export const ROOM_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** The room the thesis routes (/chat/...) and the bare Phoenix topic `chat` map onto. */
export const DEFAULT_ROOM = "chat";

/** Stable error codes with the HTTP status each one answers with. */
export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  invalid_room: 400,
  unauthorized: 401,
  invalid_token: 401,
  forbidden_origin: 403,
  not_found: 404,
  method_not_allowed: 405,
  room_exists: 409,
  payload_too_large: 413,
  unknown_event: 400,
  not_joined: 400,
  too_many_topics: 400,
  rate_limited: 429,
  internal: 500,
  bad_gateway: 502,
  gateway_timeout: 504,
  draining: 503,
  unavailable: 503,
  overloaded: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** The JSON body of every HTTP error. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; retryable?: boolean };
  /** Only on Phoenix's LongPoll path, where phoenix.js reads the status from the body. */
  status?: 500;
}

/** Phoenix's LongPoll endpoint (phoenix.js derives it from the socket's `/socket`). */
export const PHOENIX_LONGPOLL_PATH = "/socket/longpoll";

/** The SSE event name for a new message; the Phoenix broadcast event has the same name. */
export const PUBLISH_EVENT = "publish";
