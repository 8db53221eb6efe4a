import type { Logger, Message } from "@chat/shared";
import type { NodeConfig } from "../config.ts";
import type { NodeMetrics } from "../metrics.ts";
import type { MessageStore } from "../storage/message-store.ts";
import type { RedisBus } from "./redis-bus.ts";
import { RoomFeed } from "./room-feed.ts";
import { Delivery, type Recipient, Subscription } from "./subscription.ts";
import { SweepTimer } from "./sweep-timer.ts";

const REPLAY_PAGE = 500;

export interface SubscribeOptions {
  /** Deliver messages with seq > after; null joins "from now". */
  after: number | null;
  to: Recipient;
  /** Called after each replayed message; a returned promise pauses the replay until the
   * reader has caught up, so a long backlog never floods a socket's send buffer. */
  paceReplay?: () => Promise<void> | undefined;
  /** Called once the subscription is in place, before any replay, with the seq it starts
   * after: a join answered from here never misses a message sent after the answer. */
  onStart?: (cursor: number) => void;
}

/**
 * Fan-out on one node.
 *
 *   send ─► Postgres commit ─► hub.published ─┬─► local RoomFeed ─► subscriptions
 *                                             └─► Redis ─► other nodes' RoomFeeds
 *   sweep (every SWEEP_INTERVAL_MS, faster while Redis is down):
 *     room heads from Postgres ─► feeds behind them catch up from storage
 *
 * Feeds exist only for rooms with local subscribers; they linger a little after the last
 * one leaves because long polls come and go.
 */
/** A room this node follows. `leave` is shared by its subscriptions: one closure each
 * would cost ~100 B per subscriber. */
interface FollowedRoom {
  feed: RoomFeed;
  ready: Promise<void>;
  leave: (subscription: Subscription) => void;
}

export class DeliveryHub {
  readonly #feeds = new Map<string, FollowedRoom>();
  readonly #lingering = new Map<string, NodeJS.Timeout>();
  readonly #sweeps = new SweepTimer(() => void this.#sweep());
  #closed = false;
  readonly #store: MessageStore;
  readonly #bus: RedisBus;
  readonly #config: NodeConfig;
  readonly #metrics: NodeMetrics;
  readonly #log: Logger;

  constructor(deps: {
    store: MessageStore;
    bus: RedisBus;
    config: NodeConfig;
    metrics: NodeMetrics;
    log: Logger;
  }) {
    this.#store = deps.store;
    this.#bus = deps.bus;
    this.#config = deps.config;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
  }

