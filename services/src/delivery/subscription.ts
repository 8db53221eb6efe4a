import type { Message } from "@chat/shared";
import { LRUCache } from "lru-cache";

/**
 * How a protocol frames messages for one topic. Made once per channel, not per delivery:
 * subscribers whose encodings have equal keys share one frame.
 */
export interface FrameEncoding {
  readonly key: string;
  encode(messageJson: string): string;
}

/** The encodings of the topics joined lately, shared by their channels (see frameEncoding). */
const encodings = new LRUCache<string, FrameEncoding>({ max: 10_000 });

/**
 * The encoding for `key`, shared by every channel that frames its topic alike: one each
 * would keep a key string and a closure (~170 B) per subscriber. `encode` must depend on
 * nothing but the key's parts.
 */
export function frameEncoding(key: string, encode: (messageJson: string) => string): FrameEncoding {
  let encoding = encodings.get(key);
  if (!encoding) {
    encoding = { key, encode };
    encodings.set(key, encoding);
  }
  return encoding;
}

/** A delivered message, encoded once for all the subscribers that send it the same way. */
export interface Delivery {
  readonly message: Message;
  readonly json: string;
  /**
   * The frame `encoding` makes of the message's JSON, as UTF-8 bytes, built once per key:
   * every subscriber of a room on one protocol shares one buffer instead of encoding its own.
   */
  frame(encoding: FrameEncoding): Buffer;
}

export function toDelivery(message: Message): Delivery {
  let json: string | undefined;
  let frames: Map<string, Buffer> | undefined;
  return {
    message,
    get json() {
      json ??= JSON.stringify(message);
      return json;
    },
    frame(encoding) {
      frames ??= new Map();
      let frame = frames.get(encoding.key);
      if (!frame) {
        frame = Buffer.from(encoding.encode(this.json));
        frames.set(encoding.key, frame);
      }
      return frame;
    },
  };
}

export type Deliver = (delivery: Delivery) => void;

/**
 * One local subscriber's view of a room: every message after its cursor, exactly once and in
 * seq order. While it replays history from storage, live messages wait in a queue; going
 * live flushes the queue past whatever the replay already covered.
 */
export class Subscription {
  readonly room: string;
  #cursor: number;
  #queue: Delivery[] | null = [];
  #closed = false;
  readonly #deliver: Deliver;
  readonly #onClose: (subscription: Subscription) => void;

  constructor(room: string, cursor: number, deliver: Deliver, onClose: (s: Subscription) => void) {
    this.room = room;
    this.#cursor = cursor;
    this.#deliver = deliver;
    this.#onClose = onClose;
  }

  /** The last seq this subscriber has been given. */
  get cursor(): number {
    return this.#cursor;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Called by the room feed, in seq order, for every live message. */
  receive(delivery: Delivery): void {
    if (this.#queue) this.#queue.push(delivery);
    else this.#give(delivery);
  }

  /** Called by the replay, in seq order, for stored messages. */
  replay(delivery: Delivery): void {
    this.#give(delivery);
  }

  /** Skips straight to `seq` without delivering: a subscriber that joins "from now". */
  startAt(seq: number): void {
    this.#cursor = Math.max(this.#cursor, seq);
  }

  goLive(): void {
    const queued = this.#queue ?? [];
    this.#queue = null;
    for (const delivery of queued) this.#give(delivery);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = null;
    this.#onClose(this);
  }

  #give(delivery: Delivery): void {
    if (this.#closed || delivery.message.seq <= this.#cursor) return;
    this.#cursor = delivery.message.seq;
    this.#deliver(delivery);
  }
}
