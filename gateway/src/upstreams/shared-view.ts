import cluster from "node:cluster";
import type { Logger } from "@chat/shared";
import type { GatewayConfig } from "../config.ts";
import type { Address } from "../discovery/discovery.ts";
import { startDiscovery } from "../discovery/discovery.ts";
import { startHealthChecks } from "../health/health-checks.ts";
import { type Upstream, UpstreamPool } from "./pool.ts";

/** The upstreams and their checked health, as the primary tells every worker. */
interface UpstreamsMessage {
  type: "chat-gateway:upstreams";
  upstreams: Array<{ address: Address; checked: Upstream["checked"] }>;
}

/** A worker that starts asks for the view: a message sent before it listens would be lost. */
const WANT_UPSTREAMS = { type: "chat-gateway:want-upstreams" };

const typeOf = (message: unknown) => (message as { type?: unknown } | null)?.type;
const isUpstreamsMessage = (message: unknown): message is UpstreamsMessage =>
  typeOf(message) === "chat-gateway:upstreams";

/**
 * Primary side: one discovery loop and one /readyz check per node for the whole gateway, not
 * one per worker (12 workers would check each node 12 times a second, and disagree about it).
 * Sends every change to all workers, and the whole view to a worker that asks.
 */
export function shareUpstreamsWithWorkers(config: GatewayConfig, log: Logger): () => void {
  const pool = new UpstreamPool({ slowStartMs: 0, ejectBaseMs: 0, ejectMaxMs: 0 });
  const message = (): UpstreamsMessage => ({
    type: "chat-gateway:upstreams",
    upstreams: pool.all.map(({ address, checked }) => ({ address, checked })),
  });
  const broadcast = () => {
    const view = message();
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send(view);
  };
  const answer = (worker: { send(message: unknown): boolean }, asked: unknown) => {
    if (typeOf(asked) === WANT_UPSTREAMS.type) worker.send(message());
  };
  cluster.on("message", answer);
  const stops = [
    startDiscovery(config, log, (addresses) => {
      pool.update(addresses);
      broadcast();
    }),
    startHealthChecks(pool, config, log, broadcast),
  ];
  return () => {
    cluster.off("message", answer);
    for (const stop of stops) stop();
  };
}

/** Worker side: applies the primary's view to this worker's pool (its load and ejections stay its own). */
export function followPrimaryUpstreams(pool: UpstreamPool): () => void {
  const apply = (message: unknown) => {
    if (!isUpstreamsMessage(message)) return;
    pool.update(message.upstreams.map((u) => u.address));
    const checked = new Map(message.upstreams.map((u) => [u.address, u.checked]));
    for (const upstream of pool.all) upstream.checked = checked.get(upstream.address) ?? "unknown";
  };
  process.on("message", apply);
  process.send?.(WANT_UPSTREAMS);
  return () => process.off("message", apply);
}
