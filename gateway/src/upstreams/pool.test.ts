import { describe, expect, it } from "vitest";
import { UpstreamPool } from "./pool.ts";

function pool(addresses: string[]) {
  const created = new UpstreamPool({ slowStartMs: 0, ejectBaseMs: 1000, ejectMaxMs: 30_000 });
  created.update(addresses);
  return created;
}

/** A pool of a:1, b:1 and c:1, with its upstreams. */
function three() {
  const p = pool(["a:1", "b:1", "c:1"]);
  const [a, b, c] = p.all;
  if (!a || !b || !c) throw new Error("three upstreams expected");
  return { p, a, b, c };
}

const picks = (p: UpstreamPool, times = 200) =>
  new Set(Array.from({ length: times }, () => p.pick("stream")?.address));

describe("UpstreamPool.pick", () => {
  it("only picks upstreams passing their checks while any does", () => {
    const { p, a, b, c } = three();
    a.checked = "ready";
    b.checked = "down";
    c.checked = "down";
    expect(picks(p)).toEqual(new Set(["a:1"]));
  });

  it("panics when every upstream fails its checks: the failing ones are tried, not refused", () => {
    const { p, a } = three();
    for (const upstream of p.all) upstream.checked = "down";
    expect(picks(p)).toEqual(new Set(["a:1", "b:1", "c:1"]));
    expect(p.pick("request", new Set(p.all.filter((u) => u !== a)))?.address).toBe("a:1");
  });

  it("never panics into draining or ejected upstreams", () => {
    const { p, a, b, c } = three();
    a.checked = "draining";
    b.checked = "down";
    c.checked = "down";
    p.eject(c);
    expect(picks(p)).toEqual(new Set(["b:1"]));
    b.checked = "draining";
    expect(p.pick("stream")).toBeUndefined();
  });
});
