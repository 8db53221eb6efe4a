import { randomUUID } from "node:crypto";
import type { Logger } from "@chat/shared";
import type { NodeConfig } from "../config.ts";
import type { RedisBus } from "../delivery/redis-bus.ts";
import { SharedJson, type SharedPayload } from "../delivery/subscription.ts";
import type { NodeMetrics } from "../metrics.ts";
import { AliveHeartbeat } from "./alive-heartbeat.ts";
import {
  definePresenceCommands,
  type PresenceEntry,
  type PresenceMeta,
  type PresenceRedis,
  presenceKeys,
  removeIfOwnerDead,
} from "./entries.ts";

/** `{ [key]: { metas: [...] } }`: the shape of phoenix.js's presence_state and diff halves. */
export type PresenceState = Record<string, { metas: PresenceMeta[] }>;
export interface PresenceDiff {
  joins: PresenceState;
  leaves: PresenceState;
}

/** Who hears a room's presence diffs: an object, so a listener per socket costs no closure. */
export interface PresenceListener {
  /** A diff (a PresenceDiff's JSON), shared by every listener: frame it with `diff.frame`. */
  presenceChanged(diff: SharedPayload): void;
}

/**
 * Who is in each room, across nodes, in Phoenix Presence's format. Entries live in a Redis
 * hash per room; each names an owner whose `alive` key its node (or LongPoll session) keeps
 * refreshing. Nodes reap the entries of owners whose key expired, so a killed node's users
 * leave within PRESENCE_DEAD_AFTER_MS. A node refreshes its key from a worker thread, so a
 * lagging event loop does not make its people flap. Diffs travel on the room's Redis channel.
 */
export class Presence {
  readonly #redis: PresenceRedis;
  readonly #bus: RedisBus;
  readonly #owner: string;
  readonly #config: NodeConfig;
  readonly #log: Logger;
  readonly #metrics: NodeMetrics;
  readonly #listeners = new Map<string, Set<PresenceListener>>();
  /** Entries this node tracked, so a drain can remove them at once. */
  readonly #mine = new Map<string, { room: string; entry: PresenceEntry }>();
  /** Joins and leaves waiting to go out as one diff per room (PRESENCE_BATCH_MS). */
  readonly #pending = new Map<string, { joins: PresenceEntry[]; leaves: PresenceEntry[] }>();
  #flushTimer: NodeJS.Timeout | undefined;
  #reapTimer: NodeJS.Timeout | undefined;
  readonly #heartbeat: AliveHeartbeat;
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
    this.#redis = definePresenceCommands(deps.bus.commands);
    this.#owner = `node:${deps.nodeId}`;
    this.#config = deps.config;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
    const { REDIS_URL, PRESENCE_HEARTBEAT_MS, PRESENCE_DEAD_AFTER_MS, PRESENCE_STALL_LIMIT_MS } =
      deps.config;
    this.#heartbeat = new AliveHeartbeat(
      {
        redisUrl: REDIS_URL,
        key: presenceKeys.alive(this.#owner),
        intervalMs: PRESENCE_HEARTBEAT_MS,
        ttlMs: PRESENCE_DEAD_AFTER_MS,
        stallLimitMs: PRESENCE_STALL_LIMIT_MS,
        connectionName: `chat-node:${deps.nodeId}:alive`,
      },
      deps.log,
      {
        beat: (wasAlive) => {
          // Our alive key gone means Redis lost its data (a restart) or we were presumed dead.
          if (!wasAlive && this.#beaten)
            void this.#guard("presence-retrack", () => this.#retrackMine());
          this.#beaten = true;
        },
        failed: () => this.#metrics.redisErrors.inc({ op: "presence-heartbeat" }),
      },
    );
  }

