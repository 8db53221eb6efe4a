import { join } from "node:path";
import { ManagedProcess, RUN_TYPESCRIPT } from "./process.ts";

/** The edge process (static/src/main.ts), in front of `originUrl`; resolves once it answers. */
export async function startEdge(options: {
  repoRoot: string;
  port: number;
  /** Its metrics and health. */
  adminPort: number;
  originUrl: string;
  logDir: string;
  output: "inherit" | "pipe-to-file";
  env?: Record<string, string>;
}): Promise<ManagedProcess> {
  const edge = new ManagedProcess({
    name: "edge",
    command: process.execPath,
    args: [...RUN_TYPESCRIPT, "static/src/main.ts"],
    cwd: options.repoRoot,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(options.port),
      ADMIN_PORT: String(options.adminPort),
      ORIGIN_URL: options.originUrl,
      EDGE_ID: "edge-0",
      ...options.env,
    },
    output: options.output === "inherit" ? "inherit" : { file: join(options.logDir, "edge.log") },
  });
  edge.start();
  const admin = `http://127.0.0.1:${options.adminPort}`;
  await edge.waitUntil("answering", async () => (await fetch(`${admin}/healthz`)).ok);
  return edge;
}
