import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where stdout and stderr go: a log file, or this process's own terminal. */
  output: { file: string } | "inherit";
  /** Run as this user (Postgres refuses to run as root). setpriv execs, so the pid is the server's. */
  runAs?: string;
}

/**
 * Node arguments that run a TypeScript entry point as production does. Node ≥ 22.18 strips
 * types itself (the Docker image); on Node 20, ts-blank-space does the same: types become
 * whitespace and nothing else changes. tsx is not used for servers: its esbuild keeps
 * function names with a defineProperty on every closure, which costs 256 bytes per closure
 * and made each connection look ~1.3 KB heavier than in production.
 */
const TS_BLANK_SPACE: readonly string[] = ["--import", "ts-blank-space/register"];

export const RUN_TYPESCRIPT: readonly string[] = (process.features as { typescript?: unknown })
  .typescript
  ? []
  : TS_BLANK_SPACE;

/** A Node.js binary to run servers on, with the arguments that make it run TypeScript. */
export interface NodeRuntime {
  command: string;
  /** "v24.22.3" */
  version: string;
  typeScriptArgs: readonly string[];
}

/** The Node.js this process runs on. */
export const CURRENT_RUNTIME: NodeRuntime = {
  command: process.execPath,
  version: process.version,
  typeScriptArgs: RUN_TYPESCRIPT,
};

/** Another Node.js binary (a benchmark comparing runtimes): asks it its version and whether it strips types. */
export function nodeRuntime(command: string): NodeRuntime {
  const [version = "", strips = ""] = execFileSync(
    command,
    ["-p", "process.version + ' ' + Boolean(process.features.typescript)"],
    { encoding: "utf8" },
  )
    .trim()
    .split(" ");
  return {
    command,
    version,
    typeScriptArgs: strips === "true" ? [] : TS_BLANK_SPACE,
  };
}

const live = new Set<ManagedProcess>();
// A test runner or launcher that dies must not leave servers behind.
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** A child process the launcher owns: started, signalled and awaited by name, logging to a file. */
export class ManagedProcess {
  readonly spec: ProcessSpec;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  constructor(spec: ProcessSpec) {
    this.spec = spec;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): void {
    if (this.#child) return;
    const { command, args, runAs } = this.spec;
    const [file, argv] = runAs
      ? ["setpriv", [`--reuid=${runAs}`, `--regid=${runAs}`, "--init-groups", command, ...args]]
      : [command, args];
    const inherit = this.spec.output === "inherit";
    const child = spawn(file, argv, {
      cwd: this.spec.cwd,
      env: this.spec.env ?? process.env,
      stdio: inherit ? "inherit" : ["ignore", "pipe", "pipe"],
    });
    if (this.spec.output !== "inherit") {
      const log = createWriteStream(this.spec.output.file, { flags: "a" });
      child.stdout?.pipe(log);
      child.stderr?.pipe(log);
    }
    this.#child = child;
    live.add(this);
    this.#exited = new Promise((resolve) => {
      const done = () => {
        if (this.#child === child) this.#child = undefined;
        live.delete(this);
        resolve();
      };
      child.once("exit", done);
      child.once("error", done);
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.#child?.kill(signal);
  }

  /** Signals the process and waits for it to exit; SIGKILL after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<void> {
    if (!this.#child) return;
    this.kill(signal);
    const timer = setTimeout(() => this.kill("SIGKILL"), timeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** The end of the log, for error messages. */
  logTail(lines = 20): string {
    if (this.spec.output === "inherit") return "";
    try {
      return readFileSync(this.spec.output.file, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Polls `check` until it holds, failing with the log's tail if the process dies or time runs out. */
  async waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.#child) break;
      if (await check().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reason = this.#child ? `not ${what} after ${timeoutMs} ms` : "exited";
    const where = this.spec.output === "inherit" ? "" : ` (log: ${this.spec.output.file})`;
    throw new Error(`${this.spec.name} ${reason}${where}\n${this.logTail()}`);
  }
}
