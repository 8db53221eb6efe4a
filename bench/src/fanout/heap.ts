import { WebSocket } from "ws";

/** NODE_OPTIONS for a Node server whose heap `heapAfterGc` reads: SIGUSR1 then opens its
 * inspector on a free port instead of 9229, which two servers could not share. */
export const INSPECTABLE = "--inspect-port=0";

/**
 * The V8 heap a Node process uses after a full garbage collection: what its live objects
 * hold, without the garbage and spare heap that make resident memory noisy. SIGUSR1 opens
 * the process's inspector; `logTail` returns its output, where Node prints the address.
 */
export async function heapAfterGc(pid: number, logTail: () => string): Promise<number> {
  const address = await inspectorAddress(pid, logTail);
  const socket = new WebSocket(address);
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  try {
    const call = inspectorCalls(socket);
    // Twice: objects freed by the first collection's finalizers go in the second.
    await call("HeapProfiler.collectGarbage");
    await call("HeapProfiler.collectGarbage");
    const answer = (await call("Runtime.evaluate", {
      expression: "process.memoryUsage().heapUsed",
      returnByValue: true,
    })) as { result?: { value?: unknown } };
    const heapUsed = answer.result?.value;
    if (typeof heapUsed !== "number") throw new Error(`no heap figure: ${JSON.stringify(answer)}`);
    return heapUsed;
  } finally {
    socket.close();
  }
}

async function inspectorAddress(pid: number, logTail: () => string): Promise<string> {
  const before = listening(logTail()).length;
  process.kill(pid, "SIGUSR1");
  for (let waited = 0; waited < 10_000; waited += 50) {
    const found = listening(logTail());
    // A second SIGUSR1 prints the address again; take the newest once there is one.
    if (found.length > 0 && (found.length > before || before > 0)) return found.at(-1) as string;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`process ${pid} opened no inspector (is it running with ${INSPECTABLE}?)`);
}

function listening(log: string): string[] {
  return [...log.matchAll(/Debugger listening on (ws:\/\/\S+)/g)].map((match) => match[1] ?? "");
}

function inspectorCalls(socket: WebSocket) {
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  socket.on("message", (data) => {
    const reply = JSON.parse(String(data)) as { id?: number; result?: unknown };
    if (reply.id !== undefined) pending.get(reply.id)?.(reply.result);
  });
  return (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(
        () => reject(new Error(`inspector: no answer to ${method}`)),
        60_000,
      );
      pending.set(id, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
}
