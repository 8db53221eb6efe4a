import { randomBytes } from "node:crypto";
import type { User } from "@chat/shared";
import type { Redis } from "ioredis";
import type { Vsn } from "../phoenix/serializer.ts";

/** Who a session is, fixed when it is created. */
export interface SessionInfo {
  vsn: Vsn;
  user: User;
  address: string;
}

/**
 * A session's delivery state. Every poll answer that carries frames gets a new `version`,
 * and the token it returns names it; phoenix.js sends back the token of the last answer it
 * processed. A poll naming `version - 1` means the last answer was lost (a node died, a
 * proxy retried): it is rebuilt from the older cursors, its replies resent. Nothing is lost
 * and nothing is doubled, whoever retries.
 */
export interface SessionRecord {
  info: SessionInfo;
  version: number;
  /** The replies in answer `version`, resent if that answer turns out lost. */
  resend: string[];
}

/** A topic the session joined. */
export interface JoinedTopic {
  room: string;
  joinRef: string | null;
  presenceRef?: string;
  /** The seq the client is known to have at join time. */
  start: number;
  /** The last seq handed out, per answer version (the current and the previous one). */
  cursors: Record<string, number>;
  /** The presence state sent, per answer version; presence_state goes out when it changes. */
  presenceSent: Record<string, string>;
}

/** Session tokens carry a prefix, so they never mix with a user token in the `token` param. */
export const SESSION_PREFIX = "lp.";
const key = (sid: string, part = "") => `chat:lp:${sid}${part}`;

export const sessionToken = (sid: string, version: number) => `${SESSION_PREFIX}${sid}.${version}`;

export function parseSessionToken(token: string): { sid: string; version: number } | undefined {
  const match = /^lp\.([A-Za-z0-9_-]{16,64})\.(\d{1,15})$/.exec(token);
  return match?.[1] && match[2] ? { sid: match[1], version: Number(match[2]) } : undefined;
}

/**
 * Phoenix LongPoll sessions, kept in Redis so that any node can serve any poll or post of
 * any session (no sticky sessions). Every key expires when the client stops polling.
 */
export class LongPollSessions {
  readonly #redis: Redis;
  readonly #ttlMs: number;

  constructor(redis: Redis, ttlMs: number) {
    this.#redis = redis;
    this.#ttlMs = ttlMs;
  }

  /** Presence entries of a session are owned by this name; it lives as long as the session. */
  static owner(sid: string): string {
    return `lp:${sid}`;
  }

  static wakeChannel(sid: string): string {
    return key(sid, ":wake");
  }

  /** A new session; returns its first token. */
  async create(info: SessionInfo): Promise<string> {
    const sid = randomBytes(18).toString("base64url");
    await this.save(sid, { info, version: 0, resend: [] });
    return sessionToken(sid, 0);
  }

  async save(sid: string, record: SessionRecord): Promise<void> {
    await this.#redis.set(key(sid), JSON.stringify(record), "PX", this.#ttlMs);
  }

  /** The session, with its lifetime renewed; null when unknown or expired. */
  async touch(sid: string): Promise<SessionRecord | null> {
    const results = await this.#redis
      .multi()
      .get(key(sid))
      .pexpire(key(sid), this.#ttlMs)
      .pexpire(key(sid, ":topics"), this.#ttlMs)
      .pexpire(key(sid, ":out"), this.#ttlMs)
      .exec();
    const raw = results?.[0]?.[1];
    return typeof raw === "string" ? (JSON.parse(raw) as SessionRecord) : null;
  }

  async topics(sid: string): Promise<Map<string, JoinedTopic>> {
    const raw = await this.#redis.hgetall(key(sid, ":topics"));
    return new Map(
      Object.entries(raw).map(([topic, value]) => [topic, JSON.parse(value) as JoinedTopic]),
    );
  }

  async setTopic(sid: string, topic: string, joined: JoinedTopic): Promise<void> {
    await this.#redis
      .multi()
      .hset(key(sid, ":topics"), topic, JSON.stringify(joined))
      .pexpire(key(sid, ":topics"), this.#ttlMs)
      .exec();
  }

  async removeTopic(sid: string, topic: string): Promise<void> {
    await this.#redis.hdel(key(sid, ":topics"), topic);
  }

  /** Frames for the session's next poll (replies, closes), in order. */
  async enqueue(sid: string, frames: string[]): Promise<void> {
    if (frames.length === 0) return;
    await this.#redis
      .multi()
      .rpush(key(sid, ":out"), ...frames)
      .pexpire(key(sid, ":out"), this.#ttlMs)
      .exec();
  }

  async dequeueAll(sid: string): Promise<string[]> {
    const results = await this.#redis
      .multi()
      .lrange(key(sid, ":out"), 0, -1)
      .del(key(sid, ":out"))
      .exec();
    const frames = results?.[0]?.[1];
    return Array.isArray(frames) ? (frames as string[]) : [];
  }

  /** One collector per session at a time, so cursors never hand a message out twice. */
  async lock(sid: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.set(key(sid, ":lock"), "1", "PX", ttlMs, "NX")) === "OK";
  }

  async unlock(sid: string): Promise<void> {
    await this.#redis.del(key(sid, ":lock"));
  }
}
