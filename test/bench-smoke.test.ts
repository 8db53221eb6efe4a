import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cdnPlot, cdnTable, runPageLoads } from "../bench/src/cdn/page-load.ts";
import { censusPlot, censusTable, runCensus } from "../bench/src/fanout/census.ts";
import { fanoutPlot, fanoutTable, runFanout, settleJoins } from "../bench/src/fanout/fanout.ts";
import { peerPlot, peerSummary, peerTable, runPeer } from "../bench/src/fanout/peers.ts";
import { runFloor, withFloorTable } from "../bench/src/floor/floor.ts";
import { barChart, writeRun } from "../bench/src/output.ts";
import {
  benchEdge,
  benchGateway,
  proxyPlot,
  proxySummary,
  proxyTable,
} from "../bench/src/proxies/proxies.ts";
import { rampPlot, rampTable, runRamp, startGenerators } from "../bench/src/ramp/ramp.ts";
import { runTsung, tsungTable } from "../bench/src/tsung/tsung.ts";
import { runWire, WIRE_TRANSPORTS, wirePlot, wireTable } from "../bench/src/wire/wire.ts";
import { findFreePort } from "../cluster/launcher.ts";
import { nodeRuntime } from "../cluster/process.ts";

/**
 * Smoke-sized runs of every benchmark, so the scripts cannot rot: each must produce sane
 * figures and its JSON, plot and table. The full runs (docs/benchmarks.md) are not in CI.
 */
