/**
 * The write floor's sender (see floor.ts): COUNT connections to the sink, then, when told
 * to go, MESSAGES rounds of FRAME to every connection at RATE rounds a second — a
 * broadcast with no server in it. MODE `syscall` writes with fs.writeSync on each socket's
 * file descriptor: one write(2) and almost nothing else. MODE `socket` uses
 * net.Socket#write, the stream path every Node WebSocket library ends in.
 */
import { writeSync } from "node:fs";
import { connect, type Socket } from "node:net";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const port = Number(env("SINK_PORT"));
const count = Number(env("COUNT"));
const messages = Number(env("MESSAGES"));
const rate = Number(env("RATE"));
const mode = env("MODE");
const frame = Buffer.from(env("FRAME"), "base64");

/** A connected socket's file descriptor (libuv's, on Unix). */
const fdOf = (socket: Socket) => (socket as unknown as { _handle: { fd: number } })._handle.fd;

async function openAll(): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i += 200) {
    const batch = Array.from({ length: Math.min(200, count - i) }, () => {
      const socket = connect(port, "127.0.0.1");
      socket.setNoDelay(true); // as WebSocket servers do
      return new Promise<Socket>((resolve, reject) => {
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      });
    });
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

/** One frame to every socket; a full socket buffer (EAGAIN) is retried on the next turn. */
function writeRound(sockets: Socket[], fds: number[], pending: number[]): void {
  for (let i = 0; i < sockets.length; i++) {
    if (mode === "socket") {
      (sockets[i] as Socket).write(frame);
      continue;
    }
    try {
      if (writeSync(fds[i] as number, frame) !== frame.length) throw new Error("short write");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      pending.push(i);
    }
  }
}

async function broadcast(sockets: Socket[]): Promise<number> {
  const fds = mode === "syscall" ? sockets.map(fdOf) : [];
  const pending: number[] = [];
  const interval = 1000 / rate;
  const start = performance.now();
  for (let m = 0; m < messages; m++) {
    const wait = start + m * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    writeRound(sockets, fds, pending);
  }
  let retried = 0;
  while (pending.length > 0) {
    await new Promise((resolve) => setImmediate(resolve));
    const again = pending.splice(0);
    retried += again.length;
    writeRound(
      again.map((i) => sockets[i] as Socket),
      again.map((i) => fds[i] as number),
      pending,
    );
  }
  while (sockets.some((s) => s.writableLength > 0))
    await new Promise((resolve) => setTimeout(resolve, 5));
  return retried;
}

const sockets = await openAll();
process.send?.({ type: "ready" });
process.on("message", async (message: { type: string }) => {
  if (message.type !== "go") return;
  const retried = await broadcast(sockets);
  process.send?.({ type: "done", retried });
});
process.on("disconnect", () => process.exit(0));
