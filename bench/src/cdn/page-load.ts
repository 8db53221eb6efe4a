import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { launchChromium } from "../../../cluster/chromium.ts";
import { startEdge } from "../../../cluster/edge.ts";
import { type Cluster, findFreePort, REPO_ROOT, startCluster } from "../../../cluster/launcher.ts";
import { barChart, markdownTable, percentile } from "../output.ts";
import { type DelayLink, startDelayLink } from "./delay-link.ts";

/** The CDN thesis's three cases: the far user straight to the origin, via a cold and a warm edge. */
export type PageSetup = "no edge" | "cold edge" | "warm edge";

export interface PageLoadSummary {
  setup: PageSetup;
  /** Navigation start to the load event (HTML and every asset), one per fresh browser context. */
  loadMs: number[];
  median: number;
  /** Navigation start to the last byte of the HTML and every asset: the network's share. */
  lastByteMs: number[];
  lastByteMedian: number;
  /** Where the median load's time went: the network's milestones, then the browser's. */
  milestones: Milestones;
  /** Requests the page made for itself (HTML and assets) and their bytes on the wire. */
  requests: number;
  transferBytes: number;
  /** What crossed the long haul to the origin during these loads. */
  originConnections: number;
  originBytes: number;
  /** Share of the edge's cacheable requests and body bytes it answered without the origin. */
  offload?: Offload;
}

/** Medians, in ms after navigation start. */
export interface Milestones {
  /** The HTML's last byte. */
  html: number;
  /** The last byte of the HTML and every asset. */
  lastByte: number;
  /** The document parsed (DOM interactive). */
  parsed: number;
  /** DOMContentLoaded handled: the page's script has run. */
  domContentLoaded: number;
  /** The load event handled. */
  load: number;
}

/** One load, as the page's Navigation and Resource Timing tell it. */
interface PageTiming {
  milestones: Milestones;
  requests: number;
  bytes: number;
}

/** Shares answered by the edge alone, and the counts behind them. */
export interface Offload {
  requests: number;
  bytes: number;
  answered: number;
  fetched: number;
}

export interface CdnResult {
  rttMs: number;
  loads: number;
  setups: PageLoadSummary[];
  /** Median no-edge ÷ median warm-edge: full load, and last byte of the page. */
  warmSpeedup: number;
  warmSpeedupLastByte: number;
}

/**
 * Full page loads of the web client in Chromium for a user `rttMs` from the origin: straight
 * to the origin, through an edge near the user that starts cold (a fresh edge per load), and
 * through the same edge warm. Each load uses a new browser context, so nothing comes from the
 * browser's own cache.
 */
export async function runPageLoads(options: {
  rttMs: number;
  loads: number;
  say?: (line: string) => void;
}): Promise<CdnResult> {
  const say = options.say ?? (() => {});
  const dataDir = await mkdtemp(join(tmpdir(), "chat-cdn-"));
  const cluster = await startCluster({
    dataDir,
    ports: "auto",
    nodes: 2,
    gateway: { workers: 1 },
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    nodeEnv: { LOG_LEVEL: "warn" },
  });
  const gateway = new URL(cluster.gatewayUrl ?? cluster.nodeUrl(0));
  const link = await startDelayLink(
    { host: gateway.hostname, port: Number(gateway.port) },
    options.rttMs,
  );
  const browser = await launchChromium();
  try {
    // One load straight from the gateway first, so no setup pays for the browser's own start.
    await measure("warm-up", cluster.gatewayUrl ?? cluster.nodeUrl(0), link, browser, 1, () => {});
    const direct = await measure(
      "no edge",
      `http://127.0.0.1:${link.port}/`,
      link,
      browser,
      options.loads,
      say,
    );
    const cold = await coldEdgeLoads(cluster, link, browser, options.loads, say);
    const warm = await warmEdgeLoads(cluster, link, browser, options.loads, say);
    return {
      rttMs: options.rttMs,
      loads: options.loads,
      setups: [direct, cold, warm],
      warmSpeedup: Math.round((direct.median / warm.median) * 10) / 10,
      warmSpeedupLastByte: Math.round((direct.lastByteMedian / warm.lastByteMedian) * 10) / 10,
    };
  } finally {
    await browser.close();
    await link.close();
    await cluster.stop();
  }
}

/** A fresh edge for each load: every asset is a miss fetched across the long haul. */
async function coldEdgeLoads(
  cluster: Cluster,
  link: DelayLink,
  browser: Browser,
  loads: number,
  say: (line: string) => void,
): Promise<PageLoadSummary> {
  const runs: PageLoadSummary[] = [];
  for (let i = 0; i < loads; i++)
    runs.push(
      await withNearEdge(cluster, link, (edge) =>
        measure("cold edge", edge.url, link, browser, 1, say, edge),
      ),
    );
  return merge("cold edge", runs);
}

