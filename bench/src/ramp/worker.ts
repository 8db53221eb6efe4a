/**
 * One load-generator process of the ramp benchmark (forked by ramp.ts). It opens WebSocket
 * clients at a steady rate from its own 127.0.0.x source address, each joining the default
 * room `chat` over Phoenix Channels (vsn 2.0.0) and heartbeating every 25 s, as the thesis's
 * Tsung scenario did. Arrivals of messages whose body starts with the marker prefix are
 * stamped with the host's monotonic clock (process.hrtime: CLOCK_MONOTONIC, shared by every
 * process on the host), keyed by the rest of the body.
 */
import WebSocket from "ws";
import { SourcePorts } from "../../../gateway/src/upstreams/source-ports.ts";
import { PLAIN_JOINED } from "../fanout/plain-protocol.ts";

export type GeneratorProtocol = "phoenix" | "actioncable" | "socketio" | "plain";

const PATHS: Record<GeneratorProtocol, string> = {
  phoenix: "/socket/websocket?vsn=2.0.0",
  actioncable: "/cable",
  socketio: "/socket.io/?EIO=4&transport=websocket",
  plain: "/",
};
const CABLE_CHAT = JSON.stringify({ channel: "ChatChannel", room: "chat" });

export interface WorkerConfig {
  url: string;
  /** Phoenix Channels (ours), Action Cable (ours or Rails), Socket.IO's Engine.IO v4 framing,
   * or plain JSON from a bare `ws` server. */
  protocol?: GeneratorProtocol;
  clients: number;
  ratePerSecond: number;
  sourceAddress: string;
  heartbeatMs: number;
}

