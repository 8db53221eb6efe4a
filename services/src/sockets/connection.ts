import type { Socket } from "node:net";
import { CLOSE, type Logger, type User } from "@chat/shared";
import type { WebSocket } from "ws";
import * as ws from "ws";
import type { Drainable, Drainer, Transport } from "../lifecycle/drainer.ts";
import { FrameBucket } from "../limits/rate-limiter.ts";
import type { NodeMetrics } from "../metrics.ts";

/** What a wire protocol (Phoenix, Action Cable, the thesis socket) does with a connection. */
export interface SocketProtocol {
  /** Returns the work the frame started, if any: while it runs, what the socket sends in
   * one tick leaves in one write (a push's reply and the sender's own copy of the message). */
  onText(text: string): void | Promise<void>;
  /** Binary frames: these protocols speak JSON text only. */
  onBinary(): void;
  /** Frames arriving faster than the per-connection limit. */
  onFlood(text: string): void;
  /** The node drains: tell the client to reconnect elsewhere, then close. */
  onDrain(): void;
  onClose(): void;
}

/** What every socket of a route shares: made once, not kept per connection. */
export interface SocketSettings {
  transport: Transport;
  maxBufferBytes: number;
  framesPerSecond: number;
  frameBurst: number;
  drainer: Drainer;
  metrics: NodeMetrics;
  log: Logger;
}

/**
 * One client socket as every protocol sees it. Sends are bounded: a client that stops
 * reading fills its buffer and is closed (4503) instead of growing the node's memory; it
 * resumes from its last seq on reconnect. Inbound frames pass a token bucket.
 */
export class SocketConnection implements Drainable {
  readonly user: User;
  readonly address: string;
  readonly #raw: WebSocket;
  readonly #settings: SocketSettings;
  readonly #frames: FrameBucket;
  #protocol: SocketProtocol | undefined;
  #closed = false;
  /** The turns of the event loop (see #coalesce) in which it was last written and corked. */
  #writtenInTurn = -1;
  #corkedInTurn = -1;
  /** Inbound frames whose work is still running. */
  #handling = 0;

  constructor(raw: WebSocket, settings: SocketSettings, user: User, address: string) {
    this.#raw = raw;
    this.#settings = settings;
    this.user = user;
    this.address = address;
    this.#frames = new FrameBucket(settings.framesPerSecond, settings.frameBurst);
  }

  get transport(): Transport {
    return this.#settings.transport;
  }

  get closed(): boolean {
    return this.#closed || this.#raw.readyState !== this.#raw.OPEN;
  }

