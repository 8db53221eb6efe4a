/**
 * A chat node: one stateless process of the cluster. It serves the HTTP, SSE and polling
 * transports, stores messages in Postgres (writes on the primary, history from the replica)
 * and fans them out to the other nodes over Redis. Any node can serve any request.
 * SIGTERM drains it; the gateway stops routing to it once /readyz turns false.
 */
import { ConfigError, createLogger } from "@chat/shared";
import { loadNodeConfig } from "./config.ts";
import { createChatNode } from "./node.ts";

function loadConfigOrExit() {
  try {
    return loadNodeConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`chat node: ${error.message}\n`);
    process.exit(2);
  }
}

const config = loadConfigOrExit();
const log = createLogger({
  service: "chat-node",
  instance: config.NODE_ID,
  level: config.LOG_LEVEL,
});
const node = createChatNode(config, log);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal, boundMs: config.DRAIN_TIMEOUT_MS }, "draining");
  const deadline = setTimeout(
    () => {
      log.warn("drain bound reached; exiting");
      process.exit(1);
    },
    config.DRAIN_GRACE_MS + config.DRAIN_TIMEOUT_MS + 2000,
  );
  deadline.unref();
  await node.stop();
  log.info("drained; exiting");
  process.exit(0);
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

try {
  const port = await node.start();
  log.info({ port, host: config.HOST }, "chat node listening");
} catch (error) {
  log.fatal({ err: error }, "chat node failed to start");
  process.exit(1);
}
