import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { RUN_TYPESCRIPT } from "../../../cluster/process.ts";
import type { PeerResult } from "../fanout/peers.ts";
import { cpuSeconds, markdownTable } from "../output.ts";

/**
 * The write floor: what one delivery costs with no server at all — a frame of the size a
 * chat broadcast sends, written to every one of N loopback connections, once with a bare
 * write(2) per connection and once through net.Socket#write. Run beside the servers, on
 * the same core, it tells how far any server on this machine can go: a server cannot
 * deliver more per CPU second than the kernel accepts writes.
 */
export type FloorMode = "syscall" | "socket";

export interface FloorResult {
  mode: string;
  /** Which round of a repeated run (1 when run once). */
  round?: number;
  subscribers: number;
  messages: number;
  deliveries: number;
  cpuSeconds: number;
  deliveriesPerCpuSecond: number;
  /** Rounds in which a socket's buffer was full and the write waited (syscall mode). */
  retried: number;
}

const MODE_NAMES: Record<FloorMode, string> = {
  syscall: "write(2) per connection, nothing else",
  socket: "net.Socket#write per connection",
};

/** A Phoenix broadcast of a short chat message, framed as a server sends it (no mask). */
export function broadcastFrame(): Buffer {
  const message = {
    room: "chat",
    seq: 123_456,
    id: "0b8e6f9c-4d0b-4c5e-9d7e-6f1f3c1a2b3c",
    client_id: "peer-0b8e6f9c-123",
    user: "guest",
    body: "peer-0b8e6f9c-123",
    at: new Date(0).toISOString(),
  };
  const payload = Buffer.from(JSON.stringify([null, null, "room:chat", "publish", message]));
  if (payload.length >= 126) {
    const head = Buffer.from([0x81, 126, 0, 0]);
    head.writeUInt16BE(payload.length, 2);
    return Buffer.concat([head, payload]);
  }
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

function child(script: string, core: string, env: Record<string, string>): ChildProcess {
  const path = fileURLToPath(new URL(script, import.meta.url));
  return spawn("taskset", ["-c", core, process.execPath, ...RUN_TYPESCRIPT, path], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

/** The child's next message of `type`; rejects if the child exits first. */
function next<T extends { type: string }>(process: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T) => {
      if (message.type !== type) return;
      process.off("message", onMessage).off("exit", onExit);
      resolve(message);
    };
    const onExit = (code: number | null) =>
      reject(new Error(`a write-floor process exited (${code}) before "${type}"`));
    process.on("message", onMessage).once("exit", onExit);
  });
}

/** One floor run: the writer on core 0 (where the servers run), the sink on core 1. */
async function runMode(
  mode: FloorMode,
  options: { subscribers: number; messages: number; ratePerSecond: number },
): Promise<FloorResult> {
  const frame = broadcastFrame();
  const sink = child("./sink.ts", "1", {});
  const { port } = await next<{ type: string; port: number }>(sink, "listening");
  const writer = child("./writer.ts", "0", {
    SINK_PORT: String(port),
    COUNT: String(options.subscribers),
    MESSAGES: String(options.messages),
    RATE: String(options.ratePerSecond),
    MODE: mode,
    FRAME: frame.toString("base64"),
  });
  try {
    await next(writer, "ready");
    const before = cpuSeconds(writer.pid ?? 0);
    writer.send({ type: "go" });
    const { retried } = await next<{ type: string; retried: number }>(writer, "done");
    const cpu = cpuSeconds(writer.pid ?? 0) - before;
    const expected = options.subscribers * options.messages * frame.length;
    let received = 0;
    for (let tries = 0; received < expected && tries < 200; tries++) {
      sink.send({ type: "count" });
      ({ received } = await next<{ type: string; received: number }>(sink, "count"));
      if (received < expected) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (received !== expected)
      throw new Error(`the sink received ${received} of ${expected} bytes (${mode})`);
    const deliveries = options.subscribers * options.messages;
    return {
      mode: MODE_NAMES[mode],
      subscribers: options.subscribers,
      messages: options.messages,
      deliveries,
      cpuSeconds: Math.round(cpu * 100) / 100,
      deliveriesPerCpuSecond: Math.round(deliveries / Math.max(cpu, 0.01)),
      retried,
    };
  } finally {
    writer.kill();
    sink.kill();
  }
}

export async function runFloor(options: {
  subscribers: number;
  messages: number;
  ratePerSecond: number;
  say?: (line: string) => void;
}): Promise<FloorResult[]> {
  const results: FloorResult[] = [];
  for (const mode of ["syscall", "socket"] as const) {
    options.say?.(`[bench] write floor: ${MODE_NAMES[mode]}, ${options.subscribers} connections`);
    results.push(await runMode(mode, options));
  }
  return results;
}

/** The servers' table, then the floor beside them: each server's share of the floor's rate. */
export function withFloorTable(serversTable: string, floor: FloorResult[], servers: PeerResult[]) {
  return `${serversTable}\n\nThe write floor, same connections, same run:\n\n${floorTable(floor, servers)}`;
}

/** Each floor row beside the servers of its own round. */
function floorTable(floor: FloorResult[], servers: PeerResult[]): string {
  const names = [...new Set(servers.map((s) => s.server))];
  return markdownTable(
    [
      "round",
      "write floor",
      "connections",
      "deliveries",
      "CPU s",
      "deliveries per CPU s",
      ...names.map((name) => `${name} ÷ this`),
    ],
    floor.map((f) => [
      f.round ?? 1,
      f.mode,
      f.subscribers.toLocaleString("en"),
      f.deliveries.toLocaleString("en"),
      f.cpuSeconds,
      f.deliveriesPerCpuSecond.toLocaleString("en"),
      ...names.map((name) => {
        const server = servers.find((s) => s.server === name && (s.round ?? 1) === (f.round ?? 1));
        return server ? (server.deliveriesPerCpuSecond / f.deliveriesPerCpuSecond).toFixed(2) : "—";
      }),
    ]),
  );
}
