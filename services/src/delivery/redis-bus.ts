import type { Logger, Message } from "@chat/shared";
import { Redis } from "ioredis";
import type { NodeMetrics } from "../metrics.ts";

/** What travels on a room's Redis channel: a stored message, or a presence change. */
type Envelope =
  | {
      kind: "message";
      message: Message;
      /** Epoch ms right after commit on the publishing node; measures commit-to-delivery. */
      committedAt: number;
      node: string;
    }
  | { kind: "presence"; room: string; diff: unknown };

export interface BusEvents {
  onMessage(message: Message, committedAt: number): void;
  onPresence(room: string, diff: unknown): void;
  /** The subscriber connection is (again) live: publishes seen from now on are complete. */
  onUp(): void;
  onDown(): void;
}

const channelFor = (room: string) => `chat:room:${room}`;
const roomOf = (channel: string) => channel.slice("chat:room:".length);

/**
 * Redis pub/sub between nodes. One publisher and one subscriber connection per node,
 * whatever the number of clients; the node subscribes only to rooms it has local
 * subscribers in. Publishing is best effort: a lost publish is a gap the feeds fill
 * from Postgres, so it never queues while Redis is away. Only each room's latest failed
 * publish is kept and sent again once the publisher is back: nodes whose subscriber came
 * back first would otherwise not learn of it until their next sweep.
 */
export class RedisBus {
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #rooms = new Set<string>();
  /** Other features' channels (a LongPoll session's wake-ups), on the same subscriber connection. */
  readonly #listeners = new Map<string, (payload: string) => void>();
  readonly #nodeId: string;
  readonly #metrics: NodeMetrics;
  readonly #log: Logger;
  #events: BusEvents | undefined;
  #up = false;
  /** Per room, the latest message whose publish failed: seq and envelope. */
  readonly #unpublished = new Map<string, { seq: number; payload: string }>();

