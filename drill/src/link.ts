/**
 * One client's connection history: when it was up, on which node, and how long each outage
 * lasted. The first connect is not an outage; every later drop is a failure, and the time
 * until the client is receiving again is its repair time (the thesis's MTTR).
 */
export class Link {
  node: string | null = null;
  connected = false;
  failures = 0;
  readonly repairsMs: number[] = [];
  #upMs = 0;
  #downMs = 0;
  #since = performance.now();
  #everConnected = false;
  #endedAt: number | undefined;

  up(node: string | null): void {
    if (this.#endedAt !== undefined) return;
    const now = performance.now();
    if (node) this.node = node;
    if (this.connected) return;
    if (this.#everConnected) {
      this.#downMs += now - this.#since;
      this.repairsMs.push(now - this.#since);
    }
    this.#everConnected = true;
    this.connected = true;
    this.#since = now;
  }

  down(): void {
    if (!this.connected || this.#endedAt !== undefined) return;
    const now = performance.now();
    this.#upMs += now - this.#since;
    this.connected = false;
    this.failures++;
    this.#since = now;
  }

  /** The client is closing on purpose: nothing after this is a failure. */
  end(): void {
    this.#endedAt ??= performance.now();
  }

  /** Up and down time until end() (or now), the current stretch included. */
  times(): { upMs: number; downMs: number } {
    const open = (this.#endedAt ?? performance.now()) - this.#since;
    if (!this.#everConnected) return { upMs: 0, downMs: 0 };
    return this.connected
      ? { upMs: this.#upMs + open, downMs: this.#downMs }
      : { upMs: this.#upMs, downMs: this.#downMs + open };
  }
}
