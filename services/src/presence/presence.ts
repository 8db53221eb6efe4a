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
  /** Joins and leaves waiting to go out as one diff per room (PRESENCE_BATCH_MS). */
  readonly #pending = new Map<string, { joins: Entry[]; leaves: Entry[] }>();
  #flushTimer: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Set after the first successful heartbeat: a missing alive key later means Redis lost it. */
  #beaten = false;

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

  /** Starts heartbeating; resolves after the first beat, so entries tracked next are listed. */
  async start(): Promise<void> {
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
        if (wasAlive === null && this.#beaten) await this.#retrackMine();
        this.#beaten = true;
        await Promise.all([...this.#listeners.keys()].map((room) => this.#reap(room)));
      });
      this.#timer = setTimeout(beat, this.#config.PRESENCE_HEARTBEAT_MS);
    };
    // A first beat that fails would leave this node's users looking dead to its peers.
    await this.#bus.whenReady(2000);
    await beat();
  }

  /** Proves `owner` alive for `ttlMs` more. */
  async keepAlive(owner: string, ttlMs: number): Promise<void> {
    await this.#redis.set(aliveKey(owner), "1", "PX", ttlMs);
  }

  /**
   * Adds a presence; returns its phx_ref for untrack, or null when the room already lists
   * PRESENCE_MAX_PER_ROOM people (its list and diffs stay bounded; chat is unaffected).
   * Owned by this node unless `owner` is given.
   */
  async track(
    room: string,
    key: string,
    meta: Record<string, unknown>,
    owner = this.#owner,
  ): Promise<string | null> {
    const entry: Entry = { key, meta: { ...meta, phx_ref: randomUUID() }, owner };
    const tracked = await this.#guard("presence-track", async () => {
      const listed = await this.#redis.hlen(entriesKey(room));
      if (listed >= this.#config.PRESENCE_MAX_PER_ROOM) return false;
      await this.#redis.hset(entriesKey(room), entry.meta.phx_ref, JSON.stringify(entry));
      if (owner === this.#owner) this.#mine.set(entry.meta.phx_ref, { room, entry });
      this.#announce(room, [entry], []);
      return true;
    });
    return tracked === false ? null : entry.meta.phx_ref;
  }

  async untrack(room: string, ref: string | null | undefined): Promise<void> {
    if (!ref) return;
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
    clearTimeout(this.#flushTimer);
    const byRoom = new Map<string, string[]>();
    for (const [ref, { room }] of this.#mine) byRoom.set(room, [...(byRoom.get(room) ?? []), ref]);
    this.#mine.clear();
    await this.#guard("presence-stop", async () => {
      await Promise.all([...byRoom].map(([room, refs]) => this.#remove(room, refs)));
      await this.#redis.del(aliveKey(this.#owner));
    });
    await this.#flush();
  }

  /**
   * Queues joins and leaves; they go out as one diff per room every PRESENCE_BATCH_MS, so a
   * crowd joining a big room costs each member a diff per batch, not one per person.
   */
  #announce(room: string, joins: Entry[], leaves: Entry[]): void {
    const pending = this.#pending.get(room) ?? { joins: [], leaves: [] };
    pending.joins.push(...joins);
    pending.leaves.push(...leaves);
    this.#pending.set(room, pending);
    this.#flushTimer ??= setTimeout(() => void this.#flush(), this.#config.PRESENCE_BATCH_MS);
  }

  async #flush(): Promise<void> {
    this.#flushTimer = undefined;
    const batches = [...this.#pending];
    this.#pending.clear();
    await Promise.all(
      batches.map(([room, { joins, leaves }]) =>
        this.#guard("presence-diff", () =>
          // phoenix.js applies joins before leaves, so a join and leave in one batch cancel out.
          this.#bus.publishPresence(room, { joins: group(joins), leaves: group(leaves) }),
        ),
      ),
    );
  }

  /**
   * Puts this node's entries back after Redis lost them or peers presumed it dead, announcing
   * them as joins again: each time costs every member a diff, so a lagging node makes presence flap.
   */
  async #retrackMine(): Promise<void> {
    this.#metrics.presenceRetracked.inc();
    this.#log.warn(
      { entries: this.#mine.size },
      "presumed dead by peers (alive key gone); re-listing this node's people",
    );
    for (const { room, entry } of this.#mine.values()) {
      await this.#redis.hset(entriesKey(room), entry.meta.phx_ref, JSON.stringify(entry));
      this.#announce(room, [entry], []);
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
    if (removed.length > 0) this.#announce(room, [], removed);
  }

  async #reap(room: string): Promise<void> {
    const entries = await this.#entries(room);
    const alive = await this.#aliveOwners(entries);
    const dead = entries.filter((e) => !alive.has(e.owner));
    if (dead.length === 0) return;
    this.#metrics.presenceReaped.inc(dead.length);
    this.#log.warn(
      { room, entries: dead.length, owners: [...new Set(dead.map((e) => e.owner))] },
      "removing presence of owners that stopped heartbeating",
    );
    await this.#remove(
      room,
      dead.map((e) => e.meta.phx_ref),
    );
  }

  async #entries(room: string): Promise<Entry[]> {
    const raw = await this.#redis.hvals(entriesKey(room));
    return raw.map((value) => JSON.parse(value) as Entry);
  }

  async #aliveOwners(entries: Entry[]): Promise<Set<string>> {
    const owners = [...new Set(entries.map((e) => e.owner))];
    if (owners.length === 0) return new Set();
    const flags = await this.#redis.mget(...owners.map(aliveKey));
    // This node knows it is alive, even before its first heartbeat reached Redis.
    return new Set(owners.filter((owner, i) => flags[i] !== null || owner === this.#owner));
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
