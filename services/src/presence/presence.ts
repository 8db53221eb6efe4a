import { randomUUID } from "node:crypto";
import type { Logger } from "@chat/shared";
import type { Redis } from "ioredis";
import type { NodeConfig } from "../config.ts";
import type { RedisBus } from "../delivery/redis-bus.ts";
import type { NodeMetrics } from "../metrics.ts";

/** One tracked presence, as Phoenix Presence lists it: extra fields plus its unique phx_ref. */
export type PresenceMeta = Record<string, unknown> & { phx_ref: string };
/** `{ [key]: { metas: [...] } }`: the shape of phoenix.js's presence_state and diff halves. */
export type PresenceState = Record<string, { metas: PresenceMeta[] }>;
export interface PresenceDiff {
  joins: PresenceState;
  leaves: PresenceState;
}

interface Entry {
  key: string;
  meta: PresenceMeta;
  /** Whose liveness keeps the entry: `node:<id>` for sockets, a session id for LongPoll. */
  owner: string;
}

const entriesKey = (room: string) => `chat:presence:${room}`;
const aliveKey = (owner: string) => `chat:alive:${owner}`;

/**
 * Who is in each room, across nodes, in Phoenix Presence's format. Entries live in a Redis
 * hash per room; each names an owner whose `alive` key its node (or LongPoll session) keeps
 * refreshing. Nodes reap the entries of owners whose key expired, so a killed node's users
 * leave within PRESENCE_DEAD_AFTER_MS. Diffs travel on the room's Redis channel.
 */