async function warmEdgeLoads(
  cluster: Cluster,
  link: DelayLink,
  browser: Browser,
  loads: number,
  say: (line: string) => void,
): Promise<PageLoadSummary> {
  return withNearEdge(cluster, link, async (edge) => {
    await measure("warm-up", edge.url, link, browser, 1, () => {});
    return measure("warm edge", edge.url, link, browser, loads, say, edge);
  });
}

/** An edge started for the far user: where pages load from, and where its metrics are. */
interface NearEdge {
  url: string;
  admin: string;
}

/** Runs `use` against an edge next to the user, whose origin is across the long-haul link. */
async function withNearEdge<T>(
  cluster: Cluster,
  link: DelayLink,
  use: (edge: NearEdge) => Promise<T>,
): Promise<T> {
  const [port, adminPort] = await Promise.all([findFreePort(), findFreePort()]);
  const edge = await startEdge({
    repoRoot: REPO_ROOT,
    port,
    adminPort,
    originUrl: `http://127.0.0.1:${link.port}`,
    logDir: cluster.dataDir,
    output: "pipe-to-file",
    env: { LOG_LEVEL: "warn" },
  });
  try {
    return await use({ url: `http://127.0.0.1:${port}/`, admin: `http://127.0.0.1:${adminPort}` });
  } finally {
    await edge.stop();
  }
}

async function measure(
  setup: PageSetup | "warm-up",
  url: string,
  link: DelayLink,
  browser: Browser,
  loads: number,
  say: (line: string) => void,
  edge?: NearEdge,
): Promise<PageLoadSummary> {
  const before = {
    connections: link.connections,
    bytes: link.bytesDown,
    edge: edge ? await edgeCounters(edge) : undefined,
  };
  const timings: PageTiming[] = [];
  let requests = 0;
  let transferBytes = 0;
  for (let i = 0; i < loads; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url, { waitUntil: "load" });
    const timing = (await page.evaluate(PAGE_TIMING)) as PageTiming;
    await context.close();
    timings.push(timing);
    requests = timing.requests;
    transferBytes = timing.bytes;
    const m = timing.milestones;
    if (setup !== "warm-up")
      say(
        `  ${setup}: page loaded in ${m.load} ms (last byte ${m.lastByte} ms, DOMContentLoaded ${m.domContentLoaded} ms)`,
      );
  }
  const after = edge ? await edgeCounters(edge) : undefined;
  const loadMs = timings.map((t) => t.milestones.load);
  const lastByteMs = timings.map((t) => t.milestones.lastByte);
  const summary: PageLoadSummary = {
    setup: setup === "warm-up" ? "warm edge" : setup,
    loadMs,
    median: median(loadMs),
    lastByteMs,
    lastByteMedian: median(lastByteMs),
    milestones: medianMilestones(timings.map((t) => t.milestones)),
    requests,
    transferBytes,
    originConnections: link.connections - before.connections,
    originBytes: link.bytesDown - before.bytes,
  };
  if (before.edge && after) summary.offload = offload(before.edge, after);
  return summary;
}

/** Run in the page (as a string: the bench is type-checked without the DOM's types). */
const PAGE_TIMING = `(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const assets = performance
    .getEntriesByType("resource")
    .filter((r) => new URL(r.name).pathname.startsWith("/assets/"));
  const since = (t) => Math.round(t - nav.startTime);
  return {
    milestones: {
      html: since(nav.responseEnd),
      lastByte: since(Math.max(nav.responseEnd, ...assets.map((r) => r.responseEnd))),
      parsed: since(nav.domInteractive),
      domContentLoaded: since(nav.domContentLoadedEventEnd),
      load: since(nav.loadEventEnd),
    },
    requests: 1 + assets.length,
    bytes: nav.transferSize + assets.reduce((t, r) => t + r.transferSize, 0),
  };
})()`;

function medianMilestones(loads: Milestones[]): Milestones {
  const of = (key: keyof Milestones) => median(loads.map((m) => m[key]));
  return {
    html: of("html"),
    lastByte: of("lastByte"),
    parsed: of("parsed"),
    domContentLoaded: of("domContentLoaded"),
    load: of("load"),
  };
}

type EdgeCounters = Record<
  "hits" | "stale" | "misses" | "revalidations" | "fromCache" | "fromOrigin",
  number
>;

