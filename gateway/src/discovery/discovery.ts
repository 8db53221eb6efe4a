import { resolve4 } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import type { Logger } from "@chat/shared";
import type { GatewayConfig } from "../config.ts";

/** An upstream address as discovery reports it: `host:port`. */
export type Address = string;

/**
 * Where the nodes are: a static list, a file the local launcher rewrites, or every A record
 * of a DNS name — re-resolved every DISCOVERY_INTERVAL_MS whatever the TTL, because Docker's
 * embedded DNS answers with 600 s. Scaling needs no edit and no restart.
 */
export function startDiscovery(
  config: GatewayConfig,
  log: Logger,
  onChange: (addresses: Address[]) => void,
): () => void {
  let last = "";
  const publish = (addresses: Address[]) => {
    const sorted = [...new Set(addresses)].sort();
    const key = sorted.join(",");
    if (key === last) return;
    last = key;
    log.info({ upstreams: sorted }, "upstreams changed");
    onChange(sorted);
  };
  const discover = async (): Promise<Address[]> => {
    if (config.UPSTREAM_DNS) {
      const [name = "", port] = config.UPSTREAM_DNS.split(":");
      return (await resolve4(name)).map((ip) => `${ip}:${port}`);
    }
    if (config.UPSTREAMS_FILE) {
      return (await readFile(config.UPSTREAMS_FILE, "utf8")).split(/[\s,]+/).filter(Boolean);
    }
    return config.UPSTREAMS;
  };
  const tick = () =>
    discover().then(publish, (error: unknown) =>
      log.warn({ err: error }, "discovery failed; keeping the last upstreams"),
    );
  void tick();
  const timer = setInterval(tick, config.DISCOVERY_INTERVAL_MS);
  return () => clearInterval(timer);
}
