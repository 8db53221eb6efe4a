import { describe, expect, it } from "vitest";
import { SourcePorts } from "./source-ports.ts";

describe("SourcePorts", () => {
  it("lets the OS pick when no source address is set", () => {
    expect(new SourcePorts([], { index: 0, count: 1 }).take()).toBeUndefined();
  });

  it("gives each worker its own ports, turning over every address before the next port", () => {
    const first = new SourcePorts(["127.0.0.2", "127.0.0.3"], { index: 0, count: 4 });
    const second = new SourcePorts(["127.0.0.2", "127.0.0.3"], { index: 1, count: 4 });
    const taken = Array.from({ length: 4 }, () => first.take());
    expect(taken).toEqual([
      { localAddress: "127.0.0.2", localPort: 1024 },
      { localAddress: "127.0.0.3", localPort: 1024 },
      { localAddress: "127.0.0.2", localPort: 1025 },
      { localAddress: "127.0.0.3", localPort: 1025 },
    ]);
    expect(second.take()?.localPort).toBe(1024 + 16128);
  });

  it("wraps around within its slice", () => {
    const ports = new SourcePorts(["127.0.0.2"], { index: 63, count: 64 });
    const seen = new Set(Array.from({ length: 2000 }, () => ports.take()?.localPort));
    expect(Math.min(...(seen as Set<number>))).toBe(1024 + 63 * 1008);
    expect(Math.max(...(seen as Set<number>))).toBe(1024 + 64 * 1008 - 1);
  });
});