/** The edge's own counters of cacheable requests and body bytes (its admin port's /metrics). */
async function edgeCounters(edge: NearEdge): Promise<EdgeCounters> {
  const text = await (await fetch(`${edge.admin}/metrics`)).text();
  const total = (name: string) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(name))
      .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
  return {
    hits: total("edge_cache_hits_total"),
    stale: total("edge_cache_stale_served_total"),
    misses: total("edge_cache_misses_total"),
    revalidations: total("edge_cache_revalidations_total"),
    fromCache: total("edge_bytes_served_from_cache_total"),
    fromOrigin: total("edge_bytes_fetched_from_origin_total"),
  };
}

function offload(before: EdgeCounters, after: EdgeCounters): Offload {
  const d = (key: keyof EdgeCounters) => after[key] - before[key];
  const answered = d("hits") + d("stale");
  const fetched = d("misses") + d("revalidations");
  const share = (part: number, whole: number) =>
    whole > 0 ? Math.round((part / whole) * 1000) / 1000 : 0;
  return {
    requests: share(answered, answered + fetched),
    bytes: share(d("fromCache"), d("fromCache") + d("fromOrigin")),
    answered,
    fetched,
  };
}

const median = (values: number[]) =>
  percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );

function merge(setup: PageSetup, runs: PageLoadSummary[]): PageLoadSummary {
  const loadMs = runs.flatMap((r) => r.loadMs);
  const lastByteMs = runs.flatMap((r) => r.lastByteMs);
  const sumOf = (pick: (r: PageLoadSummary) => number) => runs.reduce((t, r) => t + pick(r), 0);
  const offloads = runs.flatMap((r) => (r.offload ? [r.offload] : []));
  const mean = (pick: (o: Offload) => number) =>
    Math.round((offloads.reduce((t, o) => t + pick(o), 0) / Math.max(1, offloads.length)) * 1000) /
    1000;
  return {
    setup,
    loadMs,
    median: median(loadMs),
    lastByteMs,
    lastByteMedian: median(lastByteMs),
    milestones: medianMilestones(runs.map((r) => r.milestones)),
    requests: runs[0]?.requests ?? 0,
    transferBytes: runs[0]?.transferBytes ?? 0,
    originConnections: sumOf((r) => r.originConnections),
    originBytes: sumOf((r) => r.originBytes),
    offload: {
      requests: mean((o) => o.requests),
      bytes: mean((o) => o.bytes),
      answered: offloads.reduce((t, o) => t + o.answered, 0),
      fetched: offloads.reduce((t, o) => t + o.fetched, 0),
    },
  };
}

export function cdnTable(result: CdnResult): string {
  return `${loadTable(result)}\n\nWhere a load's time goes (medians, ms after navigation start):\n\n${milestoneTable(result)}`;
}

function loadTable(result: CdnResult): string {
  const noEdge = result.setups[0]?.median ?? Number.NaN;
  const noEdgeLastByte = result.setups[0]?.lastByteMedian ?? Number.NaN;
  return markdownTable(
    [
      "setup",
      `RTT to origin ms`,
      "loads",
      "page load median ms",
      "min / max ms",
      "no edge ÷ this",
      "last byte median ms",
      "no edge ÷ this (last byte)",
      "page requests",
      "bytes to the browser",
      "connections to origin",
      "bytes from origin",
      "edge offload (requests / bytes)",
    ],
    result.setups.map((s) => [
      s.setup,
      result.rttMs,
      s.loadMs.length,
      s.median,
      `${Math.min(...s.loadMs)} / ${Math.max(...s.loadMs)}`,
      (noEdge / s.median).toFixed(1),
      s.lastByteMedian,
      (noEdgeLastByte / s.lastByteMedian).toFixed(1),
      s.requests,
      s.transferBytes.toLocaleString("en"),
      s.originConnections,
      s.originBytes.toLocaleString("en"),
      s.offload
        ? `${(s.offload.requests * 100).toFixed(0)} % / ${(s.offload.bytes * 100).toFixed(0)} %`
        : "—",
    ]),
  );
}

/** The network's milestones, then the browser's: what an edge can shorten and what it cannot. */
function milestoneTable(result: CdnResult): string {
  return markdownTable(
    [
      "setup",
      "HTML's last byte",
      "every asset's last byte",
      "document parsed",
      "DOMContentLoaded handled",
      "load event handled",
      "browser after the last byte",
    ],
    result.setups.map(({ setup, milestones: m }) => [
      setup,
      m.html,
      m.lastByte,
      m.parsed,
      m.domContentLoaded,
      m.load,
      m.load - m.lastByte,
    ]),
  );
}

export function cdnPlot(result: CdnResult): string {
  return barChart(
    `Full page load, user ${result.rttMs} ms from the origin (median)`,
    "ms",
    result.setups.map((s) => ({ label: s.setup, value: s.median })),
  );
}
