import { describe, expect, it } from "vitest";
import { runDrill } from "../drill/src/drill.ts";
import { summary } from "../drill/src/report.ts";
import { SCENARIOS } from "../drill/src/scenarios.ts";
import { localTarget } from "../drill/src/targets.ts";

/**
 * Every failover drill in its short form against a local cluster of its own (4 nodes, the
 * gateway, the edge), clients on all six transports: nothing lost, doubled or reordered.
 */
describe("failover drills (short form)", () => {
  for (const scenario of Object.keys(SCENARIOS)) {
    it(`${scenario}: ${SCENARIOS[scenario]?.description}`, async () => {
      const target = await localTarget(4, () => {});
      try {
        const result = await runDrill({
          scenario,
          target,
          durationMs: 16_000,
          clientsPerTransport: 2,
          rooms: 2,
          sendEveryMs: 1000,
          sendDeadlineMs: 30_000,
          progress: () => {},
        });
        const report = summary(result);
        expect(result.totals, report).toMatchObject({
          lost: 0,
          doubled: 0,
          outOfOrder: 0,
          mismatched: 0,
          failedSends: 0,
          acknowledgedNotStored: 0,
        });
        expect(result.totals.stored, report).toBeGreaterThan(100);
        expect(result.events.length, report).toBeGreaterThanOrEqual(2); // the fault, and its repair
        expect(result.passed, report).toBe(true);
      } finally {
        await target.close();
      }
    }, 120_000);
  }
});
