import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ManagedProcess } from "./process.ts";

/** Scrape jobs the local Prometheus reads from files (file_sd), as Compose reads them from DNS. */
export type ScrapeJob = "node" | "gateway" | "edge";

export interface PrometheusSetup {
  repoRoot: string;
  dataDir: string;
  logDir: string;
  port: number;
  /** Overrides the committed scrape and evaluation interval (tests scrape every second). */
  scrapeInterval?: string;
}

export const prometheusInstalled = () =>
  spawnSync("sh", ["-c", "command -v prometheus"]).status === 0;

/**
 * Prometheus for the local cluster: the committed config (observability/prometheus/
 * prometheus.local.yml) and alert rules, copied beside the target files the launcher
 * rewrites whenever a node, the gateway or the edge comes or goes.
 */
export class LocalPrometheus {
  readonly url: string;
  readonly #dir: string;
  readonly #process: ManagedProcess;

  constructor(setup: PrometheusSetup) {
    this.url = `http://127.0.0.1:${setup.port}`;
    this.#dir = join(setup.dataDir, "prometheus");
    const source = join(setup.repoRoot, "observability", "prometheus");
    mkdirSync(join(this.#dir, "targets"), { recursive: true });
    cpSync(join(source, "rules"), join(this.#dir, "rules"), { recursive: true });
    let config = readFileSync(join(source, "prometheus.local.yml"), "utf8");
    if (setup.scrapeInterval)
      config = config.replace(
        /(scrape|evaluation)_interval: \S+/g,
        `$1_interval: ${setup.scrapeInterval}`,
      );
    writeFileSync(join(this.#dir, "prometheus.yml"), config);
    for (const job of ["node", "gateway", "edge"] as const) this.setTargets(job, []);
    this.#process = new ManagedProcess({
      name: "prometheus",
      command: "prometheus",
      args: [
        `--config.file=${join(this.#dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(this.#dir, "data")}`,
        `--web.listen-address=127.0.0.1:${setup.port}`,
        "--storage.tsdb.retention.time=2d",
      ],
      output: { file: join(setup.logDir, "prometheus.log") },
    });
  }

  async start(): Promise<void> {
    this.#process.start();
    await this.#process.waitUntil(
      "ready",
      async () => (await fetch(`${this.url}/-/ready`)).ok,
      60_000,
    );
  }

  /** Rewrites one job's target file atomically; Prometheus notices the change by itself. */
  setTargets(job: ScrapeJob, addresses: string[]): void {
    const file = join(this.#dir, "targets", `${job}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify([{ targets: addresses, labels: {} }], null, 2));
    renameSync(`${file}.tmp`, file);
  }

  async stop(): Promise<void> {
    await this.#process.stop("SIGTERM", 5000);
  }
}