  /** `onPresence` receives the presence diffs of rooms this node follows. */
  start(onPresence: (room: string, diff: unknown) => void = () => {}): void {
    this.#bus.start({
      onMessage: (message, committedAt) =>
        this.#feeds.get(message.room)?.feed.offer(message, committedAt, "redis"),
      onPresence,
      onUp: () => this.#sweepSoon(0), // publishes were lost while the subscriber was away
      onDown: () => this.#sweepSoon(this.#config.DEGRADED_SWEEP_INTERVAL_MS),
    });
    this.#sweepSoon(this.#config.SWEEP_INTERVAL_MS);
  }

  /** A message this node just committed: local subscribers first, then every other node. */
  published(message: Message, committedAt: number): void {
    this.#feeds.get(message.room)?.feed.offer(message, committedAt, "local");
    void this.#bus.publish(message, committedAt);
  }

  /** The last seq this node has delivered in the room, or 0 when it does not follow it. */
  knownHead(room: string): number {
    return Math.max(0, this.#feeds.get(room)?.feed.head ?? 0);
  }

  /** Replays stored messages after `after`, then streams live ones: gapless, in order, once. */
  async subscribe(room: string, options: SubscribeOptions): Promise<Subscription> {
    const { feed, leave } = await this.#follow(room);
    const subscription = new Subscription(room, options.after ?? 0, options.to, leave);
    feed.subscriptions.add(subscription);
    if (options.after === null) subscription.startAt(feed.head);
    options.onStart?.(subscription.cursor);
    try {
      await this.#replay(subscription, options, feed.head);
    } catch (error) {
      subscription.close();
      throw error;
    }
    subscription.goLive();
    return subscription;
  }

  get roomsFollowed(): number {
    return this.#feeds.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sweeps.cancel();
    for (const timer of this.#lingering.values()) clearTimeout(timer);
    for (const { feed } of this.#feeds.values()) feed.close();
    this.#feeds.clear();
    await this.#bus.close();
  }

  async #replay(
    subscription: Subscription,
    options: SubscribeOptions,
    target: number,
  ): Promise<void> {
    while (subscription.cursor < target && !subscription.closed) {
      const { messages } = await this.#store.page(subscription.room, {
        after: subscription.cursor,
        upTo: target,
        limit: REPLAY_PAGE,
        floor: target,
      });
      if (messages.length === 0) return;
      for (const message of messages) {
        subscription.replay(new Delivery(message));
        const paused = options.paceReplay?.();
        if (paused) await paused;
      }
    }
  }

  async #follow(room: string): Promise<FollowedRoom> {
    clearTimeout(this.#lingering.get(room));
    this.#lingering.delete(room);
    let entry = this.#feeds.get(room);
    if (!entry) {
      const feed = new RoomFeed(room, this.#feedContext());
      const leave = (subscription: Subscription) => this.#leave(feed, subscription);
      entry = { feed, ready: this.#startFeed(feed), leave };
      this.#feeds.set(room, entry);
      this.#metrics.activeFeeds.set(this.#feeds.size);
    }
    await entry.ready;
    return entry;
  }

  /** Subscribe on Redis before reading the head, so nothing committed in between is missed. */
  async #startFeed(feed: RoomFeed): Promise<void> {
    try {
      await this.#bus.follow(feed.room);
      await this.#store.ensureRoom(feed.room).catch((error: unknown) => {
        this.#log.warn(
          { err: error, room: feed.room },
          "could not create room; following it anyway",
        );
      });
      const heads = await this.#store.heads([feed.room]);
      feed.start(heads.get(feed.room) ?? 0);
    } catch (error) {
      this.#drop(feed);
      throw error;
    }
  }

  #leave(feed: RoomFeed, subscription: Subscription): void {
    feed.subscriptions.delete(subscription);
    if (feed.subscriptions.size > 0 || this.#closed) return;
    clearTimeout(this.#lingering.get(feed.room));
    this.#lingering.set(
      feed.room,
      setTimeout(() => {
        this.#lingering.delete(feed.room);
        if (feed.subscriptions.size === 0) this.#drop(feed);
      }, this.#config.FEED_LINGER_MS),
    );
  }

  #drop(feed: RoomFeed): void {
    if (this.#feeds.get(feed.room)?.feed !== feed) return;
    this.#feeds.delete(feed.room);
    this.#metrics.activeFeeds.set(this.#feeds.size);
    feed.close();
    void this.#bus.unfollow(feed.room);
  }

  #sweepSoon(delay: number): void {
    if (!this.#closed) this.#sweeps.schedule(delay);
  }

  /** Catches every followed room up to its head in Postgres; Redis's safety net and stand-in. */
  async #sweep(): Promise<void> {
    const feeds = [...this.#feeds.values()].map((entry) => entry.feed).filter((feed) => feed.ready);
    try {
      if (feeds.length > 0) {
        const heads = await this.#store.heads(feeds.map((feed) => feed.room));
        await Promise.all(
          feeds.map((feed) => {
            const head = heads.get(feed.room) ?? 0;
            return head > feed.head ? feed.catchUp(head) : undefined;
          }),
        );
      }
    } catch (error) {
      this.#log.warn({ err: error }, "sweep failed");
    }
    this.#sweepSoon(
      this.#bus.up ? this.#config.SWEEP_INTERVAL_MS : this.#config.DEGRADED_SWEEP_INTERVAL_MS,
    );
  }

  #feedContext() {
    return {
      gapFillDelayMs: this.#config.GAP_FILL_DELAY_MS,
      readRange: async (room: string, after: number, upTo: number) =>
        (await this.#store.page(room, { after, upTo, limit: REPLAY_PAGE, floor: upTo })).messages,
      onDelivered: (
        _message: Message,
        committedAt: number,
        source: "redis" | "local" | "storage",
      ) => {
        this.#metrics.messagesDelivered.inc({ source });
        this.#metrics.deliveryLatency.observe(Math.max(0, Date.now() - committedAt));
        if (source === "storage") this.#metrics.gapFills.inc();
      },
      onFillError: (room: string, error: unknown) =>
        this.#log.warn({ err: error, room }, "gap fill failed; the sweep will retry"),
    };
  }
}
