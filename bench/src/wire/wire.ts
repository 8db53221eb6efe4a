import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { type Cluster, startCluster } from "../../../cluster/launcher.ts";
import { barChart, markdownTable } from "../output.ts";

/** The thesis's four client prototypes, on our thesis routes for the default room. */
export const WIRE_TRANSPORTS = ["polling", "long polling", "SSE", "WebSocket"] as const;
export type WireTransport = (typeof WIRE_TRANSPORTS)[number];

/** Table 7.1's WebSocket figure, the one the issue quotes: bytes for the same scenario. */
export const THESIS_WEBSOCKET_BYTES = 138_492;
const MESSAGE = "this is a chat message!";

export interface WireFigures {
  transport: WireTransport;
  packets: number;
  bytes: number;
  sent: number;
  received: number;
}

export interface WireOptions {
  durationS: number;
  intervalMs: number;
  say?: (line: string) => void;
}

/**
 * Two clients each send MESSAGE every 2.5 s for 60 s over each transport (polling every 1 s,
 * long polling, SSE, WebSocket), as in the thesis's Table 7.1; tcpdump on loopback counts
 * every packet and byte between them and one node.
 */
export async function runWire(options: WireOptions): Promise<WireFigures[]> {
  const say = options.say ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), "chat-wire-"));
  const cluster = await startCluster({
    nodes: 1,
    dataDir: await mkdtemp(join(tmpdir(), "chat-wire-cluster-")),
    ports: "auto",
    nodeOutput: "pipe-to-file",
    removeDataOnStop: true,
    nodeEnv: { LOG_LEVEL: "warn" },
  });
  try {
    const figures: WireFigures[] = [];
    for (const transport of WIRE_TRANSPORTS) {
      figures.push(await measure(cluster, transport, options, join(dir, `${figures.length}.pcap`)));
      const f = figures.at(-1);
      say(
        `  ${transport}: ${f?.packets} packets, ${f?.bytes} bytes, ${f?.received} messages received`,
      );
    }
    return figures;
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function measure(
  cluster: Cluster,
  transport: WireTransport,
  options: WireOptions,
  pcap: string,
): Promise<WireFigures> {
  const base = cluster.nodeUrl(0);
  const port = new URL(base).port;
  const capture = spawn("tcpdump", ["-i", "lo", "-s", "0", "-U", "-w", pcap, `tcp port ${port}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  await new Promise<void>((resolve, reject) => {
    capture.stderr.on(
      "data",
      (chunk: Buffer) => chunk.toString().includes("listening") && resolve(),
    );
    capture.once("exit", (code) =>
      reject(new Error(`tcpdump exited (${code}); is it installed, and are we root?`)),
    );
  });
  const clients = [0, 1].map(() => client(transport, base));
  await Promise.all(clients.map((c) => c.ready));
  let sent = 0;
  const senders = clients.map(async (c, i) => {
    await sleep((options.intervalMs / 2) * i); // the two clients alternate
    const end = performance.now() + options.durationS * 1000;
    while (performance.now() < end) {
      await c.send(MESSAGE);
      sent++;
      await sleep(options.intervalMs);
    }
  });
  await Promise.all(senders);
  await sleep(1500); // the last deliveries
  const received = clients.reduce((n, c) => n + c.received(), 0);
  for (const c of clients) c.close();
  await sleep(300);
  capture.kill("SIGINT");
  await new Promise((resolve) => capture.once("exit", resolve));
  return { transport, ...countPcap(await readFile(pcap)), sent, received };
}

/** Packets and on-the-wire bytes in a pcap file (classic format, either byte order). */
export function countPcap(data: Buffer): { packets: number; bytes: number } {
  const magic = data.readUInt32LE(0);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const read = (offset: number) => (little ? data.readUInt32LE(offset) : data.readUInt32BE(offset));
  let offset = 24;
  let packets = 0;
  let bytes = 0;
  while (offset + 16 <= data.length) {
    const captured = read(offset + 8);
    bytes += read(offset + 12); // the packet's length on the wire
    packets++;
    offset += 16 + captured;
  }
  return { packets, bytes };
}

interface WireClient {
  ready: Promise<void>;
  send(text: string): Promise<void>;
  received(): number;
  close(): void;
}

/** One thesis prototype: HTTP sends to /chat/speak, receiving by its transport; or one WebSocket. */
function client(transport: WireTransport, base: string): WireClient {
  if (transport === "WebSocket") return socketClient(base);
  let count = 0;
  let closed = false;
  const speak = async (text: string) => {
    await fetch(`${base}/chat/speak`, {
      method: "POST",
      body: new URLSearchParams({ message: text }),
    }).then((r) => r.arrayBuffer());
  };
  if (transport === "SSE") {
    const source = new EventSource(`${base}/chat/stream`);
    source.addEventListener("publish", () => count++);
    const ready = new Promise<void>((resolve) => source.addEventListener("open", () => resolve()));
    return { ready, send: speak, received: () => count, close: () => source.close() };
  }
  const controller = new AbortController();
  let cursor = 0;
  const poll = async () => {
    // polling: the room's history every second; long polling: the thesis's held poll.
    const path =
      transport === "polling"
        ? `/api/rooms/chat/messages?after=${cursor}`
        : `/chat/poll?after=${cursor}`;
    const response = await fetch(`${base}${path}`, { signal: controller.signal });
    const page = ((await response.json()) as { messages: Array<{ seq: number }> }).messages;
    count += page.length;
    cursor = page.at(-1)?.seq ?? cursor;
  };
  const ready = (async () => {
    const head = (await (
      await fetch(`${base}/api/rooms/chat/messages?after=0&limit=1000`)
    ).json()) as {
      messages: Array<{ seq: number }>;
    };
    cursor = head.messages.at(-1)?.seq ?? 0;
    void (async () => {
      while (!closed) {
        await poll().catch(() => undefined);
        if (transport === "polling") await sleep(1000);
      }
    })();
  })();
  return {
    ready,
    send: speak,
    received: () => count,
    close: () => {
      closed = true;
      controller.abort();
    },
  };
}

function socketClient(base: string): WireClient {
  let count = 0;
  const socket = new WebSocket(`${base.replace("http", "ws")}/chat/socket`, {
    perMessageDeflate: false,
  });
  socket.on("message", (data: Buffer) => {
    if (!data.toString().startsWith('{"type":')) count++; // messages, not acks
  });
  const ready = new Promise<void>((resolve, reject) =>
    socket.once("open", () => resolve()).once("error", reject),
  );
  return {
    ready,
    send: async (text) => socket.send(text),
    received: () => count,
    close: () => socket.close(),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function wireTable(figures: WireFigures[]): string {
  return markdownTable(
    [
      "transport",
      "packets",
      "bytes",
      "messages sent",
      "received (2 clients)",
      "thesis bytes (Table 7.1)",
      "ours ÷ thesis",
    ],
    figures.map((f) => [
      f.transport,
      f.packets.toLocaleString("en"),
      f.bytes.toLocaleString("en"),
      f.sent,
      f.received,
      f.transport === "WebSocket" ? THESIS_WEBSOCKET_BYTES.toLocaleString("en") : "—",
      f.transport === "WebSocket" ? (f.bytes / THESIS_WEBSOCKET_BYTES).toFixed(2) : "—",
    ]),
  );
}

export const wirePlot = (figures: WireFigures[]) =>
  barChart(
    "Bytes on the wire, two clients chatting for the run (Table 7.1's scenario)",
    "bytes",
    figures.map((f) => ({ label: f.transport, value: f.bytes })),
  );