  /** Starts heartbeating and reaping; resolves after the first beat, so entries tracked next are listed. */
  async start(): Promise<void> {
    const reapAll = async () => {
      await this.#guard("presence-reap", () =>
        Promise.all([...this.#listeners.keys()].map((room) => this.#reap(room))),
      );
      this.#reapTimer = setTimeout(reapAll, this.#config.PRESENCE_HEARTBEAT_MS);
    };
    // A first beat that fails would leave this node's users looking dead to its peers.
    await this.#heartbeat.start(2500);
    await reapAll();
  }

  /** Proves `owner` alive for `ttlMs` more. */
  async keepAlive(owner: string, ttlMs: number): Promise<void> {
    await this.#redis.set(presenceKeys.alive(owner), "1", "PX", ttlMs);
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
    const entry: PresenceEntry = { key, meta: { ...meta, phx_ref: randomUUID() }, owner };
    const tracked = await this.#guard("presence-track", async () => {
      if (!(await this.#list(room, entry))) return false;
      if (owner === this.#owner) this.#mine.set(entry.meta.phx_ref, { room, entry });
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

  /** Tells `listener` of every change to the room's presence until the returned function,
   * or `unlisten` with the same arguments, is called. */
  listen(room: string, listener: PresenceListener): () => void {
    const listeners = this.#listeners.get(room) ?? new Set();
    listeners.add(listener);
    this.#listeners.set(room, listeners);
    return () => this.unlisten(room, listener);
  }

  unlisten(room: string, listener: PresenceListener): void {
    const listeners = this.#listeners.get(room);
    listeners?.delete(listener);
    if (listeners?.size === 0) this.#listeners.delete(room);
  }

  /** A diff arrived from Redis (this node's own ones included): encoded once for the room's
   * listeners, however many sockets they are. */
  received(room: string, diff: unknown): void {
    const listeners = this.#listeners.get(room);
    if (!listeners) return;
    const shared = new SharedJson(JSON.stringify(diff));
    for (const listener of listeners) listener.presenceChanged(shared);
  }

  /** Removes this node's entries (drain) and stops heartbeating. */
  async stop(): Promise<void> {
    clearTimeout(this.#reapTimer);
    clearTimeout(this.#flushTimer);
    await this.#heartbeat.stop();
    const byRoom = new Map<string, string[]>();
    for (const [ref, { room }] of this.#mine) byRoom.set(room, [...(byRoom.get(room) ?? []), ref]);
    this.#mine.clear();
    await this.#guard("presence-stop", async () => {
      await Promise.all([...byRoom].map(([room, refs]) => this.#remove(room, refs)));
      await this.#redis.del(presenceKeys.alive(this.#owner));
    });
    await this.#flush();
  }

  /**
   * Queues joins and leaves; they go out as one diff per room every PRESENCE_BATCH_MS, so a
   * crowd joining a big room costs each member a diff per batch, not one per person.
   */
  #announce(room: string, joins: PresenceEntry[], leaves: PresenceEntry[]): void {
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

  /** Adds an entry to the room's list and announces it, unless the list is full. */
  async #list(room: string, entry: PresenceEntry): Promise<boolean> {
    const ref = entry.meta.phx_ref;
    const max = this.#config.PRESENCE_MAX_PER_ROOM;
    const outcome = await this.#redis.presenceTrack(
      presenceKeys.entries(room),
      ref,
      JSON.stringify(entry),
      max,
    );
    if (outcome === 1) this.#announce(room, [entry], []);
    return outcome !== 0;
  }

  /**
   * Puts this node's entries back after Redis lost them or peers presumed it dead, announcing
   * them as joins again (a diff to every member). Slots others took meanwhile stay theirs: an
   * entry that no longer fits stays unlisted, so the list never outgrows PRESENCE_MAX_PER_ROOM.
   */
  async #retrackMine(): Promise<void> {
    this.#metrics.presenceRetracked.inc();
    this.#log.warn(
      { entries: this.#mine.size },
      "presumed dead by peers (alive key gone); re-listing this node's people",
    );
    for (const [ref, { room, entry }] of this.#mine) {
      if (!(await this.#list(room, entry))) this.#mine.delete(ref);
    }
  }

  async #remove(room: string, refs: string[]): Promise<void> {
    const raw = await this.#redis.hmget(presenceKeys.entries(room), ...refs);
    const removed: PresenceEntry[] = [];
    for (const [i, value] of raw.entries()) {
      const ref = refs[i];
      // HDEL answers 1 on one node only, so each leave is announced once.
      if (value && ref && (await this.#redis.hdel(presenceKeys.entries(room), ref)) === 1)
        removed.push(JSON.parse(value) as PresenceEntry);
    }
    if (removed.length > 0) this.#announce(room, [], removed);
  }

  async #reap(room: string): Promise<void> {
    const entries = await this.#entries(room);
    const alive = await this.#aliveOwners(entries);
    const dead = entries.filter((e) => !alive.has(e.owner));
    const removed = await removeIfOwnerDead(this.#redis, room, dead);
    if (removed.length === 0) return;
    this.#metrics.presenceReaped.inc(removed.length);
    this.#log.warn(
      { room, entries: removed.length, owners: [...new Set(removed.map((e) => e.owner))] },
      "removed presence of owners that stopped heartbeating",
    );
    this.#announce(room, [], removed);
  }

  async #entries(room: string): Promise<PresenceEntry[]> {
    const raw = await this.#redis.hvals(presenceKeys.entries(room));
    return raw.map((value) => JSON.parse(value) as PresenceEntry);
  }

  async #aliveOwners(entries: PresenceEntry[]): Promise<Set<string>> {
    const owners = [...new Set(entries.map((e) => e.owner))];
    if (owners.length === 0) return new Set();
    const flags = await this.#redis.mget(...owners.map(presenceKeys.alive));
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

function group(entries: PresenceEntry[]): PresenceState {
  const state: PresenceState = {};
  for (const { key, meta } of entries) {
    const slot = state[key] ?? { metas: [] };
    slot.metas.push(meta);
    state[key] = slot;
  }
  return state;
}
