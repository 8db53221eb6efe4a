import type { Message, User } from "@chat/shared";
import type { DeliveryHub } from "../delivery/hub.ts";
import type { Subscription } from "../delivery/subscription.ts";
import type { SendRateLimiter } from "../limits/rate-limiter.ts";
import type { AppendResult, MessageStore } from "../storage/message-store.ts";
import type { SendInput } from "./input.ts";

/** Who sends: the user, and the client's address (anonymous guests are limited by it). */
export interface Sender {
  user: User;
  address: string;
}

/**
 * What every transport does with messages: send, read history, wait for news. HTTP, SSE,
 * the thesis routes (and the socket protocols) are thin adapters over this.
 */
export class Chat {
  readonly #store: MessageStore;
  readonly #hub: DeliveryHub;
  readonly #limiter: SendRateLimiter;

  constructor(store: MessageStore, hub: DeliveryHub, limiter: SendRateLimiter) {
    this.#store = store;
    this.#hub = hub;
    this.#limiter = limiter;
  }

  /** Stores and fans out a message; `address` identifies anonymous senders for rate limits. */
  async send(room: string, sender: Sender, input: SendInput): Promise<AppendResult> {
    await this.#limiter.take(sender.user, sender.address);
    const user = sender.user;
    const result = await this.#store.append(room, user, input.body, input.clientId);
    if (result.created) this.#hub.published(result.message, Date.now());
    return result;
  }

  /** Stored messages after `after`; the replica serves it unless it lags what we know exists. */
  async history(room: string, after: number, limit: number): Promise<Message[]> {
    const floor = Math.min(this.#hub.knownHead(room), after + limit);
    const { messages } = await this.#store.page(room, {
      after,
      limit,
      floor: Math.max(floor, after),
    });
    return messages;
  }

  /** Scroll-back: the `limit` messages before `before`, ascending. */
  historyBefore(room: string, before: number, limit: number): Promise<Message[]> {
    return this.#store.pageBefore(room, before, limit);
  }

  /**
   * A long poll: answers at once when anything is newer than `after`, else with the first
   * messages to arrive (together with any that land in the same tick), or [] when `waitMs`
   * passes or `until` resolves (the node drains, the client goes away).
   */
  async poll(
    room: string,
    after: number,
    limit: number,
    waitMs: number,
    until: Promise<unknown>,
  ): Promise<Message[]> {
    const stored = await this.history(room, after, limit);
    if (stored.length > 0 || waitMs <= 0) return stored;
    return new Promise<Message[]>((resolve, reject) => {
      const received: Message[] = [];
      let subscription: Subscription | undefined;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        subscription?.close();
        resolve(received);
      };
      const timer = setTimeout(finish, waitMs);
      void until.then(finish);
      this.#hub
        .subscribe(room, {
          after,
          to: {
            deliver: ({ message }) => {
              if (done) return;
              received.push(message);
              if (received.length >= limit) finish();
              else setImmediate(finish);
            },
          },
        })
        .then(
          (s) => {
            subscription = s;
            if (done) s.close();
          },
          (error: unknown) => {
            done = true;
            clearTimeout(timer);
            reject(error);
          },
        );
    });
  }

  subscribe(...args: Parameters<DeliveryHub["subscribe"]>): Promise<Subscription> {
    return this.#hub.subscribe(...args);
  }
}
