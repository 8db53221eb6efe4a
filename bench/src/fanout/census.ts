import { barChart, markdownTable } from "../output.ts";
import { heapCensus, heapSnapshot } from "./heap.ts";
import { type PeerOptions, type PeerServer, withJoinedPeer } from "./peers.ts";

/** What one server's heap holds per connection, by kind of object. */
export interface CensusResult {
  server: string;
  subscribers: number;
  /** Growth of the live heap per connection (the heap snapshots' sizes). */
  bytesPerConnection: number;
  /** The kinds that grew, largest first: objects and bytes per connection. */
  kinds: Array<{ kind: string; perConnection: number; bytesPerConnection: number }>;
}

type CensusOptions = Omit<PeerOptions, "ratePerSecond" | "messages">;

/**
 * Where a server's memory per connection goes: heap snapshots (after full collections)
 * before and after the subscribers join, compared kind by kind. Node servers only.
 */
export function runCensus(server: PeerServer, options: CensusOptions): Promise<CensusResult> {
  const census = async (pid: number, logTail: (() => string) | undefined, name: string) => {
    if (!logTail) throw new Error(`${name}: not a Node server, no heap to read`);
    return heapCensus(await heapSnapshot(pid, logTail));
  };
  return withJoinedPeer(server, options, {
    beforeJoin: (running) => census(running.pid, running.logTail, running.name),
    joined: async (running, _workers, before) => ({
      server: running.name,
      subscribers: options.subscribers,
      ...grown(
        before,
        await census(running.pid, running.logTail, running.name),
        options.subscribers,
      ),
    }),
  });
}

function grown(
  before: ReturnType<typeof heapCensus>,
  after: ReturnType<typeof heapCensus>,
  connections: number,
): Pick<CensusResult, "bytesPerConnection" | "kinds"> {
  let total = 0;
  const kinds: CensusResult["kinds"] = [];
  for (const [kind, now] of after) {
    const then = before.get(kind) ?? { count: 0, bytes: 0 };
    total += now.bytes - then.bytes;
    kinds.push({
      kind,
      perConnection: Number(((now.count - then.count) / connections).toFixed(2)),
      bytesPerConnection: Math.round((now.bytes - then.bytes) / connections),
    });
  }
  kinds.sort((a, b) => b.bytesPerConnection - a.bytesPerConnection);
  return {
    bytesPerConnection: Math.round(total / connections),
    kinds: kinds.filter((k) => k.bytesPerConnection >= 8),
  };
}

/** The largest kinds of any server, each server's bytes (and objects) per connection. */
export function censusTable(results: CensusResult[], rows = 30): string {
  const kinds = [
    ...new Set(
      results
        .flatMap((r) => r.kinds)
        .sort((a, b) => b.bytesPerConnection - a.bytesPerConnection)
        .map((k) => k.kind),
    ),
  ].slice(0, rows);
  const cell = (r: CensusResult, kind: string) => {
    const found = r.kinds.find((k) => k.kind === kind);
    return found ? `${found.bytesPerConnection} (${found.perConnection})` : "—";
  };
  return markdownTable(
    ["kind of object", ...results.map((r) => `${r.server}: bytes (objects) per connection`)],
    [
      ["all live objects", ...results.map((r) => r.bytesPerConnection.toLocaleString("en"))],
      ...kinds.map((kind) => [kind, ...results.map((r) => cell(r, kind))]),
    ],
  );
}

export function censusPlot(results: CensusResult[]): string {
  return barChart(
    "Live heap per connection (heap snapshots after full GC)",
    "bytes",
    results.map((r) => ({ label: r.server, value: r.bytesPerConnection })),
  );
}