describe("benchmarks, smoke-sized", () => {
  it("ramp: every client joins, and the broadcast reaches every one, on both targets", async () => {
    const results = [];
    for (const target of ["gateway", "one-node"] as const) {
      const result = await runRamp({ target, ratePerSecond: 20, durationS: 2, generators: 2 });
      expect(result.attempted).toBe(40);
      expect(result.accepted).toBe(40);
      expect(result.errors).toBe(0);
      expect(result.broadcast.received).toBe(40);
      expect(result.broadcast.p99).toBeGreaterThan(0);
      expect(result.bytesReceived).toBeGreaterThan(result.bytesSent);
      results.push(result);
    }
    const dir = writeRun(
      "ramp-smoke",
      results,
      rampTable(results),
      rampPlot(results),
      tmpRun("ramp"),
    );
    expectFiles(dir, "gateway");
  }, 180_000);

  it("tsung: the thesis's Phoenix and Rails scenarios connect, join and are all held at once", async () => {
    const results = [];
    for (const scenario of ["phoenix", "cable"] as const) {
      const result = await runTsung({
        scenario,
        target: "gateway",
        ratePerSecond: 5,
        durationS: 2,
      });
      const { tsung } = result;
      expect(tsung.usersStarted, scenario).toBeGreaterThan(0); // Tsung's arrivals are random
      expect(tsung.websocketOk, scenario).toBe(tsung.usersStarted);
      expect(tsung.websocketFailed, scenario).toBe(0);
      expect(tsung.errors, scenario).toEqual({});
      expect(tsung.usersFinished, scenario).toBe(tsung.usersStarted);
      expect(result.peakServerSockets, scenario).toBe(tsung.usersStarted);
      expect(tsung.responseMs.count, scenario).toBeGreaterThanOrEqual(2 * tsung.usersStarted);
      expect(tsung.bytesReceived, scenario).toBeGreaterThan(0);
      results.push(result);
    }
    const bars = results.map((r) => ({ label: r.scenario, value: r.peakServerSockets }));
    const dir = writeRun(
      "tsung",
      results,
      tsungTable(results),
      barChart("held", "clients", bars),
      tmpRun("tsung"),
    );
    expectFiles(dir, "Rails");
  }, 180_000);

  it("cdn: Chromium loads the page over a long link; a warm edge answers every request from its cache", async () => {
    const result = await runPageLoads({ rttMs: 100, loads: 1 });
    const [direct, cold, warm] = result.setups;
    if (!direct || !cold || !warm) throw new Error("three setups expected");
    for (const s of result.setups) expect(s.requests, s.setup).toBeGreaterThanOrEqual(3); // HTML, JS, CSS
    // Straight to the origin, the page's first byte alone costs a handshake and a round trip.
    expect(direct.median).toBeGreaterThanOrEqual(2 * result.rttMs);
    expect(cold.offload?.requests).toBe(0);
    // Every request is answered from the cache. The page itself (max-age 5 s) may have gone
    // stale by then on a loaded machine: served stale, and revalidated behind the user's back.
    expect(warm.offload?.answered).toBe(warm.requests);
    expect(warm.offload?.fetched).toBeLessThanOrEqual(1);
    expect(warm.originBytes).toBeLessThan(cold.originBytes / 10);
    for (const { setup, milestones: m } of result.setups) {
      expect(m.html, setup).toBeLessThanOrEqual(m.lastByte);
      expect(m.parsed, setup).toBeLessThanOrEqual(m.domContentLoaded);
      expect(m.domContentLoaded, setup).toBeLessThanOrEqual(m.load);
      expect(m.lastByte, setup).toBeLessThanOrEqual(m.load);
    }
    // The network's share is what the edge shortens: its bytes come without the long link.
    expect(warm.milestones.lastByte).toBeLessThan(direct.milestones.lastByte - 2 * result.rttMs);
    const dir = writeRun("cdn", result, cdnTable(result), cdnPlot(result), tmpRun("cdn"));
    expectFiles(dir, "warm edge");
    expectFiles(dir, "DOMContentLoaded handled");
  }, 180_000);

  it("fanout: failed joins are counted with their reasons instead of ending the run", async () => {
    const port = await findFreePort(); // nothing listens there
    const workers = startGenerators(
      { target: "gateway", ratePerSecond: 20, durationS: 0.5, generators: 2 },
      `ws://127.0.0.1:${port}`,
    );
    try {
      const outcome = await settleJoins(workers, 10, 20, () => {});
      expect(outcome.joined).toBe(0);
      expect(outcome.failed).toBe(10);
      expect(outcome.reasons).toEqual({
        [`before joining: connect ECONNREFUSED 127.0.0.1:${port}`]: 10,
      });
    } finally {
      for (const worker of workers) worker.send({ type: "stop" });
    }
  });

  it("fanout: every subscriber gets every message, through the gateway and straight to the nodes", async () => {
    const results = [];
    for (const direct of [false, true]) {
      const result = await runFanout({
        nodes: 2,
        subscribers: 20,
        ratePerSecond: 20,
        messages: 10,
        generators: 2,
        joinRate: 400,
        direct,
      });
      expect(result.via).toBe(direct ? "direct" : "gateway");
      expect(result.joined).toBe(20);
      expect(result.failedJoins).toEqual({});
      expect(result.failedSends).toEqual({});
      expect(result.sent).toBe(10);
      expect(result.deliveries).toBe(200);
      expect(result.latencyMs.p99).toBeGreaterThan(0);
      expect(result.deliveredPerSecond).toBeGreaterThan(0);
      expect(Number.isFinite(result.bytesPerConnection.nodes)).toBe(true); // 20 sockets are within GC noise
      if (direct) expect(result.bytesPerConnection.gateway).toBe(0); // no gateway ran
      // The nodes and the generators worked while the messages went out; the gateway only
      // when it relayed them.
      expect(result.cpuSeconds.nodes).toBeGreaterThan(0);
      expect(result.cpuSeconds.generators).toBeGreaterThan(0);
      if (direct) expect(result.cpuSeconds.gateway).toBe(0);
      else expect(result.cpuSeconds.gateway).toBeGreaterThan(0);
      results.push(result);
    }
    const dir = writeRun(
      "fanout",
      results,
      fanoutTable(results),
      fanoutPlot(results),
      tmpRun("fanout"),
    );
    expectFiles(dir, "direct");
  }, 240_000);

  it("socketio: our node, Socket.IO with its Redis adapter and bare ws deliver everything, side by side", async () => {
    const options = { subscribers: 20, ratePerSecond: 20, messages: 10, generators: 2 };
    const results = [
      await runPeer("ours", options),
      await runPeer("socket.io", options),
      await runPeer("ws", options),
    ];
    for (const r of results) {
      expect(r.deliveries, r.server).toBe(200);
      expect(r.deliveriesPerCpuSecond, r.server).toBeGreaterThan(0);
      // All are Node servers: their heaps after a full GC, read through the inspector.
      expect(Number.isFinite(r.heapBytesPerConnection), r.server).toBe(true);
    }
    // The write floor: the same broadcasts with no server; the sink must get every byte.
    const floor = await runFloor(options);
    expect(floor.map((f) => f.deliveries)).toEqual([200, 200]);
    for (const f of floor) expect(f.deliveriesPerCpuSecond, f.mode).toBeGreaterThan(0);
    // Medians over rounds: with one round, ours against itself.
    expect(peerSummary(results)).toContain("| 1.00 (1.00–1.00) |");
    const table = withFloorTable(peerTable(results), floor, results);
    const dir = writeRun("socketio", results, table, peerPlot(results), tmpRun("socketio"));
    expectFiles(dir, "write(2) per connection");
  }, 180_000);

  it("heap: a census of what each server's heap holds per connection", async () => {
    const options = { subscribers: 20, generators: 2 };
    const results = [await runCensus("ours", options), await runCensus("ws", options)];
    for (const r of results) {
      expect(r.bytesPerConnection, r.server).toBeGreaterThan(1000);
      // Every server keeps a socket per connection, whatever else it keeps (give or take the
      // benchmark's own probes, closed or opened between the snapshots).
      const sockets = r.kinds.find((k) => k.kind === "Socket")?.perConnection;
      expect(sockets, r.server).toBeCloseTo(1, 0);
    }
    const table = censusTable(results);
    const dir = writeRun("heap", results, table, censusPlot(results), tmpRun("heap"));
    expectFiles(dir, "all live objects");
  }, 180_000);

  it("rails: our node's /cable and Rails's Action Cable both deliver everything, side by side", async () => {
    const options = { subscribers: 20, ratePerSecond: 20, messages: 10, generators: 2 };
    const results = [await runPeer("ours-cable", options), await runPeer("rails", options)];
    for (const r of results) {
      expect(r.deliveries, r.server).toBe(200);
      expect(r.deliveriesPerCpuSecond, r.server).toBeGreaterThan(0);
    }
    expect(results[1]?.heapBytesPerConnection).toBeUndefined(); // Ruby has no V8 heap to read
    const dir = writeRun("rails", results, peerTable(results), peerPlot(results), tmpRun("rails"));
    expectFiles(dir, "Rails Action Cable");
  }, 180_000);

  it("wire: every transport delivers each message to both clients; tcpdump counts the traffic", async () => {
    const figures = await runWire({ durationS: 3, intervalMs: 1000 });
    expect(figures.map((f) => f.transport)).toEqual([...WIRE_TRANSPORTS]);
    for (const f of figures) {
      expect(f.sent, f.transport).toBeGreaterThanOrEqual(4);
      expect(f.received, f.transport).toBe(2 * f.sent);
      expect(f.packets, f.transport).toBeGreaterThan(10);
    }
    const bytes = Object.fromEntries(figures.map((f) => [f.transport, f.bytes]));
    expect(bytes.WebSocket).toBeLessThan(bytes.polling ?? 0); // the thesis's finding holds
    const dir = writeRun("wire", figures, wireTable(figures), wirePlot(figures), tmpRun("wire"));
    expectFiles(dir, "WebSocket");
  }, 120_000);

  for (const [kind, run] of [
    ["gateway", benchGateway],
    ["edge", benchEdge],
  ] as const) {
    it(`${kind}: ours and every installed peer answer under load, side by side, round by round, each Node server on a second runtime too`, async () => {
      // A second runtime as --also-node gives one; this machine's own binary stands in for it.
      const otherRuntimes = [nodeRuntime(process.execPath)];
      const options = { durationS: 1, connections: 4, rounds: 2, otherRuntimes };
      const result = await run(options, () => {});
      const servers = [...new Set(result.runs.map((r) => r.server))];
      const ours = `${kind} (ours)`;
      expect(servers).toContain(ours);
      expect(servers).toContain(`${ours} on Node ${process.version}`);
      // gateway: direct, ours, bare http-proxy-3, the bare node:http proxy (each of those three
      // twice), HAProxy; edge: ours (twice), nginx, Varnish
      expect(servers.length).toBe(kind === "gateway" ? 8 : 4);
      expect(result.runs.map((r) => r.round).filter((round) => round === 2)).toHaveLength(
        servers.length,
      );
      for (const r of result.runs) {
        expect(r.requestsPerSecond, r.server).toBeGreaterThan(0);
        expect(r.errors, r.server).toBe(0);
      }
      const summary = proxySummary(result);
      for (const server of servers) expect(summary).toContain(`| ${server} | 2 |`);
      // Every ratio is taken against ours on the benchmark's own runtime.
      const oursRow = summary.split("\n").find((line) => line.startsWith(`| ${ours} | 2 |`));
      expect(oursRow).toContain("| 1.00 (1.00–1.00) |");
      const dir = writeRun(
        kind,
        result,
        `${summary}\n\n${proxyTable(result)}`,
        proxyPlot(result),
        tmpRun(kind),
      );
      expectFiles(dir, "ours");
    }, 180_000);
  }
});

/** Each smoke run writes under one temporary folder, removed at the end. */
const smokeRoot = mkdtempSync(join(tmpdir(), "chat-bench-smoke-"));
afterAll(() => rmSync(smokeRoot, { recursive: true, force: true }));
const tmpRun = (name: string) => join(smokeRoot, name);

function expectFiles(dir: string, mention: string) {
  for (const file of ["result.json", "plot.svg", "table.md"])
    expect(existsSync(join(dir, file))).toBe(true);
  expect(readFileSync(join(dir, "table.md"), "utf8")).toContain(mention);
  expect(readFileSync(join(dir, "plot.svg"), "utf8")).toContain("<svg");
}