  attach(protocol: SocketProtocol): void {
    this.#protocol = protocol;
    // A protocol may close the socket while it is built (Action Cable's refused token).
    if (this.#closed) protocol.onClose();
    else this.#settings.drainer.add(this);
  }

  endForDrain(): void {
    this.#protocol?.onDrain();
  }

  receive(data: string | ArrayBuffer): void {
    const protocol = this.#protocol;
    if (!protocol || this.#closed) return;
    if (typeof data !== "string") protocol.onBinary();
    else if (!this.#frames.take()) protocol.onFlood(data);
    else this.#handle(protocol, data);
  }

  #handle(protocol: SocketProtocol, data: string): void {
    this.#handling++;
    Promise.resolve(protocol.onText(data))
      .catch((error: unknown) =>
        this.#settings.log.error({ err: error }, "socket frame handler failed"),
      )
      .finally(() => this.#handling--);
  }

  /**
   * For replays: undefined while the client keeps up, else a promise that settles once its
   * buffer is below half the bound again (or the socket closes). A client that reads nothing
   * for `giveUpMs` is cut off like any slow consumer.
   */
  whenWritable(giveUpMs = 30_000): Promise<void> | undefined {
    const threshold = this.#settings.maxBufferBytes / 2;
    if (this.#raw.bufferedAmount < threshold) return undefined;
    return new Promise((resolve) => {
      const started = Date.now();
      const check = setInterval(() => {
        if (this.closed || this.#raw.bufferedAmount < threshold) {
          clearInterval(check);
          resolve();
        } else if (Date.now() - started > giveUpMs) {
          clearInterval(check);
          this.close(CLOSE.slowConsumer, "slow_consumer");
          resolve();
        }
      }, 10);
    });
  }

  /**
   * Sends a text frame (a string, or its UTF-8 bytes shared with other sockets) unless the
   * client is too far behind, in which case it is cut off.
   */
  send(text: string | Buffer): void {
    if (this.closed) return;
    if (this.#raw.bufferedAmount + text.length > this.#settings.maxBufferBytes) {
      this.close(CLOSE.slowConsumer, "slow_consumer");
      return;
    }
    this.#coalesce();
    if (typeof text === "string" || !this.#writeFramed(text)) this.#raw.send(text, TEXT);
  }

  /**
   * A shared payload (a broadcast) goes out as one frame built once for every socket and one
   * write, as Socket.IO does with `ws`'s sender, instead of a header per socket and a writev.
   * Only when the sender is idle (nothing queued behind a compression or a blob).
   */
  #writeFramed(payload: Buffer): boolean {
    const sender = (this.#raw as unknown as { _sender?: WsSenderInternals })._sender;
    // Internals of another major version of `ws` take its public path instead.
    if (sender?._state !== SENDER_IDLE || sender._queue?.length !== 0) return false;
    if (typeof sender.sendFrame !== "function") return false;
    sender.sendFrame([framed(payload)]);
    return true;
  }

  /**
   * Coalesces writes: the first frame a socket is sent in a turn of the event loop is
   * written at once, and whatever follows in the same turn leaves in one write at its end.
   * So a broadcast's first writes never wait for the rest to be queued (corking every socket
   * did that), while a node that falls behind, handed several messages in one turn, writes
   * them together: fewer system calls, the kernel's share of each delivery. A client's own
   * frame corks its socket at once, so its reply and its copy of the message leave together.
   */
  #coalesce(): void {
    const turn = SocketConnection.#turn();
    if (this.#writtenInTurn !== turn && this.#handling === 0) {
      this.#writtenInTurn = turn; // the turn's first frame: written at once
      return;
    }
    if (this.#corkedInTurn === turn) return;
    this.#corkedInTurn = turn;
    this.#socket?.cork();
    SocketConnection.#corked.push(this);
  }

  /** The current turn's number; the first call in a turn schedules the turn's end. */
  static #turn(): number {
    if (!SocketConnection.#turnEnding) {
      SocketConnection.#turnEnding = true;
      setImmediate(SocketConnection.#endTurn);
    }
    return SocketConnection.#turnNumber;
  }

  static #turnNumber = 0;
  static #turnEnding = false;
  /** Sockets corked in this turn, uncorked (each one write) as it ends. */
  static readonly #corked: SocketConnection[] = [];
  static #endTurn(): void {
    SocketConnection.#turnNumber++;
    SocketConnection.#turnEnding = false;
    for (const connection of SocketConnection.#corked.splice(0)) connection.#socket?.uncork();
  }

  /** `ws` exposes its socket as `_socket`. */
  get #socket(): Socket | undefined {
    return (this.#raw as unknown as { _socket?: Socket })._socket;
  }

  close(close: { code: number; reason: string }, metricReason: string): void {
    if (this.#closed) return;
    this.#settings.metrics.socketsClosed.inc({ reason: metricReason });
    this.#raw.close(close.code, close.reason);
    // A peer that never completes the closing handshake must not keep the socket.
    setTimeout(() => this.#raw.terminate(), 5000).unref();
    this.ended();
  }

  /** The socket is gone, whoever closed it; idempotent. */
  ended(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#settings.drainer.remove(this);
    this.#protocol?.onClose();
  }
}

/** Buffers go out as text frames too: they hold JSON. */
const TEXT = { binary: false } as const;

/** `ws`'s Sender as of 8.x: state 0 is DEFAULT (not deflating or reading a blob). */
interface WsSenderInternals {
  _state: number;
  _queue?: unknown[];
  sendFrame?: (list: Buffer[]) => void;
}
const SENDER_IDLE = 0;
/** `ws` exports its Sender (unlike its typings): its framing is reused, not rewritten. */
interface WsWithSender {
  Sender: { frame(data: Buffer, options: typeof FRAME_OPTIONS): Buffer[] };
}

/** Each shared payload's whole frame (an unmasked, final text frame), kept while it lives. */
const frames = new WeakMap<Buffer, Buffer>();
function framed(payload: Buffer): Buffer {
  let frame = frames.get(payload);
  if (!frame) {
    const parts = (ws as unknown as WsWithSender).Sender.frame(payload, FRAME_OPTIONS);
    frame = Buffer.concat(parts);
    frames.set(payload, frame);
  }
  return frame;
}
const FRAME_OPTIONS = { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false };
