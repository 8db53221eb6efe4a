import { collectDefaultMetrics, Registry } from "prom-client";

/** A registry of its own per service (never the global one), with process metrics under the prefix. */
export function createRegistry(prefix: string, labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}

/** Millisecond buckets for latencies that should stay well under a second. */
export const LATENCY_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
