import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "./wire.ts";

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

  toBody(): ErrorBody {
    const error: ErrorBody["error"] = { code: this.code, message: this.message };
    if (this.retryable) error.retryable = true;
    return { error };
  }
}
