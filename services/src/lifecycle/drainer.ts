import type { NodeMetrics } from "../metrics.ts";

export type Transport =
  | "sse"
  | "longpoll"
  | "phoenix-websocket"
  | "phoenix-longpoll"
  | "actioncable"
  | "thesis-websocket";

/** Open long-lived work: a socket, a stream or a held poll, and how to end it for a drain. */
export interface Drainable {
  readonly transport: Transport;
  /** Finish now with a reconnect hint. */
  endForDrain(): void;
}

/**
 * The node's open long-lived work and its draining state. A stream registers how to end
 * itself; on drain each one is told to finish now with a reconnect hint, and `idle`
 * resolves once they have all gone.
 */
export class Drainer {
  #draining = false;
  readonly #open = new Set<Drainable>();
  readonly #waiters = new Set<() => void>();
  readonly #metrics: NodeMetrics;
  readonly #whenDraining: Promise<void>;
  #startDraining!: () => void;

  constructor(metrics: NodeMetrics) {
    this.#metrics = metrics;
    this.#whenDraining = new Promise((resolve) => {
      this.#startDraining = resolve;
    });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Resolves when the drain begins; long polls race it to answer early. */
  get whenDraining(): Promise<void> {
    return this.#whenDraining;
  }

  /** Registers open work; `remove` it when it ends. Sockets register themselves, so that
   * tens of thousands of them cost no closure each. */
  add(work: Drainable): void {
    if (this.#open.has(work)) return;
    this.#open.add(work);
    this.#metrics.openStreams.inc({ transport: work.transport });
  }

  remove(work: Drainable): void {
    if (!this.#open.delete(work)) return;
    this.#metrics.openStreams.dec({ transport: work.transport });
    if (this.#open.size === 0) for (const wake of this.#waiters) wake();
  }

  /** Registers an open stream; call the returned function when it ends. */
  track(transport: Transport, endForDrain: () => void): () => void {
    const work: Drainable = { transport, endForDrain };
    this.add(work);
    return () => this.remove(work);
  }

  /** Marks the node draining and asks every open stream to end. */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#metrics.draining.set(1);
    this.#startDraining();
    for (const work of [...this.#open]) work.endForDrain();
  }

  /** Resolves when no stream is open, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void> {
    if (this.#open.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
    });
  }
}
