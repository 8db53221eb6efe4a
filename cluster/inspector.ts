import { WebSocket } from "ws";

/** NODE_OPTIONS for a Node process to be inspected: SIGUSR1 then opens its inspector on a
 * free port instead of 9229, which two processes could not share. */
export const INSPECTABLE = "--inspect-port=0";

export interface Inspector {
  /** One DevTools protocol call; resolves with its result. */
  call(method: string, params?: object): Promise<unknown>;
  /** Listens to an event the process sends (such as a heap snapshot's chunks). */
  on(event: string, listener: (params: Record<string, unknown>) => void): void;
  close(): void;
}

/**
 * Opens a running Node process's inspector: SIGUSR1 makes Node listen and print the address
 * to its output, which `logTail` returns (the process must run with INSPECTABLE).
 */
export async function openInspector(pid: number, logTail: () => string): Promise<Inspector> {
  process.kill(pid, "SIGUSR1");
  const socket = new WebSocket(await inspectorAddress(pid, logTail));
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  const listeners = new Map<string, (params: Record<string, unknown>) => void>();
  socket.on("message", (data) => {
    const reply = JSON.parse(String(data)) as {
      id?: number;
      result?: unknown;
      method?: string;
      params?: Record<string, unknown>;
    };
    if (reply.id !== undefined) pending.get(reply.id)?.(reply.result);
    else if (reply.method) listeners.get(reply.method)?.(reply.params ?? {});
  });
  return {
    call: (method, params = {}) =>
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
      }),
    on: (event, listener) => listeners.set(event, listener),
    close: () => socket.close(),
  };
}

/** The newest address Node printed; a process already listening prints none again. */
async function inspectorAddress(pid: number, logTail: () => string): Promise<string> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const found = [...logTail().matchAll(/Debugger listening on (ws:\/\/\S+)/g)].at(-1)?.[1];
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`process ${pid} opened no inspector (is it running with ${INSPECTABLE}?)`);
}
