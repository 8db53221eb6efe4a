import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DrillResult, TimelineSample } from "./verify.ts";

/** Writes result.json and report.html (summary, per-transport table, timeline) into `dir`. */
export function writeReport(result: DrillResult, dir: string): { json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "result.json");
  const html = join(dir, "report.html");
  writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(html, renderHtml(result));
  return { json, html };
}

/** The summary printed at the end of a run. */
export function summary(result: DrillResult): string {
  const t = result.totals;
  const a = result.availability;
  const r = result.reconnectMs;
  const d = result.deliveryMs;
  const verdict = result.passed ? "PASSED" : "FAILED";
  return [
    `drill ${result.scenario} on ${result.target}: ${verdict} (${(result.durationMs / 1000).toFixed(1)} s)`,
    `  ${t.clients} clients, ${t.stored} messages stored`,
    `  lost ${t.lost}  doubled ${t.doubled}  out of order ${t.outOfOrder}  mismatched ${t.mismatched}`,
    `  failed sends ${t.failedSends}  acknowledged but not stored ${t.acknowledgedNotStored}`,
    `  send attempts ${t.sendAttempts}, failed ${t.failedSendAttempts} (error rate ${(t.errorRate * 100).toFixed(2)} %); client errors ${t.clientErrors}`,
    `  reconnects ${r.count}: p50 ${r.p50} ms  p90 ${r.p90} ms  p99 ${r.p99} ms  max ${r.max} ms`,
    `  send to receive: p50 ${d.p50} ms  p90 ${d.p90} ms  p99 ${d.p99} ms  max ${d.max} ms (${d.count} deliveries)`,
    `  availability ${(a.value * 100).toFixed(3)} %  (MTBF ${a.mtbfS ?? "∞"} s, MTTR ${a.mttrS ?? 0} s, ${a.failures} failures)`,
    ...failedSendLines(result),
  ].join("\n");
}

/** Where sends were given up on, and the errors most attempts met: why a drill failed. */
function failedSendLines(result: DrillResult): string[] {
  if (result.totals.failedSendAttempts === 0) return [];
  const given = Object.entries(result.byTransport)
    .filter(([, c]) => c.failedSends > 0)
    .map(([transport, c]) => `${transport} ${c.failedSends}`);
  return [
    ...(given.length ? [`  failed sends by transport: ${given.join(", ")}`] : []),
    "  most frequent send errors:",
    ...result.sendErrors.slice(0, 5).map((e) => `    ${e.attempts} × ${e.error}`),
  ];
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c,
  );

