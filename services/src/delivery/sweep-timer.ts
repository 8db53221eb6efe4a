/**
 * When the hub's next sweep runs. A request for a later sweep never postpones one already
 * due sooner: a sweep that finishes schedules the next at its interval, and must not cancel
 * the immediate one that Redis coming back asked for meanwhile (its heads were read before
 * the subscription was live, so only the later sweep sees what was published in between).
 */
export class SweepTimer {
  readonly #sweep: () => void;
  #timer: NodeJS.Timeout | undefined;
  /** When the pending run is due; meaningful only while `#timer` is set. */
  #dueAt = 0;

  constructor(sweep: () => void) {
    this.#sweep = sweep;
  }

  /** Runs the sweep in `delayMs`, unless one is already due by then. */
  schedule(delayMs: number): void {
    const dueAt = performance.now() + delayMs;
    if (this.#timer && this.#dueAt <= dueAt) return;
    clearTimeout(this.#timer);
    this.#dueAt = dueAt;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sweep();
    }, delayMs);
  }

  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
