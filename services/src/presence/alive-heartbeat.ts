import { Worker, type WorkerOptions } from "node:worker_threads";
import type { Logger } from "@chat/shared";
import { type AliveReport, type AliveThreadOptions, PULSE } from "./alive-thread.ts";

const RESTART_DELAY_MS = 1000;

export interface AliveEvents {
  /** A beat landed; `wasAlive` says whether the key was still there. */
  beat(wasAlive: boolean): void;
  failed(): void;
}

/**
 * Keeps one `alive` key fresh from a worker thread (see alive-thread.ts) and pulses that
 * thread from the main event loop. A key missing at a beat after the first means peers
 * presumed this node dead, or Redis lost its data.
 */
export class AliveHeartbeat {
  readonly #options: AliveThreadOptions;
  readonly #log: Logger;
  readonly #on: AliveEvents;
  #worker: Worker | undefined;
  #pulse: NodeJS.Timeout | undefined;
  #stopped = false;
  #firstBeat: (() => void) | undefined;

  constructor(options: AliveThreadOptions, log: Logger, on: AliveEvents) {
    this.#options = options;
    this.#log = log;
    this.#on = on;
  }

  /** Starts the thread; resolves after its first beat, or after `timeoutMs` if Redis is away. */
  start(timeoutMs: number): Promise<void> {
    const first = new Promise<void>((resolve) => {
      this.#firstBeat = resolve;
      setTimeout(resolve, timeoutMs).unref();
    });
    this.#spawn();
    this.#pulse = setInterval(() => this.#worker?.postMessage(PULSE), this.#options.intervalMs);
    this.#pulse.unref();
    return first;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#pulse);
    await this.#worker?.terminate();
    this.#worker = undefined;
  }

  #spawn(): void {
    const worker = startTypeScriptWorker(new URL("./alive-thread.ts", import.meta.url), {
      workerData: this.#options,
    });
    worker.unref(); // never what keeps a stopping node alive
    worker.on("message", (report: AliveReport) => this.#receive(report));
    worker.on("error", (error) => this.#log.error({ err: error }, "presence alive thread failed"));
    worker.on("exit", () => {
      if (this.#stopped || this.#worker !== worker) return;
      this.#log.error("presence alive thread exited; starting another");
      setTimeout(() => {
        if (!this.#stopped) this.#spawn();
      }, RESTART_DELAY_MS).unref();
    });
    this.#worker = worker;
  }

  #receive(report: AliveReport): void {
    if (report.kind === "beat") {
      this.#on.beat(report.wasAlive);
      this.#firstBeat?.();
      this.#firstBeat = undefined;
    } else if (report.kind === "stalled") {
      this.#log.warn(
        { silentMs: report.silentMs },
        "event loop silent past PRESENCE_STALL_LIMIT_MS; no longer proving this node alive",
      );
    } else {
      this.#on.failed();
      this.#log.debug({ message: report.message }, "presence heartbeat failed");
    }
  }
}

/**
 * Node ≥ 22.6 strips a worker's types itself. Under tsx (Node 20), whose loader hooks do not
 * reach worker threads, the worker registers tsx first and then imports its module.
 */
function startTypeScriptWorker(url: URL, options: WorkerOptions): Worker {
  if ((process.features as { typescript?: unknown }).typescript) return new Worker(url, options);
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const boot = `import(${tsx}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { ...options, eval: true });
}
