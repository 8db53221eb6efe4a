import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { ChatError } from "./errors.ts";

/**
 * Answers on a raw socket (an upgrade, which has no ServerResponse) with the JSON body every
 * HTTP error has, then closes it. `status` overrides the code's own (a proxy's 502).
 */
export function answerRaw(socket: Duplex, error: ChatError, status: number = error.status): void {
  const body = JSON.stringify(error.toBody());
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...(error.retryAfter === undefined ? [] : [`Retry-After: ${error.retryAfter}`]),
    "Connection: close",
  ];
  endWith(socket, `${head.join("\r\n")}\r\n\r\n${body}`);
}

/**
 * A `clientError` listener for a public HTTP server: a request Node's parser refused gets
 * 431 (headers over the server's maxHeaderSize), 408 (head not in within headersTimeout) or
 * 400, never a silent hang-up; the socket is freed even if the client never closes its side.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  const status =
    error.code === "HPE_HEADER_OVERFLOW"
      ? 431
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT" || error.code === "HPE_HEADER_TIMEOUT"
        ? 408
        : 400;
  endWith(
    socket,
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
  );
}

/** Writes a whole response and closes, freeing the socket even if the client never closes its side. */
function endWith(socket: Duplex, response: string): void {
  if (socket.writable) socket.end(response, () => socket.destroy());
  else socket.destroy();
}
