import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ManagedProcess, RUN_TYPESCRIPT } from "./process.ts";

/**
 * The gateway process (gateway/src/main.ts). It reads its upstreams from a file the
 * launcher rewrites whenever nodes come or go, as DNS does under compose.
 */
export class GatewayProcess {
  readonly url: string;
  readonly #process: ManagedProcess;
  readonly #upstreamsFile: string;

  constructor(options: {
    repoRoot: string;
    port: number;
    adminPort: number;
    dataDir: string;
    logDir: string;
    output: "inherit" | "pipe-to-file";
    workers?: number;
    env?: Record<string, string>;
  }) {
    this.url = `http://127.0.0.1:${options.port}`;
    this.#upstreamsFile = join(options.dataDir, "upstreams.txt");
    this.#process = new ManagedProcess({
      name: "gateway",
      command: process.execPath,
      args: [...RUN_TYPESCRIPT, "gateway/src/main.ts"],
      cwd: options.repoRoot,
      env: {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: String(options.port),
        ADMIN_PORT: String(options.adminPort),
        GATEWAY_ID: "gateway-0",
        UPSTREAMS_FILE: this.#upstreamsFile,
        ...(options.workers ? { GATEWAY_WORKERS: String(options.workers) } : {}),
        ...options.env,
      },
      output:
        options.output === "inherit" ? "inherit" : { file: join(options.logDir, "gateway.log") },
    });
  }

  setUpstreams(addresses: string[]): void {
    writeFileSync(this.#upstreamsFile, `${addresses.join("\n")}\n`);
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  async start(): Promise<void> {
    this.#process.start();
    await this.#process.waitUntil(
      "answering",
      async () => (await fetch(`${this.url}/.gateway/healthz`)).ok,
    );
  }

  stop(): Promise<void> {
    return this.#process.stop("SIGTERM", 12_000);
  }
}
