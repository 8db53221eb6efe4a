import { type Inspector, openInspector } from "../../../cluster/inspector.ts";

/** Runs `read` on a process's inspector after two full collections (objects freed by the
 * first collection's finalizers go in the second). */
async function afterFullGc<T>(
  pid: number,
  logTail: () => string,
  read: (inspector: Inspector) => Promise<T>,
): Promise<T> {
  const inspector = await openInspector(pid, logTail);
  try {
    await inspector.call("HeapProfiler.collectGarbage");
    await inspector.call("HeapProfiler.collectGarbage");
    return await read(inspector);
  } finally {
    inspector.close();
  }
}

/**
 * The V8 heap a Node process uses after a full garbage collection: what its live objects
 * hold, without the garbage and spare heap that make resident memory noisy. Read through
 * the process's inspector (see openInspector).
 */
export function heapAfterGc(pid: number, logTail: () => string): Promise<number> {
  return afterFullGc(pid, logTail, async (inspector) => {
    const answer = (await inspector.call("Runtime.evaluate", {
      expression: "process.memoryUsage().heapUsed",
      returnByValue: true,
    })) as { result?: { value?: unknown } };
    const heapUsed = answer.result?.value;
    if (typeof heapUsed !== "number") throw new Error(`no heap figure: ${JSON.stringify(answer)}`);
    return heapUsed;
  });
}

/** A heap snapshot of a Node process after two full collections, as DevTools would save it. */
export function heapSnapshot(pid: number, logTail: () => string): Promise<HeapSnapshot> {
  return afterFullGc(pid, logTail, async (inspector) => {
    const chunks: string[] = [];
    inspector.on("HeapProfiler.addHeapSnapshotChunk", (params) => {
      chunks.push(String(params.chunk));
    });
    await inspector.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    return JSON.parse(chunks.join("")) as HeapSnapshot;
  });
}

/** The parts of V8's snapshot format that a census reads. */
export interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/**
 * Live objects by kind: each node's type and constructor (closures by function name),
 * strings together, compiled code together, with how many there are and their own bytes.
 */
export function heapCensus(heap: HeapSnapshot): Map<string, { count: number; bytes: number }> {
  const fields = heap.snapshot.meta.node_fields;
  const types = heap.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
  const census = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < heap.nodes.length; i += fields.length) {
    const kind = kindOf(
      types[heap.nodes[i + (typeAt ?? 0)] ?? 0] ?? "?",
      heap.strings[heap.nodes[i + (nameAt ?? 0)] ?? 0] ?? "",
    );
    const entry = census.get(kind) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += heap.nodes[i + (sizeAt ?? 0)] ?? 0;
    census.set(kind, entry);
  }
  return census;
}

function kindOf(type: string, name: string): string {
  if (type.includes("string")) return "(strings)";
  if (type === "code") return "(compiled code and its metadata)";
  if (type === "object") return name;
  return `(${type}) ${name}`.slice(0, 80);
}
