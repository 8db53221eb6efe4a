import { ChatError, type Logger, type User } from "@chat/shared";
import type { Redis } from "ioredis";
import type { NodeMetrics } from "../metrics.ts";

/**
 * Per-user send limits shared by every node: a fixed window counter in Redis, one script
 * per send (INCR, and PEXPIRE when a window starts). While Redis is away each node counts
 * on its own, so the limit degrades to per node instead of disappearing.
 */
export class SendRateLimiter {
  readonly #redis: RedisWithCountSend;
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #local = new Map<string, { window: number; count: number }>();
  readonly #metrics: NodeMetrics;
  readonly #log: Logger;

  constructor(deps: {
    redis: Redis;
    limit: number;
    windowMs: number;
    metrics: NodeMetrics;
    log: Logger;
  }) {
    this.#redis = withCountSend(deps.redis);
    this.#limit = deps.limit;
    this.#windowMs = deps.windowMs;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
  }

  /** Counts one send for `user` (anonymous guests by address); over the limit is a 429. */
  async take(user: User, address: string): Promise<void> {
    const subject = user.id === "anonymous" ? `ip:${address}` : `user:${user.id}`;
    const window = Math.floor(Date.now() / this.#windowMs);
    const count = await this.#count(`chat:rate:${subject}:${window}`).catch((error: unknown) => {
      this.#metrics.redisErrors.inc({ op: "rate-limit" });
      this.#log.debug({ err: error }, "rate limit falls back to this node's count");
      return this.#countLocally(subject, window);
    });
    if (count > this.#limit) {
      this.#metrics.rateLimited.inc();
      const retryAfter = Math.ceil(((window + 1) * this.#windowMs - Date.now()) / 1000);
      throw new ChatError(
        "rate_limited",
        `more than ${this.#limit} messages in ${this.#windowMs / 1000} s (RATE_LIMIT_SENDS); retry in ${retryAfter} s`,
        { retryAfter },
      );
    }
  }

  async #count(key: string): Promise<number> {
    return Number(await this.#redis.chatCountSend(key, this.#windowMs * 2));
  }

  #countLocally(subject: string, window: number): number {
    const entry = this.#local.get(subject);
    if (entry?.window === window) return ++entry.count;
    if (this.#local.size > 100_000) this.#local.clear(); // old windows only; bounded memory
    this.#local.set(subject, { window, count: 1 });
    return 1;
  }
}

/** Counts a send in its window's key; the key outlives its window, then Redis drops it. */
const COUNT_SEND_LUA = `
local count = redis.call("INCR", KEYS[1])
if count == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return count`;

type RedisWithCountSend = Redis & {
  chatCountSend(key: string, expireMs: number): Promise<number>;
};

/** ioredis runs a defined command by EVALSHA, loading the script once when Redis lacks it. */
function withCountSend(redis: Redis): RedisWithCountSend {
  redis.defineCommand("chatCountSend", { numberOfKeys: 1, lua: COUNT_SEND_LUA });
  return redis as RedisWithCountSend;
}

/**
 * A token bucket for one connection's inbound frames: bursts are fine, a flood is not.
 * Local by nature (a connection lives on one node).
 */
export class FrameBucket {
  #tokens: number;
  #last = Date.now();
  readonly #perSecond: number;
  readonly #burst: number;

  constructor(perSecond: number, burst: number) {
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#tokens = burst;
  }

  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + ((now - this.#last) / 1000) * this.#perSecond,
    );
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
