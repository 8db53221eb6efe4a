/**
 * Every WebSocket close code the servers use, in one place. 4xxx codes mirror the HTTP
 * status of the same meaning (4401 ~ 401), so logs and clients read them the same way.
 */
export const CLOSE = {
  /** The server is going away (drain): reconnect, to another node. */
  goingAway: { code: 1001, reason: "server draining, reconnect" },
  /** A frame over MAX_FRAME_BYTES (the ws library closes with this itself). */
  tooBig: { code: 1009, reason: "frame too large" },
  /** A bad or missing token, for protocols that refuse after the upgrade (Action Cable). */
  unauthorized: { code: 4401, reason: "unauthorized" },
  /** The protocol's heartbeat stopped. */
  heartbeatTimeout: { code: 4408, reason: "heartbeat timeout" },
  /** Too many frames per second from this connection, repeatedly. */
  rateLimited: { code: 4429, reason: "rate limited" },
  /** The client does not read fast enough; it resumes from its last seq on reconnect. */
  slowConsumer: { code: 4503, reason: "slow consumer: send buffer full, resume from last seq" },
} as const;
