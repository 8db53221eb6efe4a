import type { DrillClient } from "./clients.ts";
import type { StoredMessage } from "./targets.ts";

export interface TimelineSample {
  atMs: number;
  connected: number;
  /** Connected clients by the node serving them (Action Cable does not say which). */
  byNode: Record<string, number>;
  /** Cumulative failed requests (send attempts and client errors). */
  failedAttempts: number;
  /** Cumulative reconnects. */
  reconnects: number;
  acknowledged: number;
  received: number;
}

/** A send the server acknowledged, and when its first attempt began (performance.now()). */
export interface Acknowledged {
  seq: number;
  id: string;
  room: string;
  sentAt: number;
}

/** What one client got wrong, if anything, against Postgres. */
export interface ClientCheck {
  name: string;
  transport: string;
  room: string;
  expected: number;
  received: number;
  lost: number;
  doubled: number;
  outOfOrder: number;
  /** A seq whose message id differs from the stored one. */
  mismatched: number;
  failures: number;
}

/** What one transport's clients saw: the checks summed, and the sends given up on. */
export type TransportCheck = Omit<ClientCheck, "name" | "transport" | "room"> & {
  failedSends: number;
};

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface DrillResult {
  scenario: string;
  description: string;
  target: string;
  durationMs: number;
  passed: boolean;
  totals: {
    clients: number;
    stored: number;
    lost: number;
    doubled: number;
    outOfOrder: number;
    mismatched: number;
    failedSends: number;
    /** Sends acknowledged to the client but absent from Postgres (or stored under another seq). */
    acknowledgedNotStored: number;
    sendAttempts: number;
    failedSendAttempts: number;
    /** Polls, streams and reconnect attempts answered with an error. */
    clientErrors: number;
    /** Failed send attempts per send attempt. */
    errorRate: number;
  };
  reconnectMs: Percentiles;
  /** From a send's first attempt to its arrival at each client in the room (retries included). */
  deliveryMs: Percentiles;
  availability: { mtbfS: number | null; mttrS: number | null; failures: number; value: number };
  byTransport: Record<string, TransportCheck>;
  /** Failed send attempts by transport and error, most frequent first. */
  sendErrors: Array<{ error: string; attempts: number }>;
  clients: ClientCheck[];
  events: Array<{ atMs: number; label: string }>;
  timeline: TimelineSample[];
}

export interface VerifyInput {
  scenario: string;
  description: string;
  target: string;
  durationMs: number;
  clients: DrillClient[];
  stored: Map<string, StoredMessage[]>;
  sends: {
    attempts: number;
    failedAttempts: number;
    failedSends: number;
    failedSendsByTransport: Map<string, number>;
    attemptErrors: Map<string, number>;
    acknowledged: Map<string, Acknowledged>;
  };
  events: Array<{ atMs: number; label: string }>;
  timeline: TimelineSample[];
}

/** Checks one client's received stream against its room as stored: every seq once, in order. */
export function checkClient(client: DrillClient, stored: StoredMessage[]): ClientCheck {
  const idBySeq = new Map(stored.map((m) => [m.seq, m.id]));
  const seen = new Map<number, number>();
  let highest = 0;
  let outOfOrder = 0;
  let mismatched = 0;
  for (const message of client.received) {
    const count = (seen.get(message.seq) ?? 0) + 1;
    seen.set(message.seq, count);
    if (count === 1 && message.seq < highest) outOfOrder++;
    highest = Math.max(highest, message.seq);
    if (idBySeq.get(message.seq) !== message.id) mismatched++;
  }
  const lost = stored.filter((m) => !seen.has(m.seq)).length;
  const doubled = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
  return {
    name: client.name,
    transport: client.transport,
    room: client.room,
    expected: stored.length,
    received: client.received.length,
    lost,
    doubled,
    outOfOrder,
    mismatched,
    failures: client.link.failures,
  };
}

