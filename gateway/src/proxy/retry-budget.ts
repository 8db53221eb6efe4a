/**
 * Retries as a share of recent requests (Envoy's retry budget, Finagle's too): at most
 * `ratio` of the requests of the last 10 s, plus `minPerSecond`, so a sick cluster is not
 * hit with a retry storm on top of its load.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #minPerSecond: number;
  readonly #requests = new Array<number>(10).fill(0);
  readonly #retries = new Array<number>(10).fill(0);
  #second = Math.floor(Date.now() / 1000);

  constructor(ratio: number, minPerSecond: number) {
    this.#ratio = ratio;
    this.#minPerSecond = minPerSecond;
  }

  recordRequest(): void {
    this.#roll();
    this.#requests[this.#second % 10] = (this.#requests[this.#second % 10] ?? 0) + 1;
  }

  /** Takes one retry from the budget, if any is left. */
  tryRetry(): boolean {
    this.#roll();
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const allowed = this.#minPerSecond * 10 + this.#ratio * sum(this.#requests);
    if (sum(this.#retries) >= allowed) return false;
    this.#retries[this.#second % 10] = (this.#retries[this.#second % 10] ?? 0) + 1;
    return true;
  }

  #roll(): void {
    const now = Math.floor(Date.now() / 1000);
    for (let s = this.#second + 1; s <= now && s <= this.#second + 10; s++) {
      this.#requests[s % 10] = 0;
      this.#retries[s % 10] = 0;
    }
    this.#second = now;
  }
}
