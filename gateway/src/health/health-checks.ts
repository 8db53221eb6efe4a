import { request } from "node:http";
import type { Logger } from "@chat/shared";
import type { GatewayConfig } from "../config.ts";
import type { Upstream, UpstreamPool } from "../upstreams/pool.ts";

/**
 * Active readiness checks: GET /readyz on every upstream each HEALTH_INTERVAL_MS. 200 is
 * ready; a 503 saying `draining` takes the node out of rotation while its connections
 * finish; no answer within HEALTH_TIMEOUT_MS is down.
 */
export function startHealthChecks(
  pool: UpstreamPool,
  config: GatewayConfig,
  log: Logger,
  onChange: () => void = () => {},
): () => void {
  const check = (upstream: Upstream) =>
    new Promise<void>((resolve) => {
      const req = request(
        {
          host: upstream.host,
          port: upstream.port,
          path: "/readyz",
          timeout: config.HEALTH_TIMEOUT_MS,
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            body += chunk;
          });
          res.on("end", () => {
            set(
              upstream,
              res.statusCode === 200 ? "ready" : drainingIn(body) ? "draining" : "down",
            );
            resolve();
          });
          res.on("error", () => resolve());
        },
      );
      req.on("timeout", () => req.destroy(new Error("health check timed out")));
      req.on("error", () => {
        set(upstream, "down");
        resolve();
      });
      req.end();
    });
  const set = (upstream: Upstream, checked: Upstream["checked"]) => {
    if (upstream.checked === checked) return;
    log.info({ upstream: upstream.address, checked }, "upstream health changed");
    upstream.checked = checked;
    onChange();
  };
  let stopped = false;
  const loop = async () => {
    while (!stopped) {
      await Promise.all(pool.all.map(check));
      await new Promise((resolve) => setTimeout(resolve, config.HEALTH_INTERVAL_MS));
    }
  };
  void loop();
  return () => {
    stopped = true;
  };
}

/**
 * A node's /readyz says `"status": "draining"` while it drains. Its body always names the
 * `draining` check, so only the status counts: a node failing for another reason is down.
 */
function drainingIn(body: string): boolean {
  try {
    return (JSON.parse(body) as { status?: unknown }).status === "draining";
  } catch {
    return false;
  }
}
