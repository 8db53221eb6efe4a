import type { Message } from "@chat/shared";
import { Delivery, type Subscription } from "./subscription.ts";

export interface FeedContext {
  /** Reads stored messages after `after`, up to and including `upTo`, from storage. */
  readRange(room: string, after: number, upTo: number): Promise<Message[]>;
  gapFillDelayMs: number;
  onDelivered(message: Message, committedAt: number, source: "redis" | "local" | "storage"): void;
  onFillError(room: string, error: unknown): void;
}

/**
 * A room as this node sees it: messages arrive from local sends, Redis and Postgres in any
 * order and any number of times; the feed hands each one to local subscribers once, in seq
 * order. `head` is the last seq delivered; anything beyond head+1 waits in `pending` until
 * the gap is filled — by the late publish itself or, after a short delay, from storage.
 */
export class RoomFeed {
  readonly room: string;
  readonly subscriptions = new Set<Subscription>();
  #head = -1;
  readonly #pending = new Map<
    number,
    { message: Message; committedAt: number; source: "redis" | "local" }
  >();
  #fillTimer: NodeJS.Timeout | undefined;
  #filling: Promise<void> | undefined;
  readonly #context: FeedContext;

  constructor(room: string, context: FeedContext) {
    this.room = room;
    this.#context = context;
  }

  /** The last seq delivered in order, or -1 before the baseline is known. */
  get head(): number {
    return this.#head;
  }

  get ready(): boolean {
    return this.#head >= 0;
  }

  /** Sets the starting point: the room's head when this node began following it. */
  start(baseline: number): void {
    this.#head = Math.max(this.#head, baseline);
    this.#drain();
  }

  offer(message: Message, committedAt: number, source: "redis" | "local"): void {
    if (this.ready && message.seq <= this.#head) return;
    this.#pending.set(message.seq, { message, committedAt, source });
    this.#drain();
  }

  /** Reads from storage everything up to `target` that has not arrived yet. */
  async catchUp(target: number): Promise<void> {
    while (this.ready && this.#head < target) {
      this.#filling ??= this.#fill(target).finally(() => {
        this.#filling = undefined;
      });
      const before = this.#head;
      await this.#filling;
      if (this.#head === before) return; // storage had nothing newer; the sweep will retry
    }
  }

  close(): void {
    clearTimeout(this.#fillTimer);
    for (const subscription of this.subscriptions) subscription.close();
  }

  #drain(): void {
    if (!this.ready) return;
    for (const seq of this.#pending.keys()) {
      if (seq <= this.#head) this.#pending.delete(seq);
    }
    let next = this.#pending.get(this.#head + 1);
    while (next) {
      this.#pending.delete(this.#head + 1);
      this.#emit(next.message, next.committedAt, next.source);
      next = this.#pending.get(this.#head + 1);
    }
    this.#scheduleGapFill();
  }

  #scheduleGapFill(): void {
    if (this.#pending.size === 0 || this.#fillTimer) return;
    this.#fillTimer = setTimeout(() => {
      this.#fillTimer = undefined;
      const highest = Math.max(...this.#pending.keys());
      void this.catchUp(highest - 1);
    }, this.#context.gapFillDelayMs);
  }

  async #fill(target: number): Promise<void> {
    try {
      const messages = await this.#context.readRange(this.room, this.#head, target);
      for (const message of messages) {
        if (message.seq === this.#head + 1) this.#emit(message, Date.parse(message.at), "storage");
      }
      this.#drain();
    } catch (error) {
      this.#context.onFillError(this.room, error);
    }
  }

  #emit(message: Message, committedAt: number, source: "redis" | "local" | "storage"): void {
    this.#head = message.seq;
    const delivery = new Delivery(message);
    for (const subscription of this.subscriptions) subscription.receive(delivery);
    this.#context.onDelivered(message, committedAt, source);
  }
}
