import { describe, expect, it } from "vitest";
import { broadcast, decode, encode, encodeBroadcast, parseVsn, roomOfTopic } from "./serializer.ts";

describe("Phoenix serializers", () => {
  const message = {
    join_ref: "1",
    ref: "2",
    topic: "room:a",
    event: "speak",
    payload: { body: "hi" },
  };

  it("round-trips arrays (2.0.0) and objects (1.0.0)", () => {
    expect(encode(message, "2.0.0")).toBe('["1","2","room:a","speak",{"body":"hi"}]');
    for (const vsn of ["1.0.0", "2.0.0"] as const)
      expect(decode(encode(message, vsn), vsn)).toEqual(message);
  });

  it("splices a payload's JSON, made once for many sockets, into a broadcast both serializers decode", () => {
    const diff = { joins: { ana: { metas: [{ phx_ref: "r" }] } }, leaves: {} };
    for (const vsn of ["1.0.0", "2.0.0"] as const)
      expect(
        decode(encodeBroadcast(vsn, 'room:"q"', "presence_diff", null, JSON.stringify(diff)), vsn),
      ).toEqual(broadcast('room:"q"', "presence_diff", diff));
  });

  it("treats a connection without vsn as 1.0.0, like Phoenix (Tsung sends none)", () => {
    expect(parseVsn(undefined)).toBe("1.0.0");
    expect(parseVsn("2.0.0")).toBe("2.0.0");
    expect(
      decode('{"topic":"chat","event":"phx_join","payload":{},"ref":"1"}', parseVsn(undefined)),
    ).toEqual({
      join_ref: null,
      ref: "1",
      topic: "chat",
      event: "phx_join",
      payload: {},
    });
  });

  it.each([
    ["not JSON", "{oops", "invalid_json"],
    ["the wrong arity", '["1","2","t","e"]', "bad_request"],
    ["a numeric topic", '["1","2",3,"e",{}]', "bad_request"],
    ["an object ref", '[{},"2","t","e",{}]', "bad_request"],
  ])("rejects %s with a ChatError", (_label, frame, code) => {
    expect(() => decode(frame, "2.0.0")).toThrow(expect.objectContaining({ code }));
  });

  it("maps topics to rooms: room:<name> and the bare chat", () => {
    expect(roomOfTopic("room:lobby")).toBe("lobby");
    expect(roomOfTopic("chat")).toBe("chat");
    expect(() => roomOfTopic("lobby")).toThrow(expect.objectContaining({ code: "not_found" }));
    expect(() => roomOfTopic("room:Bad!")).toThrow(
      expect.objectContaining({ code: "invalid_room" }),
    );
  });
});
