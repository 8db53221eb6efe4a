import type { Address } from "../discovery/discovery.ts";

export type UpstreamState = "healthy" | "draining" | "ejected" | "down";

/** One node as the balancer sees it. */
export class Upstream {
  readonly address: Address;
  readonly host: string;
  readonly port: number;
  /** Requests in flight (HTTP) and long-lived connections open (WebSockets, SSE, long polls). */
  inflight = 0;
  streams = 0;
  /** From active checks: ready, draining (503 draining), or not answering. */
  checked: "ready" | "draining" | "down" | "unknown" = "unknown";
  /** Passive ejection after connect errors and timeouts, with backoff. */
  ejectedUntil = 0;
  ejections = 0;
  readonly addedAt: number;

  constructor(address: Address, now = Date.now()) {
    this.address = address;
    const [host = "", port = "0"] = address.split(":");
    this.host = host;
    this.port = Number(port);
    this.addedAt = now;
  }

  state(now = Date.now()): UpstreamState {
    if (this.ejectedUntil > now) return "ejected";
    if (this.checked === "draining") return "draining";
    if (this.checked === "ready") return "healthy";
    return this.checked === "unknown" ? "healthy" : "down";
  }
}

/**
 * The upstream set and the balancing choices. No stickiness: any request may go anywhere.
 * HTTP picks by power of two choices on in-flight requests; WebSockets, SSE and long polls
 * by power of two choices on open connections. During SLOW_START_MS a new upstream's load
 * counts as inflated, so a reconnect storm does not all land on the node that just came up.
 */
export class UpstreamPool {
  readonly #upstreams = new Map<Address, Upstream>();
  readonly #slowStartMs: number;
  readonly #ejectBaseMs: number;
  readonly #ejectMaxMs: number;

  constructor(options: { slowStartMs: number; ejectBaseMs: number; ejectMaxMs: number }) {
    this.#slowStartMs = options.slowStartMs;
    this.#ejectBaseMs = options.ejectBaseMs;
    this.#ejectMaxMs = options.ejectMaxMs;
  }

  get all(): Upstream[] {
    return [...this.#upstreams.values()];
  }

  /** Applies a discovery result; upstreams that stay keep their counters and health. */
  update(addresses: Address[]): void {
    const wanted = new Set(addresses);
    for (const address of this.#upstreams.keys())
      if (!wanted.has(address)) this.#upstreams.delete(address);
    for (const address of addresses)
      if (!this.#upstreams.has(address)) this.#upstreams.set(address, new Upstream(address));
  }

  /**
   * Two random candidates among those taking new work, not in `exclude`; the less loaded
   * wins. When no upstream passes its checks (panic mode, as Envoy's), the checks are more
   * likely wrong — overload slows every /readyz at once — than every node dead: those
   * failing them are tried rather than refusing everyone. Draining and ejected ones are not.
   */
  pick(
    kind: "request" | "stream",
    exclude: ReadonlySet<Upstream> = new Set(),
  ): Upstream | undefined {
    const now = Date.now();
    const all = this.all;
    const healthy = all.filter((u) => u.state(now) === "healthy");
    const usable = healthy.length > 0 ? healthy : all.filter((u) => u.state(now) === "down");
    const candidates = usable.filter((u) => !exclude.has(u));
    if (candidates.length === 0) return undefined;
    const a = candidates[Math.floor(Math.random() * candidates.length)];
    const b = candidates[Math.floor(Math.random() * candidates.length)];
    if (!a || !b) return a ?? b;
    return this.#load(a, kind, now) <= this.#load(b, kind, now) ? a : b;
  }

  /** A connect error or timeout: out of rotation for a while, longer each time in a row. */
  eject(upstream: Upstream): void {
    const backoff = Math.min(
      this.#ejectMaxMs,
      this.#ejectBaseMs * 2 ** Math.min(upstream.ejections, 20),
    );
    upstream.ejections++;
    upstream.ejectedUntil = Date.now() + backoff;
  }

  /** A successful exchange ends the ejection streak. */
  succeeded(upstream: Upstream): void {
    upstream.ejections = 0;
  }

  /** Load over the ramp weight: a node at 10% of its slow start looks ten times as busy. */
  #load(upstream: Upstream, kind: "request" | "stream", now: number): number {
    const load = (kind === "request" ? upstream.inflight : upstream.streams) + 1;
    if (this.#slowStartMs === 0) return load;
    const ramp = Math.min(1, Math.max(0.05, (now - upstream.addedAt) / this.#slowStartMs));
    return load / ramp;
  }
}
