import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ChatError } from "@chat/shared";
import type { GatewayConfig } from "../config.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { destroySelf } from "../proxy/destroy-self.ts";

/**
 * Refused connections waiting for their first request, at most: past this, new connections
 * over a limit are cut without an answer, so a flood cannot spend the worker's files.
 */
const MAX_REFUSALS_IN_FLIGHT = 256;
/** A refused connection that sends no request within this long is closed. */
const REFUSAL_GRACE_MS = 2000;

/**
 * Connection admission for one worker: at most MAX_CONNECTIONS admitted client connections,
 * and a token bucket of MAX_NEW_CONNECTIONS_PER_IP new connections a second per address.
 * A refused connection is answered, not cut: its first request or upgrade gets a JSON
 * 503 `overloaded` or 429 `rate_limited` with Retry-After, so clients can tell why.
 */
export function createAdmission(config: GatewayConfig, metrics: GatewayMetrics) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const forgetIdle = setInterval(() => buckets.clear(), 60_000).unref();
  const refusals = new WeakMap<Socket, ChatError>();
  let admitted = 0;
  let refusing = 0;
  for (const reason of ["limit", "rate"]) metrics.refusedConnections.inc({ reason }, 0); // 0, not no data

  function takeToken(address: string): boolean {
    const now = Date.now();
    const rate = config.MAX_NEW_CONNECTIONS_PER_IP;
    const bucket = buckets.get(address) ?? { tokens: rate, at: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    buckets.set(address, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  function admittedClosed(): void {
    admitted--;
    metrics.clientConnections.dec();
  }

  function refuse(socket: Socket, error: ChatError, reason: "limit" | "rate"): void {
    metrics.refusedConnections.inc({ reason });
    if (refusing >= MAX_REFUSALS_IN_FLIGHT) {
      socket.destroy();
      return;
    }
    refusing++;
    refusals.set(socket, error);
    const grace = setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS);
    socket.once("close", () => {
      refusing--;
      clearTimeout(grace);
    });
  }

  return {
    /** The server's `connection` listener. */
    admit(socket: Socket): void {
      socket.on("error", destroySelf);
      if (admitted >= config.MAX_CONNECTIONS) {
        refuse(socket, OVERLOADED(config.MAX_CONNECTIONS), "limit");
        return;
      }
      if (!takeToken(socket.remoteAddress ?? "unknown")) {
        refuse(socket, RATE_LIMITED(config.MAX_NEW_CONNECTIONS_PER_IP), "rate");
        return;
      }
      admitted++;
      metrics.clientConnections.inc();
      socket.on("close", admittedClosed); // "close" comes once; `once` would wrap it per socket
    },
    /** Why this connection was refused, or undefined when it was admitted. */
    refusal: (socket: Duplex): ChatError | undefined => refusals.get(socket as Socket),
    close: () => clearInterval(forgetIdle),
  };
}

const OVERLOADED = (limit: number) =>
  new ChatError("overloaded", `this gateway worker holds its limit of ${limit} connections`, {
    retryable: true,
    retryAfter: 1,
  });

const RATE_LIMITED = (perSecond: number) =>
  new ChatError(
    "rate_limited",
    `more than ${perSecond} new connections a second from this address`,
    { retryable: true, retryAfter: 1 },
  );
