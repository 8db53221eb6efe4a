import { describe, expect, it } from "vitest";
import { SweepTimer } from "./sweep-timer.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("SweepTimer", () => {
  it("keeps a sweep due now when a finishing sweep asks for the next one later", async () => {
    let runs = 0;
    const timer = new SweepTimer(() => runs++);
    timer.schedule(0); // Redis is back: sweep now
    timer.schedule(60_000); // a sweep in flight finishes and schedules the next
    await sleep(50);
    expect(runs).toBe(1);
    timer.cancel();
  });

  it("brings a later sweep forward when one is asked for sooner", async () => {
    let runs = 0;
    const timer = new SweepTimer(() => runs++);
    timer.schedule(60_000);
    timer.schedule(10); // Redis lost: sweep at the degraded interval
    await sleep(80);
    expect(runs).toBe(1);
    timer.cancel();
  });

  it("runs once per schedule after it fired, and not at all once cancelled", async () => {
    let runs = 0;
    const timer = new SweepTimer(() => runs++);
    timer.schedule(0);
    await sleep(20);
    timer.schedule(0);
    await sleep(20);
    expect(runs).toBe(2);
    timer.schedule(10);
    timer.cancel();
    await sleep(40);
    expect(runs).toBe(2);
  });
});
