import { randomUUID } from "node:crypto";
import {
  createClient,
  DRILL_TRANSPORTS,
  type DrillClient,
  type DrillTransport,
  guestToken,
  sleep,
} from "./clients.ts";
import { SCENARIOS } from "./scenarios.ts";
import type { Target } from "./targets.ts";
import { type Acknowledged, type DrillResult, type TimelineSample, verify } from "./verify.ts";

export interface DrillOptions {
  scenario: string;
  target: Target;
  durationMs: number;
  clientsPerTransport: number;
  rooms: number;
  /** Each client sends one message this often. */
  sendEveryMs: number;
  /** A send still unacknowledged after this long (retried all along) counts as failed. */
  sendDeadlineMs: number;
  /** Progress lines go here (stderr by default). */
  progress?: (line: string) => void;
}

interface SendStats {
  attempts: number;
  failedAttempts: number;
  failedSends: number;
  /** Sends given up on, by the client's transport. */
  failedSendsByTransport: Map<string, number>;
  /** Failed attempts by what the client was told, so a failed drill says why. */
  attemptErrors: Map<string, number>;
  acknowledged: Map<string, Acknowledged>;
}

/**
 * Runs one drill: clients on every transport chat through the public entry while the
 * scenario breaks and mends the system; then every client's history is checked against
 * Postgres. The result says what a user would have noticed.
 */
export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  const scenario = SCENARIOS[options.scenario];
  if (!scenario) throw new Error(`unknown scenario ${options.scenario}`);
  const say = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const runId = randomUUID().slice(0, 8);
  const rooms = Array.from({ length: options.rooms }, (_, i) => `drill-${runId}-${i}`);
  const clients = await connectClients(options, rooms, say);
  const started = performance.now();
  const at = () => Math.round(performance.now() - started);
  const events: Array<{ atMs: number; label: string }> = [];
  const timeline: TimelineSample[] = [];
  const stats: SendStats = {
    attempts: 0,
    failedAttempts: 0,
    failedSends: 0,
    failedSendsByTransport: new Map(),
    attemptErrors: new Map(),
    acknowledged: new Map(),
  };

  let chatting = true;
  const senders = clients.map((client) => sendLoop(client, options, stats, () => chatting));
  const sampler = setInterval(() => {
    timeline.push(sample(clients, stats, at()));
    if (timeline.length % 2 === 0) say(progressLine(timeline.at(-1), events.at(-1)?.label));
  }, 1000);
  try {
    await scenario.run({
      target: options.target,
      durationMs: options.durationMs,
      sleep,
      event: (label) => {
        events.push({ atMs: at(), label });
        say(`  ${(at() / 1000).toFixed(1)} s  ${label}`);
      },
    });
    const left = options.durationMs - at();
    if (left > 0) await sleep(left);
    chatting = false;
    await Promise.all(senders);
    say("  sends done; waiting for every client to catch up");
    await settle(clients, options.target, rooms);
  } finally {
    clearInterval(sampler);
    for (const client of clients) {
      client.link.end();
      client.close();
    }
  }
  const stored = await options.target.stored(rooms);
  return verify({
    scenario: options.scenario,
    description: scenario.description,
    target: options.target.name,
    durationMs: at(),
    clients,
    stored,
    sends: stats,
    events,
    timeline,
  });
}

async function connectClients(
  options: DrillOptions,
  rooms: string[],
  say: (line: string) => void,
): Promise<DrillClient[]> {
  const plan = DRILL_TRANSPORTS.flatMap((transport) =>
    Array.from({ length: options.clientsPerTransport }, (_, i) => ({ transport, i })),
  );
  const clients = await Promise.all(
    plan.map(async ({ transport, i }, n) => {
      const name = `${transport}-${i}`;
      const token = await guestToken(options.target.entry, name);
      const room = rooms[n % rooms.length] ?? "";
      return createClient(transport as DrillTransport, {
        entry: options.target.entry,
        name,
        room,
        token,
      });
    }),
  );
  const deadline = Date.now() + 30_000;
  while (clients.some((c) => !c.link.connected) && Date.now() < deadline) await sleep(100);
  const waiting = clients
    .filter((c) => !c.link.connected)
    .map((c) => `${c.name} (${c.lastError ?? "no answer"})`);
  if (waiting.length) throw new Error(`clients never connected: ${waiting.join(", ")}`);
  say(`  ${clients.length} clients connected on ${DRILL_TRANSPORTS.length} transports`);
  return clients;
}

/** One message every sendEveryMs, each retried with its client id until acknowledged. */
async function sendLoop(
  client: DrillClient,
  options: DrillOptions,
  stats: SendStats,
  chatting: () => boolean,
): Promise<void> {
  await sleep(Math.random() * options.sendEveryMs); // spread the senders out
  for (let n = 0; chatting(); n++) {
    const clientId = `${client.room}-${client.name}-${n}`;
    const sentAt = performance.now();
    const deadline = sentAt + options.sendDeadlineMs;
    for (;;) {
      stats.attempts++;
      try {
        const message = await client.send(`${client.name} says ${n}`, clientId);
        stats.acknowledged.set(clientId, {
          seq: message.seq,
          id: message.id,
          room: client.room,
          sentAt,
        });
        break;
      } catch (error) {
        stats.failedAttempts++;
        count(stats.attemptErrors, `${client.transport}: ${describe(error)}`);
        if (performance.now() > deadline) {
          stats.failedSends++;
          count(stats.failedSendsByTransport, client.transport);
          break;
        }
        await sleep(250);
      }
    }
    await sleep(options.sendEveryMs);
  }
}

const count = (tally: Map<string, number>, key: string) =>
  tally.set(key, (tally.get(key) ?? 0) + 1);

/** An error as one short line, to tally attempts by cause. */
const describe = (error: unknown) =>
  (error instanceof Error ? error.message : String(error)).split("\n")[0]?.slice(0, 200) ?? "";

/** Waits until every client holds as many messages as its room has stored, or 30 s. */
async function settle(clients: DrillClient[], target: Target, rooms: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const stored = await target.stored(rooms).catch(() => null);
    const behind = stored
      ? clients.filter((c) => c.received.length < (stored.get(c.room)?.length ?? 0))
      : clients;
    if (behind.length === 0) return;
    await sleep(1000);
  }
}

function sample(clients: DrillClient[], stats: SendStats, atMs: number): TimelineSample {
  const byNode: Record<string, number> = {};
  for (const client of clients) {
    if (!client.link.connected) continue;
    const node = client.link.node ?? "unknown node";
    byNode[node] = (byNode[node] ?? 0) + 1;
  }
  return {
    atMs,
    connected: clients.filter((c) => c.link.connected).length,
    byNode,
    failedAttempts: stats.failedAttempts + clients.reduce((sum, c) => sum + c.errors, 0),
    reconnects: clients.reduce((sum, c) => sum + c.link.repairsMs.length, 0),
    acknowledged: stats.acknowledged.size,
    received: clients.reduce((sum, c) => sum + c.received.length, 0),
  };
}

function progressLine(s: TimelineSample | undefined, lastEvent: string | undefined): string {
  if (!s) return "";
  const nodes = Object.entries(s.byNode)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([node, n]) => `${node}:${n}`)
    .join(" ");
  return `  ${(s.atMs / 1000).toFixed(0).padStart(4)} s  connected ${s.connected}  sent ${s.acknowledged}  received ${s.received}  errors ${s.failedAttempts}  reconnects ${s.reconnects}  | ${nodes}${lastEvent ? `  | last: ${lastEvent}` : ""}`;
}
