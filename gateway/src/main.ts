/**
 * The gateway: the sticky-free load balancer between the edge (or clients) and the chat
 * nodes, on port 8000. The primary process forks GATEWAY_WORKERS workers that share the
 * port (one core and ~20k sockets each) and serves their aggregated metrics on ADMIN_PORT.
 */
import cluster from "node:cluster";
import { createServer } from "node:http";
import { answerMetrics, ConfigError, createLogger } from "@chat/shared";
import { AggregatorRegistry } from "prom-client";
import { loadGatewayConfig } from "./config.ts";
import { createGateway } from "./gateway.ts";
import { shareUpstreamsWithWorkers } from "./upstreams/shared-view.ts";

function loadConfigOrExit() {
  try {
    return loadGatewayConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`gateway: ${error.message}\n`);
    process.exit(2);
  }
}

const config = loadConfigOrExit();
const log = createLogger({
  service: "gateway",
  instance: `${config.GATEWAY_ID}/${process.pid}`,
  level: config.LOG_LEVEL,
});
const DRAIN_BOUND_MS = 10_000;

if (cluster.isPrimary) {
  let stopping = false;
  const stopSharing = shareUpstreamsWithWorkers(config, log);
  for (let i = 0; i < config.GATEWAY_WORKERS; i++) cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) return;
    log.error({ pid: worker.process.pid, code, signal }, "gateway worker died; starting another");
    cluster.fork();
  });
  const aggregator = new AggregatorRegistry();
  const admin = createServer((req, res) => {
    if (req.url?.startsWith("/metrics")) {
      answerMetrics(res, aggregator.contentType, () => aggregator.clusterMetrics());
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  admin.listen(config.ADMIN_PORT, config.HOST);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      stopping = true;
      stopSharing();
      admin.close();
      for (const worker of Object.values(cluster.workers ?? {})) worker?.kill("SIGTERM");
      setTimeout(() => process.exit(0), DRAIN_BOUND_MS + 1000).unref();
      cluster.on("exit", () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      });
    });
  }
  log.info(
    { workers: config.GATEWAY_WORKERS, port: config.PORT, admin: config.ADMIN_PORT },
    "gateway starting",
  );
} else {
  const gateway = createGateway(config, log, { upstreamsFrom: "primary" });
  // Constructing one installs prom-client's worker side of the aggregation (answering the primary).
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([gateway.metrics.registry]);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      setTimeout(() => process.exit(0), DRAIN_BOUND_MS).unref();
      void gateway.close().then(() => process.exit(0));
    });
  }
  const port = await gateway.listen();
  log.info({ port }, "gateway worker listening");
}
