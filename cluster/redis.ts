import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { ManagedProcess } from "./process.ts";

/** A throwaway Redis: pub/sub and counters only, so nothing is persisted. */
export async function startRedis(
  binary: string,
  dataDir: string,
  logDir: string,
  port: number,
): Promise<ManagedProcess> {
  const dir = join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const server = new ManagedProcess({
    name: "redis",
    command: binary,
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    output: { file: join(logDir, "redis.log") },
  });
  server.start();
  await server.waitUntil("answering PING", () => ping(port));
  return server;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
    socket.write("PING\r\n");
  });
}
