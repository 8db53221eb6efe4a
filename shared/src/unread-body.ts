import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import { env } from "./config.ts";

/** Settings of a proxy that may answer before a request's body is all in. */
export const unreadBodySettings = {
  /** After such an answer, the rest of the body is read and dropped for at most this long. */
  DISCARD_BODY_TIMEOUT_MS: env.int(30_000, 0),
};

export type UnreadBodyLimits = Record<keyof typeof unreadBodySettings, number>;

/**
 * Keeps a keep-alive connection usable when its response goes out before the request's
 * body is all read (a node's 413, or an upstream that stopped reading): once the response
 * is sent, the rest of the body is read and dropped, as Node's own server and HAProxy do.
 * Left unread, it would sit in front of the connection's next request, which would hang.
 * A body still coming after DISCARD_BODY_TIMEOUT_MS (nginx's lingering_time is 30 s) gets
 * the connection cut. There is no bound in bytes: closing sooner races the client's reuse of
 * the connection, and closing with bytes unread resets it, which can lose the answer.
 */
export function discardBodyLeftAfterAnswer(
  req: IncomingMessage,
  res: ServerResponse,
  limits: UnreadBodyLimits,
): void {
  if (req.complete) return; // a GET, or a body already in: the usual case, nothing to watch
  res.once("finish", () => {
    if (req.complete || req.destroyed) return;
    req.unpipe(); // whatever read it (a proxied request) gets no more of it
    const timer = setTimeout(() => req.socket.destroy(), limits.DISCARD_BODY_TIMEOUT_MS);
    const stop = () => clearTimeout(timer);
    req.once("end", stop).once("close", stop).resume();
  });
}

/**
 * A proxied request whose upstream answered before it had the whole body: the upstream may
 * never read the rest (a node's 413 does not), and will close the connection soon, so the
 * connection is closed here once the answer is relayed, instead of being kept alive for
 * another request that would sit behind the unread bytes and be reset with them.
 */
export function closeUpstreamAnsweredEarly(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: ClientRequest,
): void {
  if (req.complete && !hasBody(req)) return; // a GET: nothing to answer early
  upstream.once("response", () => {
    if (req.complete && upstream.writableFinished) return; // it had the whole body
    res.once("finish", () => upstream.destroy());
  });
}

const hasBody = (req: IncomingMessage) =>
  Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