export class Presence {
  readonly #redis: Redis;
  readonly #bus: RedisBus;
  readonly #owner: string;
  readonly #config: NodeConfig;
  readonly #log: Logger;
  readonly #metrics: NodeMetrics;
  readonly #listeners = new Map<string, Set<(diff: PresenceDiff) => void>>();
  /** Entries this node tracked, so a drain can remove them at once. */
  readonly #mine = new Map<string, { room: string; entry: Entry }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: {
    bus: RedisBus;
    nodeId: string;
    config: NodeConfig;
    log: Logger;
    metrics: NodeMetrics;
  }) {
    this.#bus = deps.bus;
    this.#redis = deps.bus.commands;
    this.#owner = `node:${deps.nodeId}`;
    this.#config = deps.config;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
  }

  start(): void {
    const beat = async () => {
      await this.#guard("presence-heartbeat", async () => {
        const wasAlive = await this.#redis.set(
          aliveKey(this.#owner),
          "1",
          "PX",
          this.#config.PRESENCE_DEAD_AFTER_MS,
          "GET",
        );
        // Our alive key gone means Redis lost its data (a restart) or we were presumed dead.
        if (wasAlive === null) await this.#retrackMine();
        await Promise.all([...this.#listeners.keys()].map((room) => this.#reap(room)));
      });
      this.#timer = setTimeout(beat, this.#config.PRESENCE_HEARTBEAT_MS);
    };
    void beat();
  }

  /** Proves `owner` alive for `ttlMs` more. */
  async keepAlive(owner: string, ttlMs: number): Promise<void> {
    await this.#redis.set(aliveKey(owner), "1", "PX", ttlMs);
  }

  /** Adds a presence; returns its phx_ref for untrack. Owned by this node unless `owner` is given. */
  async track(
    room: string,
    key: string,
    meta: Record<string, unknown>,
    owner = this.#owner,
  ): Promise<string> {
    const entry: Entry = { key, meta: { ...meta, phx_ref: randomUUID() }, owner };
    await this.#guard("presence-track", async () => {
      await this.#redis.hset(entriesKey(room), entry.meta.phx_ref, JSON.stringify(entry));
      if (owner === this.#owner) this.#mine.set(entry.meta.phx_ref, { room, entry });
      await this.#bus.publishPresence(room, { joins: group([entry]), leaves: {} });
    });
    return entry.meta.phx_ref;
  }

  async untrack(room: string, ref: string): Promise<void> {
    this.#mine.delete(ref);
    await this.#guard("presence-untrack", () => this.#remove(room, [ref]));
  }

  /** The room's presence right now, without entries whose owner is gone. */
  async list(room: string): Promise<PresenceState> {
    const entries = await this.#guard("presence-list", () => this.#entries(room));
    if (!entries) return {};
    const alive = await this.#aliveOwners(entries);
    return group(entries.filter((e) => alive.has(e.owner)));
  }

  /** Calls `onDiff` with every change to the room's presence until the returned function is called. */
  listen(room: string, onDiff: (diff: PresenceDiff) => void): () => void {
    const listeners = this.#listeners.get(room) ?? new Set();
    listeners.add(onDiff);
    this.#listeners.set(room, listeners);
    return () => {
      listeners.delete(onDiff);
      if (listeners.size === 0) this.#listeners.delete(room);
    };
  }

  /** A diff arrived from Redis (this node's own ones included). */
  received(room: string, diff: unknown): void {
    for (const listener of this.#listeners.get(room) ?? []) listener(diff as PresenceDiff);
  }

  /** Removes this node's entries (drain) and stops heartbeating. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    const byRoom = new Map<string, string[]>();
    for (const [ref, { room }] of this.#mine) byRoom.set(room, [...(byRoom.get(room) ?? []), ref]);
    this.#mine.clear();
    await this.#guard("presence-stop", async () => {
      await Promise.all([...byRoom].map(([room, refs]) => this.#remove(room, refs)));
      await this.#redis.del(aliveKey(this.#owner));
    });
  }

  /** Puts this node's entries back after Redis lost them, announcing them as joins again. */
  async #retrackMine(): Promise<void> {
    for (const { room, entry } of this.#mine.values()) {
      await this.#redis.hset(entriesKey(room), entry.meta.phx_ref, JSON.stringify(entry));
      await this.#bus.publishPresence(room, { joins: group([entry]), leaves: {} });
    }
  }

  async #remove(room: string, refs: string[]): Promise<void> {
    const raw = await this.#redis.hmget(entriesKey(room), ...refs);
    const removed: Entry[] = [];
    for (const [i, value] of raw.entries()) {
      const ref = refs[i];
      // HDEL answers 1 on one node only, so each leave is announced once.
      if (value && ref && (await this.#redis.hdel(entriesKey(room), ref)) === 1)
        removed.push(JSON.parse(value) as Entry);
    }
    if (removed.length > 0)
      await this.#bus.publishPresence(room, { joins: {}, leaves: group(removed) });
  }

  async #reap(room: string): Promise<void> {
    const entries = await this.#entries(room);
    const alive = await this.#aliveOwners(entries);
    const dead = entries.filter((e) => !alive.has(e.owner)).map((e) => e.meta.phx_ref);
    if (dead.length > 0) await this.#remove(room, dead);
  }

  async #entries(room: string): Promise<Entry[]> {
    const raw = await this.#redis.hvals(entriesKey(room));
    return raw.map((value) => JSON.parse(value) as Entry);
  }

  async #aliveOwners(entries: Entry[]): Promise<Set<string>> {
    const owners = [...new Set(entries.map((e) => e.owner))];
    if (owners.length === 0) return new Set();
    const flags = await this.#redis.mget(...owners.map(aliveKey));
    return new Set(owners.filter((_, i) => flags[i] !== null));
  }

  /** Presence is best effort while Redis is away: chat goes on without it. */
  async #guard<T>(op: string, run: () => Promise<T>): Promise<T | undefined> {
    try {
      return await run();
    } catch (error) {
      this.#metrics.redisErrors.inc({ op });
      this.#log.debug({ err: error, op }, "presence operation failed");
      return undefined;
    }
  }
}

function group(entries: Entry[]): PresenceState {
  const state: PresenceState = {};
  for (const { key, meta } of entries) {
    const slot = state[key] ?? { metas: [] };
    slot.metas.push(meta);
    state[key] = slot;
  }
  return state;
}
