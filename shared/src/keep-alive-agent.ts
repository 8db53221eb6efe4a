import { Agent, type AgentOptions } from "node:http";

/**
 * How long an idle upstream connection is kept when the server names no limit. Setting any
 * limit is what makes Node's agent heed a server's `Keep-Alive: timeout=N` and drop an idle
 * connection a second before the server would (without one it keeps it forever, and a request
 * sent as the server closes it fails).
 */
const IDLE_CONNECTION_MS = 60_000;

/** An HTTP agent that reuses connections, and lets them go before the server closes them. */
export function keepAliveAgent(options: AgentOptions = {}): Agent {
  return new Agent({ keepAlive: true, timeout: IDLE_CONNECTION_MS, ...options });
}
