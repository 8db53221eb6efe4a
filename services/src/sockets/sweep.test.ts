import { describe, expect, it } from "vitest";
import { Sweep } from "./sweep.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Sweep", () => {
  it("visits its members each interval, lets a visit remove them, and stops once empty", async () => {
    const visits: string[][] = [];
    const sweep = new Sweep<string>(20, (members) => {
      visits.push([...members]);
      for (const member of members) if (member === "silent") sweep.delete(member);
    });
    sweep.add("silent");
    sweep.add("talking");
    await expect.poll(() => visits.length).toBeGreaterThanOrEqual(2);
    expect(visits.slice(0, 2)).toEqual([["silent", "talking"], ["talking"]]);

    sweep.delete("talking");
    const count = visits.length;
    await sleep(100); // five intervals
    expect(visits.length).toBe(count); // no timer runs for an empty sweep

    sweep.add("again");
    await expect.poll(() => visits.at(-1)).toEqual(["again"]);
    sweep.delete("again");
  });
});
