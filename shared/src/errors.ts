import { ERROR_STATUS, type ErrorBody, type ErrorCode, PHOENIX_LONGPOLL_PATH } from "./wire.ts";

/**
 * The one error type of the project: it knows its stable code, its HTTP status and whether
 * a client may retry. HTTP boundaries turn it into an ErrorBody; socket protocols into
 * their native error replies with the same code.
 */
export class ChatError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Seconds a client should wait before retrying (sent as Retry-After). */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retryable?: boolean; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "ChatError";
    this.code = code;
    this.retryable = options.retryable ?? ERROR_STATUS[code] >= 500;
    this.retryAfter = options.retryAfter;
  }

  get status(): (typeof ERROR_STATUS)[ErrorCode] {
    return ERROR_STATUS[this.code];
  }

  /**
   * The JSON body for a request to `path`. On Phoenix's LongPoll path it also says
   * `status: 500`, the body's field phoenix.js reads: a body without a status it knows makes
   * it throw and stop polling for good, where 500 makes it reconnect after a pause.
   */
  toBody(path?: string): ErrorBody {
    const error: ErrorBody["error"] = { code: this.code, message: this.message };
    if (this.retryable) error.retryable = true;
    return isPhoenixLongPoll(path) ? { status: 500, error } : { error };
  }
}

/** `path` may carry a query: the request's URL as Node hands it over. */
function isPhoenixLongPoll(path: string | undefined): boolean {
  if (path === undefined || !path.startsWith(PHOENIX_LONGPOLL_PATH)) return false;
  const rest = path.charAt(PHOENIX_LONGPOLL_PATH.length);
  return rest === "" || rest === "?" || rest === "/";
}