/** What the clients did: connections tried, joined, failed, closed; bytes on their sockets. */
export interface ClientCounts {
  attempted: number;
  accepted: number;
  errors: number;
  closed: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface WorkerReport extends ClientCounts {
  /** Why clients failed (at most once per client: an error, a refused join, an early close). */
  errorReasons: Record<string, number>;
  /**
   * By marked message (the body after the prefix): hrtime (ns, as strings) of each arrival.
   * Only when asked for: at 100,000 clients, sending them all every poll would load the host.
   */
  arrivals: Record<string, string[]>;
  /** Marked arrivals so far, over all messages. */
  arrivalCount: number;
  cpuMs: number;
}

type ParentMessage =
  | { type: "start"; config: WorkerConfig }
  | { type: "report"; arrivals?: boolean }
  | { type: "marker"; prefix: string }
  | { type: "stop" };

const sockets: WebSocket[] = [];
const state = {
  attempted: 0,
  accepted: 0,
  errors: 0,
  closed: 0,
  arrivals: {} as Record<string, string[]>,
  errorReasons: {} as Record<string, number>,
};

/** One client's outcome so far: a client counts once, as joined or as failed. */
interface Outcome {
  joined: boolean;
  failed: boolean;
}
function joined(outcome: Outcome): void {
  if (outcome.joined || outcome.failed) return;
  outcome.joined = true;
  state.accepted++;
}
/** Counts a failure once per client; a connection lost after its join counts too. */
function failed(outcome: Outcome, reason: string): void {
  if (outcome.failed) return;
  outcome.failed = true;
  state.errors++;
  state.errorReasons[reason] = (state.errorReasons[reason] ?? 0) + 1;
}
let marker: string | undefined;

/**
 * A generator owns its source address, so it picks its ports itself (the gateway's rotation):
 * with port 0, bind() makes the kernel search for a free port, which costs milliseconds of
 * kernel time per connection once tens of thousands are open.
 */
let sourcePorts: SourcePorts | undefined;
// Bytes of sockets already closed, so totals survive their close.
let closedBytes = { sent: 0, received: 0 };

function open(config: WorkerConfig, portsTried = 0): void {
  if (portsTried === 0) state.attempted++;
  const protocol = config.protocol ?? "phoenix";
  const socket = new WebSocket(`${config.url}${PATHS[protocol]}`, {
    ...sourcePorts?.take(),
    perMessageDeflate: false,
  });
  sockets.push(socket);
  const outcome: Outcome = { joined: false, failed: false };
  let ref = 1;
  let heartbeat: NodeJS.Timeout | undefined;
  socket.on("open", () => {
    if (protocol !== "phoenix") return; // Engine.IO and Action Cable servers speak first
    socket.send(JSON.stringify(["1", String(ref++), "chat", "phx_join", {}]));
    heartbeat = setInterval(
      () => socket.send(JSON.stringify([null, String(ref++), "phoenix", "heartbeat", {}])),
      config.heartbeatMs,
    );
  });
  socket.on("message", (data: Buffer) => {
    const text = data.toString();
    const control = CONTROL[protocol](socket, text, outcome);
    if (control) return;
    if (marker) stamp(text, marker);
  });
  socket.on("error", (error: NodeJS.ErrnoException) => {
    // A port something else holds on this address: not the server's fault, take the next one.
    if (error.code === "EADDRINUSE" && portsTried < 100) {
      sockets.splice(sockets.indexOf(socket), 1);
      socket.removeAllListeners("close");
      open(config, portsTried + 1);
    } else failed(outcome, `${outcome.joined ? "after" : "before"} joining: ${reasonOf(error)}`);
  });
  socket.on("close", (code: number) => {
    clearInterval(heartbeat);
    if (!outcome.joined) failed(outcome, `closed before joining (code ${code})`);
    state.closed++;
    const raw = (socket as unknown as { _socket?: { bytesWritten: number; bytesRead: number } })
      ._socket;
    closedBytes = {
      sent: closedBytes.sent + (raw?.bytesWritten ?? 0),
      received: closedBytes.received + (raw?.bytesRead ?? 0),
    };
  });
}

/** An error's message without the source address and port, so that failures group. */
const reasonOf = (error: Error) => error.message.replace(/ - Local \(.*\)$/, "");

/** The join reply; true when the frame was one. */
function phoenixControl(_socket: WebSocket, text: string, outcome: Outcome): boolean {
  if (!(text.includes('"phx_reply"') && text.startsWith('["1","1"'))) return false;
  if (text.includes('"ok"')) joined(outcome);
  else failed(outcome, `join refused: ${text.slice(0, 200)}`);
  return true;
}

/** The bare server's greeting; true when the frame was it. */
function plainControl(_socket: WebSocket, text: string, outcome: Outcome): boolean {
  if (text !== PLAIN_JOINED) return false;
  joined(outcome);
  return true;
}

/** Welcome → subscribe to ChatChannel; confirm or reject; pings. True when handled. */
function cableControl(socket: WebSocket, text: string, outcome: Outcome): boolean {
  if (text.includes('"message":{')) return false; // a broadcast
  if (text.includes('"type":"welcome"'))
    socket.send(JSON.stringify({ command: "subscribe", identifier: CABLE_CHAT }));
  else if (text.includes('"type":"confirm_subscription"')) joined(outcome);
  else if (text.includes('"type":"reject_subscription"')) failed(outcome, "subscription rejected");
  return true;
}

/** Engine.IO open → connect to the namespace; connected; ping → pong. True when handled. */
function socketIoControl(socket: WebSocket, text: string, outcome: Outcome): boolean {
  if (text.startsWith("0{")) socket.send("40");
  else if (text.startsWith("40")) joined(outcome);
  else if (text === "2") socket.send("3");
  else if (text.startsWith("44")) failed(outcome, `namespace refused: ${text.slice(0, 200)}`);
  else return false;
  return true;
}

/** Each protocol's handling of the frames that are not broadcasts; true when handled. */
const CONTROL: Record<
  GeneratorProtocol,
  (socket: WebSocket, text: string, outcome: Outcome) => boolean
> = {
  phoenix: phoenixControl,
  actioncable: cableControl,
  socketio: socketIoControl,
  plain: plainControl,
};

/** Records the arrival of a marked message, keyed by the body after the marker. */
function stamp(text: string, prefix: string): void {
  const at = text.indexOf(prefix);
  if (at < 0) return;
  const now = process.hrtime.bigint().toString();
  const key = text.slice(at + prefix.length, text.indexOf('"', at));
  const times = state.arrivals[key] ?? [];
  times.push(now);
  state.arrivals[key] = times;
}

function report(withArrivals: boolean): WorkerReport {
  let sent = closedBytes.sent;
  let received = closedBytes.received;
  for (const socket of sockets) {
    if (socket.readyState === WebSocket.CLOSED) continue;
    const raw = (socket as unknown as { _socket?: { bytesWritten: number; bytesRead: number } })
      ._socket;
    sent += raw?.bytesWritten ?? 0;
    received += raw?.bytesRead ?? 0;
  }
  const cpu = process.cpuUsage();
  return {
    ...state,
    arrivals: withArrivals ? state.arrivals : {},
    arrivalCount: Object.values(state.arrivals).reduce((n, times) => n + times.length, 0),
    bytesSent: sent,
    bytesReceived: received,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** Opens the clients in ticks of 10 ms so the rate holds without a timer per client. */
function ramp(config: WorkerConfig): void {
  const started = performance.now();
  const tick = setInterval(() => {
    const due = Math.min(
      config.clients,
      Math.floor(((performance.now() - started) / 1000) * config.ratePerSecond),
    );
    while (state.attempted < due) open(config);
    if (state.attempted >= config.clients) clearInterval(tick);
  }, 10);
}

// A benchmark stopped by Ctrl-C must not leave its generators holding thousands of sockets.
process.on("disconnect", () => process.exit(0));
process.on("message", (message: ParentMessage) => {
  switch (message.type) {
    case "start":
      sourcePorts = new SourcePorts([message.config.sourceAddress], { index: 0, count: 1 });
      ramp(message.config);
      break;
    case "marker":
      marker = message.prefix;
      break;
    case "report":
      process.send?.({ type: "report", report: report(message.arrivals === true) });
      break;
    case "stop":
      for (const socket of sockets) socket.terminate();
      setTimeout(() => process.exit(0), 100);
      break;
  }
});
