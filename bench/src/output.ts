import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../cluster/launcher.ts";

export interface Series {
  name: string;
  points: Array<[number, number]>;
  /** Drawn dashed, to tell a second group of series apart. */
  dashed?: boolean;
}

/** Writes result.json, plot.svg and table.md for one run; returns the folder. */
/** bench-results/<name>-<timestamp>: where a run's files go. */
export function runDir(name: string): string {
  return join(
    REPO_ROOT,
    "bench-results",
    `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}`,
  );
}

export function writeRun(
  name: string,
  result: unknown,
  table: string,
  svg: string,
  dir = runDir(name),
): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(dir, "plot.svg"), svg);
  writeFileSync(join(dir, "table.md"), `${table}\n`);
  return dir;
}

/** A markdown table from a header row and rows of cells. */
export function markdownTable(header: string[], rows: Array<Array<string | number>>): string {
  const cell = (value: string | number) => (Number.isNaN(value) ? "—" : value);
  const line = (cells: Array<string | number>) => `| ${cells.map(cell).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#64748b"];
export const escapeXml = (text: string) =>
  text.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c,
  );

/** A plain line chart: one polyline per series, axes labelled with their maxima. */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[]): string {
  const width = 800;
  const height = 360;
  const pad = { left: 70, right: 220, top: 40, bottom: 40 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const all = series.flatMap((s) => s.points);
  const maxX = Math.max(1, ...all.map(([x]) => x));
  const maxY = Math.max(1, ...all.map(([, y]) => y));
  const x = (v: number) => (pad.left + (v / maxX) * plotW).toFixed(1);
  const y = (v: number) => (pad.top + plotH - (v / maxY) * plotH).toFixed(1);
  const lines = series.map((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const points = s.points.map(([px, py]) => `${x(px)},${y(py)}`).join(" ");
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : "";
    return `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points}"/>
<text x="${width - pad.right + 10}" y="${pad.top + 16 * (i + 1)}" fill="${color}">${escapeXml(s.name)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img">
<title>${escapeXml(title)}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="${pad.left}" y="22" font-size="15">${escapeXml(title)}</text>
<line x1="${pad.left}" y1="${pad.top + plotH}" x2="${pad.left + plotW}" y2="${pad.top + plotH}" stroke="#94a3b8"/>
<line x1="${pad.left}" y1="${pad.top}" x2="${pad.left}" y2="${pad.top + plotH}" stroke="#94a3b8"/>
<text x="${pad.left - 8}" y="${pad.top + 4}" text-anchor="end">${maxY.toLocaleString("en")}</text>
<text x="${pad.left - 8}" y="${pad.top + plotH}" text-anchor="end">0</text>
<text x="${pad.left + plotW}" y="${pad.top + plotH + 16}" text-anchor="end">${maxX.toLocaleString("en")}</text>
<text x="${pad.left + plotW / 2}" y="${height - 6}" text-anchor="middle">${escapeXml(xLabel)}</text>
<text x="14" y="${pad.top + plotH / 2}" transform="rotate(-90 14 ${pad.top + plotH / 2})" text-anchor="middle">${escapeXml(yLabel)}</text>
${lines.join("\n")}
</svg>
`;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** A ratio's median with its range, "1.67 (1.37–1.86)"; "—" when there are none. */
export function medianAndRange(values: number[]): string {
  if (values.length === 0) return "—";
  const fixed = (n: number) => n.toFixed(2);
  return `${fixed(median(values))} (${fixed(Math.min(...values))}–${fixed(Math.max(...values))})`;
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** CPU seconds a process and its live children (gateway workers) have used, from /proc. */
export function cpuSeconds(pid: number): number {
  const ticks = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      return 0; // the process is gone
    }
  };
  const children = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean)
    .map(Number);
  return [pid, ...children].reduce((sum, p) => sum + ticks(p), 0) / 100;
}

/** Horizontal bars, one per label, for side-by-side figures of peers in one run. */
export function barChart(
  title: string,
  unit: string,
  bars: Array<{ label: string; value: number }>,
): string {
  const width = 800;
  const rowH = 34;
  const pad = { left: 200, right: 120, top: 40 };
  const height = pad.top + bars.length * rowH + 20;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const rows = bars.map((b, i) => {
    const y = pad.top + i * rowH;
    const w = ((width - pad.left - pad.right) * b.value) / max;
    return `<text x="${pad.left - 10}" y="${y + 20}" text-anchor="end">${escapeXml(b.label)}</text>
<rect x="${pad.left}" y="${y + 6}" width="${w.toFixed(1)}" height="20" fill="${PALETTE[i % PALETTE.length]}"/>
<text x="${(pad.left + w + 8).toFixed(1)}" y="${y + 20}">${b.value.toLocaleString("en")} ${escapeXml(unit)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img">
<title>${escapeXml(title)}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="24" font-size="15">${escapeXml(title)}</text>
${rows.join("\n")}
</svg>
`;
}
