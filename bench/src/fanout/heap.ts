import { openInspector } from "../../../cluster/inspector.ts";

/**
 * The V8 heap a Node process uses after a full garbage collection: what its live objects
 * hold, without the garbage and spare heap that make resident memory noisy. Read through
 * the process's inspector (see openInspector).
 */
export async function heapAfterGc(pid: number, logTail: () => string): Promise<number> {
  const inspector = await openInspector(pid, logTail);
  try {
    // Twice: objects freed by the first collection's finalizers go in the second.
    await inspector.call("HeapProfiler.collectGarbage");
    await inspector.call("HeapProfiler.collectGarbage");
    const answer = (await inspector.call("Runtime.evaluate", {
      expression: "process.memoryUsage().heapUsed",
      returnByValue: true,
    })) as { result?: { value?: unknown } };
    const heapUsed = answer.result?.value;
    if (typeof heapUsed !== "number") throw new Error(`no heap figure: ${JSON.stringify(answer)}`);
    return heapUsed;
  } finally {
    inspector.close();
  }
}