export function verify(input: VerifyInput): DrillResult {
  const checks = input.clients.map((c) => checkClient(c, input.stored.get(c.room) ?? []));
  const sum = (pick: (c: ClientCheck) => number, list = checks) =>
    list.reduce((total, c) => total + pick(c), 0);
  const storedById = new Map([...input.stored.values()].flat().map((m) => [m.id, m.seq] as const));
  const acknowledgedNotStored = [...input.sends.acknowledged.values()].filter(
    (ack) => storedById.get(ack.id) !== ack.seq,
  ).length;
  const clientErrors = input.clients.reduce((total, c) => total + c.errors, 0);
  const totals = {
    clients: checks.length,
    stored: [...input.stored.values()].reduce((n, list) => n + list.length, 0),
    lost: sum((c) => c.lost),
    doubled: sum((c) => c.doubled),
    outOfOrder: sum((c) => c.outOfOrder),
    mismatched: sum((c) => c.mismatched),
    failedSends: input.sends.failedSends,
    acknowledgedNotStored,
    sendAttempts: input.sends.attempts,
    failedSendAttempts: input.sends.failedAttempts,
    clientErrors,
    errorRate: input.sends.attempts ? input.sends.failedAttempts / input.sends.attempts : 0,
  };
  const byTransport: DrillResult["byTransport"] = {};
  for (const transport of new Set(checks.map((c) => c.transport))) {
    const list = checks.filter((c) => c.transport === transport);
    byTransport[transport] = {
      expected: sum((c) => c.expected, list),
      received: sum((c) => c.received, list),
      lost: sum((c) => c.lost, list),
      doubled: sum((c) => c.doubled, list),
      outOfOrder: sum((c) => c.outOfOrder, list),
      mismatched: sum((c) => c.mismatched, list),
      failures: sum((c) => c.failures, list),
      failedSends: input.sends.failedSendsByTransport.get(transport) ?? 0,
    };
  }
  const passed =
    totals.lost === 0 &&
    totals.doubled === 0 &&
    totals.outOfOrder === 0 &&
    totals.mismatched === 0 &&
    totals.failedSends === 0 &&
    totals.acknowledgedNotStored === 0 &&
    totals.stored > 0;
  return {
    scenario: input.scenario,
    description: input.description,
    target: input.target,
    durationMs: input.durationMs,
    passed,
    totals,
    reconnectMs: percentiles(input.clients.flatMap((c) => c.link.repairsMs)),
    deliveryMs: percentiles(deliveryTimes(input)),
    availability: availability(input.clients),
    byTransport,
    sendErrors: [...input.sends.attemptErrors]
      .map(([error, attempts]) => ({ error, attempts }))
      .sort((a, b) => b.attempts - a.attempts),
    clients: checks,
    events: input.events,
    timeline: input.timeline,
  };
}

function deliveryTimes(input: VerifyInput): number[] {
  const sentAt = new Map([...input.sends.acknowledged.values()].map((a) => [a.id, a.sentAt]));
  return input.clients.flatMap((client) =>
    client.received.flatMap((message, i) => {
      const start = sentAt.get(message.id);
      const arrival = client.arrivals[i];
      return start === undefined || arrival === undefined ? [] : [Math.max(0, arrival - start)];
    }),
  );
}

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted.length
      ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0)
      : 0;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}

/**
 * The thesis's availability, MTBF / (MTBF + MTTR), over every client: MTBF is connected time
 * per failure (a drop), MTTR the time to be receiving again per failure.
 */
function availability(clients: DrillClient[]): DrillResult["availability"] {
  let upMs = 0;
  let downMs = 0;
  let failures = 0;
  for (const client of clients) {
    const times = client.link.times();
    upMs += times.upMs;
    downMs += times.downMs;
    failures += client.link.failures;
  }
  if (failures === 0) return { mtbfS: null, mttrS: null, failures, value: 1 };
  const mtbf = upMs / failures / 1000;
  const mttr = downMs / failures / 1000;
  return { mtbfS: round(mtbf), mttrS: round(mttr), failures, value: mtbf / (mtbf + mttr) };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
