import { describe, expect, it } from "vitest";
import { LeanMap } from "./lean-map.ts";

describe("LeanMap", () => {
  it("behaves as a Map through one key, many keys and back", () => {
    const lean = new LeanMap<number>();
    const map = new Map<string, number>();
    const steps: Array<[op: "set" | "delete", key: string, value?: number]> = [
      ["set", "a", 1],
      ["set", "a", 2],
      ["delete", "b"],
      ["set", "b", 3],
      ["set", "c", 4],
      ["delete", "a"],
      ["delete", "b"],
      ["delete", "c"],
      ["set", "d", 5],
    ];
    for (const [op, key, value] of steps) {
      if (op === "set") {
        lean.set(key, value ?? 0);
        map.set(key, value ?? 0);
      } else expect(lean.delete(key)).toBe(map.delete(key));
      expect(lean.size).toBe(map.size);
      expect([...lean.values()]).toEqual([...map.values()]);
      for (const probe of ["a", "b", "c", "d"]) {
        expect(lean.get(probe)).toBe(map.get(probe));
        expect(lean.has(probe)).toBe(map.has(probe));
      }
    }
    lean.clear();
    expect([lean.size, [...lean.values()], lean.get("d")]).toEqual([0, [], undefined]);
  });
});