function renderHtml(result: DrillResult): string {
  const rows = Object.entries(result.byTransport)
    .map(
      ([transport, c]) =>
        `<tr><td>${escapeHtml(transport)}</td><td>${c.expected}</td><td>${c.received}</td><td>${c.lost}</td><td>${c.doubled}</td><td>${c.outOfOrder}</td><td>${c.failures}</td><td>${c.failedSends}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drill ${escapeHtml(result.scenario)}: ${result.passed ? "passed" : "FAILED"}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#1d2430;padding:0 1rem}
h1{font-size:1.4rem}.pass{color:#17803d}.fail{color:#b42318}
table{border-collapse:collapse;margin:1rem 0}td,th{border-bottom:1px solid #dde2ea;padding:.3rem .8rem;text-align:right}
th:first-child,td:first-child{text-align:left}pre{background:#f4f6fa;padding:1rem;overflow:auto}
svg text{font:11px system-ui,sans-serif;fill:#4a5568}
</style></head><body>
<h1>Drill <code>${escapeHtml(result.scenario)}</code> on ${escapeHtml(result.target)}: <span class="${result.passed ? "pass" : "fail"}">${result.passed ? "passed" : "FAILED"}</span></h1>
<p>${escapeHtml(result.description)}</p>
<pre>${escapeHtml(summary(result))}</pre>
<h2>Timeline</h2>
${timelineSvg(result.timeline, result.events)}
<h2>By transport</h2>
<table><tr><th>transport</th><th>expected</th><th>received</th><th>lost</th><th>doubled</th><th>out of order</th><th>drops</th><th>failed sends</th></tr>
${rows}</table>
<h2>Failed send attempts</h2>
<table><tr><th>transport: error</th><th>attempts</th></tr>
${result.sendErrors.map((e) => `<tr><td>${escapeHtml(e.error)}</td><td>${e.attempts}</td></tr>`).join("\n")}</table>
<h2>Events</h2>
<table><tr><th>at</th><th>event</th></tr>
${result.events.map((e) => `<tr><td>${(e.atMs / 1000).toFixed(1)} s</td><td style="text-align:left">${escapeHtml(e.label)}</td></tr>`).join("\n")}</table>
</body></html>
`;
}

const PALETTE = [
  "#2563eb",
  "#16a34a",
  "#d97706",
  "#9333ea",
  "#0891b2",
  "#db2777",
  "#65a30d",
  "#64748b",
];

/** Connections per node (lines), errors and reconnects per second (bars), events (markers). */
function timelineSvg(
  samples: TimelineSample[],
  events: Array<{ atMs: number; label: string }>,
): string {
  if (samples.length < 2) return "<p>(run too short for a timeline)</p>";
  const width = 960;
  const height = 300;
  const pad = { left: 40, right: 150, top: 10, bottom: 90 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const endMs = samples.at(-1)?.atMs ?? 1;
  const x = (ms: number) => pad.left + (ms / endMs) * plotW;
  const nodes = [...new Set(samples.flatMap((s) => Object.keys(s.byNode)))].sort();
  const maxConn = Math.max(1, ...samples.map((s) => Math.max(0, ...Object.values(s.byNode))));
  const y = (n: number) => pad.top + plotH - (n / maxConn) * plotH;
  const lines = nodes.map((node, i) => {
    const points = samples.map(
      (s) => `${x(s.atMs).toFixed(1)},${y(s.byNode[node] ?? 0).toFixed(1)}`,
    );
    const color = PALETTE[i % PALETTE.length];
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(" ")}"/>
<text x="${width - pad.right + 8}" y="${pad.top + 14 * (i + 1)}" style="fill:${color}">${escapeHtml(node)}</text>`;
  });
  const barsTop = height - pad.bottom + 20;
  const deltas = samples.slice(1).map((s, i) => ({
    atMs: s.atMs,
    errors: s.failedAttempts - (samples[i]?.failedAttempts ?? 0),
    reconnects: s.reconnects - (samples[i]?.reconnects ?? 0),
  }));
  const maxBar = Math.max(1, ...deltas.map((d) => Math.max(d.errors, d.reconnects)));
  const barH = (n: number) => (n / maxBar) * 50;
  const bars = deltas.map(
    (d) =>
      `<rect x="${x(d.atMs) - 3}" y="${barsTop + 50 - barH(d.errors)}" width="3" height="${barH(d.errors)}" fill="#b42318"/>` +
      `<rect x="${x(d.atMs)}" y="${barsTop + 50 - barH(d.reconnects)}" width="3" height="${barH(d.reconnects)}" fill="#d97706"/>`,
  );
  const markers = events.map(
    (e) =>
      `<line x1="${x(e.atMs)}" x2="${x(e.atMs)}" y1="${pad.top}" y2="${barsTop + 50}" stroke="#94a3b8" stroke-dasharray="3 3"><title>${escapeHtml(e.label)}</title></line>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="connections per node, errors and reconnects over time">
<line x1="${pad.left}" x2="${pad.left + plotW}" y1="${pad.top + plotH}" y2="${pad.top + plotH}" stroke="#cbd5e1"/>
<text x="4" y="${pad.top + 10}">${maxConn}</text><text x="4" y="${pad.top + plotH}">0</text>
<text x="${pad.left}" y="${pad.top + plotH + 14}">connections per node</text>
${markers.join("\n")}
${lines.join("\n")}
${bars.join("\n")}
<text x="${width - pad.right + 8}" y="${barsTop + 20}" style="fill:#b42318">errors/s</text>
<text x="${width - pad.right + 8}" y="${barsTop + 36}" style="fill:#d97706">reconnects/s</text>
<text x="${pad.left}" y="${height - 4}">0 s</text><text x="${pad.left + plotW - 30}" y="${height - 4}">${(endMs / 1000).toFixed(0)} s</text>
</svg>`;
}
