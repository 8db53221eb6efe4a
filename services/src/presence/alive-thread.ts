/**
 * The worker thread that keeps a node's presence `alive` key fresh. It runs apart from the
 * node's event loop, so a loop that lags for seconds under load does not make the node look
 * dead to its peers (and its people leave and rejoin in every room). It stops refreshing only
 * when the main thread has sent no pulse for `stallLimitMs`: a wedged node does lose its people.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Redis } from "ioredis";

export interface AliveThreadOptions {
  redisUrl: string;
  key: string;
  intervalMs: number;
  ttlMs: number;
  stallLimitMs: number;
  connectionName: string;
}

/** What the thread tells the main thread after each beat it tries. */
export type AliveReport =
  | { kind: "beat"; wasAlive: boolean }
  | { kind: "stalled"; silentMs: number }
  | { kind: "failed"; message: string };

/** The main thread's proof that its event loop still turns. */
export const PULSE = "pulse";

if (parentPort) runAliveThread(parentPort, workerData as AliveThreadOptions);

function runAliveThread(port: NonNullable<typeof parentPort>, options: AliveThreadOptions): void {
  const redis = new Redis(options.redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
    connectionName: options.connectionName,
  });
  redis.on("error", () => {}); // reported per beat below; ioredis reconnects by itself
  let lastPulse = Date.now();
  port.on("message", (message: unknown) => {
    if (message === PULSE) lastPulse = Date.now();
  });
  const report = (value: AliveReport) => port.postMessage(value);

  const beat = async () => {
    const silentMs = Date.now() - lastPulse;
    if (silentMs > options.stallLimitMs) {
      report({ kind: "stalled", silentMs });
    } else {
      try {
        const previous = await redis.set(options.key, "1", "PX", options.ttlMs, "GET");
        report({ kind: "beat", wasAlive: previous !== null });
      } catch (error) {
        report({ kind: "failed", message: (error as Error).message });
      }
    }
    setTimeout(beat, options.intervalMs);
  };
  redis.once("ready", () => void beat());
}
