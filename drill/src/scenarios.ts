import type { Target } from "./targets.ts";

export interface ScenarioContext {
  target: Target;
  durationMs: number;
  /** Records a fault or a repair on the timeline (and prints it). */
  event(label: string): void;
  sleep(ms: number): Promise<void>;
}

export interface Scenario {
  description: string;
  /** Runs the faults within the chat phase; returns once everything is repaired. */
  run(context: ScenarioContext): Promise<void>;
}

/** Breaks one node after another, `period` apart, round robin, each for `downMs`. */
async function nodeRounds(
  context: ScenarioContext,
  breakNode: (index: number) => Promise<void>,
  repairNode: (index: number) => Promise<void>,
  downMs: number,
): Promise<void> {
  const { target, durationMs, sleep } = context;
  const nodes = await target.nodeCount();
  const rounds = Math.max(1, Math.floor(durationMs / 8000));
  const period = durationMs / (rounds + 1);
  for (let round = 0; round < rounds; round++) {
    await sleep(period - downMs);
    const index = round % nodes;
    await breakNode(index);
    await sleep(downMs);
    await repairNode(index);
  }
}

/** A fault held from 20 % to 60 % of the run. */
async function window(
  context: ScenarioContext,
  fault: () => Promise<void>,
  repair: () => Promise<void>,
): Promise<void> {
  await context.sleep(context.durationMs * 0.2);
  await fault();
  await context.sleep(context.durationMs * 0.4);
  await repair();
}

export const SCENARIOS: Record<string, Scenario> = {
  kill: {
    description: "kill -9 one node after another (round robin), each restarted 3 s later",
    run: (c) =>
      nodeRounds(
        c,
        async (i) => {
          c.event(`kill -9 node ${i}`);
          await c.target.signalNode(i, "SIGKILL");
        },
        async (i) => {
          await c.target.startNode(i);
          c.event(`node ${i} restarted`);
        },
        3000,
      ),
  },
  term: {
    description: "SIGTERM one node after another: each drains, exits and is started again",
    run: (c) =>
      nodeRounds(
        c,
        async (i) => {
          c.event(`SIGTERM node ${i}`);
          await c.target.signalNode(i, "SIGTERM");
        },
        async (i) => {
          await c.target.startNode(i);
          c.event(`node ${i} restarted`);
        },
        3000,
      ),
  },
  stop: {
    description: "SIGSTOP one node after another for 5 s (a hung process), then SIGCONT",
    run: (c) =>
      nodeRounds(
        c,
        async (i) => {
          c.event(`SIGSTOP node ${i}`);
          await c.target.signalNode(i, "SIGSTOP");
        },
        async (i) => {
          await c.target.signalNode(i, "SIGCONT");
          c.event(`SIGCONT node ${i}`);
        },
        5000,
      ),
  },
  redis: {
    description: "Redis killed from 20 % to 60 % of the run: delivery runs on Postgres meanwhile",
    run: (c) =>
      window(
        c,
        async () => {
          c.event("Redis killed");
          await c.target.stopRedis();
        },
        async () => {
          await c.target.startRedis();
          c.event("Redis started");
        },
      ),
  },
  replica: {
    description:
      "the Postgres replica stopped from 20 % to 60 % of the run: reads go to the primary",
    run: (c) =>
      window(
        c,
        async () => {
          c.event("replica stopped");
          await c.target.stopReplica();
        },
        async () => {
          await c.target.startReplica();
          c.event("replica started");
        },
      ),
  },
  promote: {
    description:
      "the Postgres primary stopped at 25 %, the replica promoted 3 s later: nodes find it by themselves",
    async run(c) {
      await c.sleep(c.durationMs * 0.25);
      c.event("primary stopped");
      await c.target.stopPrimary();
      await c.sleep(3000);
      await c.target.promoteReplica();
      c.event("replica promoted");
    },
  },
};
