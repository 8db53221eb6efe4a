import type { Message } from "@chat/shared";
import { describe, expect, it, vi } from "vitest";
import { RoomFeed } from "./room-feed.ts";
import { Delivery, Subscription } from "./subscription.ts";

const message = (seq: number): Message => ({
  room: "r",
  seq,
  id: `id-${seq}`,
  client_id: null,
  user: "u",
  body: `m${seq}`,
  at: new Date().toISOString(),
});

/** A feed whose "storage" holds messages 1..stored, with one subscriber recording seqs. */
function feedWithStorage(stored: number, gapFillDelayMs = 5) {
  const reads: Array<[number, number]> = [];
  const feed = new RoomFeed("r", {
    gapFillDelayMs,
    readRange: async (_room, after, upTo) => {
      reads.push([after, upTo]);
      const last = Math.min(upTo, stored);
      return Array.from({ length: Math.max(0, last - after) }, (_, i) => message(after + i + 1));
    },
    onDelivered: () => {},
    onFillError: () => {},
  });
  const seen: number[] = [];
  const subscription = new Subscription(
    "r",
    0,
    { deliver: (d) => seen.push(d.message.seq) },
    () => {},
  );
  feed.subscriptions.add(subscription);
  subscription.goLive();
  return { feed, seen, reads };
}

describe("RoomFeed", () => {
  it("delivers out-of-order and repeated arrivals once, in seq order", () => {
    const { feed, seen } = feedWithStorage(0);
    feed.start(0);
    for (const seq of [2, 1, 1, 3, 2, 5, 4]) feed.offer(message(seq), Date.now(), "redis");
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it("holds messages that arrive before its baseline is known", () => {
    const { feed, seen } = feedWithStorage(0);
    feed.offer(message(4), Date.now(), "redis");
    feed.offer(message(5), Date.now(), "redis");
    expect(seen).toEqual([]);
    feed.start(3);
    expect(seen).toEqual([4, 5]);
  });

  it("fills a gap that no publish closes from storage", async () => {
    const { feed, seen, reads } = feedWithStorage(6);
    feed.start(2);
    feed.offer(message(6), Date.now(), "redis");
    await vi.waitFor(() => expect(seen).toEqual([3, 4, 5, 6]));
    expect(reads[0]).toEqual([2, 5]);
  });

  it("does not read storage when the late publish lands within the delay", async () => {
    const { feed, seen, reads } = feedWithStorage(3, 50);
    feed.start(1);
    feed.offer(message(3), Date.now(), "redis");
    feed.offer(message(2), Date.now(), "redis");
    expect(seen).toEqual([2, 3]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(reads).toEqual([]);
  });

  it("catches up to a head learned from a sweep", async () => {
    const { feed, seen } = feedWithStorage(4);
    feed.start(0);
    await feed.catchUp(4);
    expect(seen).toEqual([1, 2, 3, 4]);
  });
});

describe("Subscription", () => {
  it("queues live messages during replay and skips what the replay covered", () => {
    const seen: number[] = [];
    const subscription = new Subscription(
      "r",
      0,
      { deliver: (d) => seen.push(d.message.seq) },
      () => {},
    );
    const live = (seq: number) => subscription.receive(new Delivery(message(seq)));
    live(3);
    live(4);
    for (const seq of [1, 2, 3]) subscription.replay(new Delivery(message(seq)));
    expect(seen).toEqual([1, 2, 3]);
    subscription.goLive();
    live(5);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });
});
