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

/**
 * A payload many subscribers are sent (a message, a presence diff): its JSON made once, and
 * its frame once per encoding key, as UTF-8 bytes: every subscriber of a room on one protocol
 * shares one buffer instead of encoding its own.
 */
export abstract class SharedPayload {
  #frames: Map<string, Buffer> | undefined;

  abstract readonly json: string;

  frame(encoding: FrameEncoding): Buffer {
    this.#frames ??= new Map();
    let frame = this.#frames.get(encoding.key);
    if (!frame) {
      frame = Buffer.from(encoding.encode(this.json));
      this.#frames.set(encoding.key, frame);
    }
    return frame;
  }
}

/** JSON already made, to be framed for many subscribers. */
export class SharedJson extends SharedPayload {
  readonly json: string;

  constructor(json: string) {
    super();
    this.json = json;
  }
}

/** A delivered message; its JSON is made when first asked for. */
export class Delivery extends SharedPayload {
  readonly message: Message;
  #json: string | undefined;

  constructor(message: Message) {
    super();
    this.message = message;
  }

  get json(): string {
    this.#json ??= JSON.stringify(this.message);
    return this.#json;
  }
}

/** Where a subscription's messages go: an object, so that a socket's channel can take them
 * itself rather than keep a closure and its scope (~100 B) per subscriber. */
export interface Recipient {
  deliver(delivery: Delivery): void;
}

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
  readonly #recipient: Recipient;
  readonly #onClose: (subscription: Subscription) => void;

  constructor(
    room: string,
    cursor: number,
    recipient: Recipient,
    onClose: (s: Subscription) => void,
  ) {
    this.room = room;
    this.#cursor = cursor;
    this.#recipient = recipient;
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
    this.#recipient.deliver(delivery);
  }
}