  constructor(url: string, nodeId: string, metrics: NodeMetrics, log: Logger) {
    this.#nodeId = nodeId;
    this.#metrics = metrics;
    this.#log = log;
    const options = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      // Reconnect fast and forever: fan-out falls back to Postgres until this succeeds.
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
      connectionName: `chat-node:${nodeId}`,
    };
    this.#publisher = new Redis(url, options);
    this.#subscriber = new Redis(url, { ...options, autoResubscribe: false });
    this.#watch(this.#publisher, "publish");
    this.#watch(this.#subscriber, "subscribe");
    this.#subscriber.on("ready", () => void this.#resubscribe());
    this.#publisher.on("ready", () => void this.#republish());
    this.#subscriber.on("close", () => this.#setUp(false));
    this.#subscriber.on("message", (channel: string, payload: string) =>
      this.#receive(channel, payload),
    );
  }

  /** The command connection, for other features' keys (rate limits, presence). Fails fast while down. */
  get commands(): Redis {
    return this.#publisher;
  }

  /** Resolves once the command connection is ready, or after `timeoutMs` (Redis may be down). */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.#publisher.status === "ready") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const publisher = this.#publisher;
      function done() {
        clearTimeout(timer);
        publisher.off("ready", done);
        resolve();
      }
      publisher.once("ready", done);
    });
  }

  get up(): boolean {
    return this.#up;
  }

  /** Connects in the background; the node serves (degraded) while Redis is unreachable. */
  start(events: BusEvents): void {
    this.#events = events;
    for (const client of [this.#publisher, this.#subscriber]) {
      client
        .connect()
        .catch((error: unknown) => this.#log.warn({ err: error }, "Redis connect failed"));
    }
  }

  async publish(message: Message, committedAt: number): Promise<void> {
    const envelope: Envelope = { kind: "message", message, committedAt, node: this.#nodeId };
    const payload = JSON.stringify(envelope);
    try {
      await this.#publisher.publish(channelFor(message.room), payload);
    } catch (error) {
      this.#metrics.redisErrors.inc({ op: "publish" });
      this.#log.debug({ err: error }, "publish failed; sent again once Redis is back");
      const latest = this.#unpublished.get(message.room);
      if (!latest || latest.seq < message.seq)
        this.#unpublished.set(message.room, { seq: message.seq, payload });
    }
  }

  /** Other nodes fill the gap up to a re-sent message from Postgres. */
  async #republish(): Promise<void> {
    for (const [room, entry] of this.#unpublished) {
      try {
        await this.#publisher.publish(channelFor(room), entry.payload);
        if (this.#unpublished.get(room) === entry) this.#unpublished.delete(room);
      } catch {
        return; // down again: the next "ready" sends what is left
      }
    }
  }

  /** Presence changes ride the room's channel, so they reach exactly the nodes following it. */
  async publishPresence(room: string, diff: unknown): Promise<void> {
    const envelope: Envelope = { kind: "presence", room, diff };
    await this.#publisher.publish(channelFor(room), JSON.stringify(envelope));
  }

  async follow(room: string): Promise<void> {
    this.#rooms.add(room);
    if (this.#up)
      await this.#command("subscribe", () => this.#subscriber.subscribe(channelFor(room)));
  }

  async unfollow(room: string): Promise<void> {
    this.#rooms.delete(room);
    if (this.#up)
      await this.#command("unsubscribe", () => this.#subscriber.unsubscribe(channelFor(room)));
  }

  /** Follows a channel of another feature until the returned function is called. */
  async listen(
    channel: string,
    onMessage: (payload: string) => void,
  ): Promise<() => Promise<void>> {
    this.#listeners.set(channel, onMessage);
    if (this.#up) await this.#command("subscribe", () => this.#subscriber.subscribe(channel));
    return async () => {
      if (this.#listeners.get(channel) !== onMessage) return;
      this.#listeners.delete(channel);
      if (this.#up) await this.#command("unsubscribe", () => this.#subscriber.unsubscribe(channel));
    };
  }

  /** Publishes on another feature's channel; best effort, like message publishes. */
  async signal(channel: string, payload: string): Promise<void> {
    try {
      await this.#publisher.publish(channel, payload);
    } catch (error) {
      this.#metrics.redisErrors.inc({ op: "publish" });
      this.#log.debug({ err: error }, "signal publish failed");
    }
  }

  async ping(): Promise<boolean> {
    return this.#publisher.ping().then(
      () => true,
      () => false,
    );
  }

  async close(): Promise<void> {
    this.#events = undefined;
    this.#publisher.disconnect();
    this.#subscriber.disconnect();
  }

  async #resubscribe(): Promise<void> {
    const channels = [...[...this.#rooms].map(channelFor), ...this.#listeners.keys()];
    if (channels.length > 0) {
      const ok = await this.#command("subscribe", () => this.#subscriber.subscribe(...channels));
      if (!ok) return;
    }
    this.#setUp(true);
  }

  #setUp(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    this.#metrics.redisUp.set(up ? 1 : 0);
    this.#log.info(
      { redis: up ? "up" : "down" },
      up ? "Redis fan-out live" : "Redis lost; fan-out falls back to Postgres",
    );
    if (up) this.#events?.onUp();
    else this.#events?.onDown();
  }

  #receive(channel: string, payload: string): void {
    const listener = this.#listeners.get(channel);
    if (listener) {
      listener(payload);
      return;
    }
    let envelope: Envelope;
    try {
      envelope = JSON.parse(payload) as Envelope;
    } catch (error) {
      this.#metrics.redisErrors.inc({ op: "decode" });
      this.#log.warn({ err: error, channel }, "undecodable publish ignored");
      return;
    }
    const room = roomOf(channel);
    if (envelope.kind === "presence" && envelope.room === room)
      this.#events?.onPresence(room, envelope.diff);
    else if (envelope.kind === "message" && envelope.message?.room === room) {
      this.#events?.onMessage(envelope.message, envelope.committedAt);
    }
  }

  async #command(op: string, run: () => Promise<unknown>): Promise<boolean> {
    try {
      await run();
      return true;
    } catch (error) {
      this.#metrics.redisErrors.inc({ op });
      this.#log.warn({ err: error, op }, "Redis command failed");
      return false;
    }
  }

  #watch(client: Redis, role: string): void {
    client.on("error", (error: Error) => {
      this.#metrics.redisErrors.inc({ op: `${role}-connection` });
      this.#log.debug({ err: error, role }, "Redis connection error");
    });
  }
}
