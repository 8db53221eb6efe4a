/**
 * An edge: the public entry (port 8080), a CDN-style cache in front of the gateway. It
 * caches what the origin marks cacheable and streams live traffic (API, SSE, polls,
 * WebSockets) through. Several edges may run against one origin, each with its own cache.
 */
import { ConfigError, createLogger } from "@chat/shared";
import { loadEdgeConfig } from "./config.ts";
import { createEdge } from "./edge.ts";

function loadConfigOrExit() {
  try {
    return loadEdgeConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`edge: ${error.message}\n`);
    process.exit(2);
  }
}

const config = loadConfigOrExit();
const log = createLogger({ service: "edge", instance: config.EDGE_ID, level: config.LOG_LEVEL });
const edge = createEdge(config, log);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    log.info({ signal }, "edge stopping");
    void edge.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  });
}

const { port, adminPort } = await edge.listen();
log.info({ port, adminPort, origin: config.ORIGIN_URL }, "edge listening");
