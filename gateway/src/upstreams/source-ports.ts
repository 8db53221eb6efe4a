/** Where an upstream connection comes from: a source address and a port this worker owns. */
export interface SourcePort {
  localAddress: string;
  localPort: number;
}

const FIRST_PORT = 1024;
const LAST_PORT = 65535;

/**
 * Source ports for upstream WebSockets, picked by the gateway instead of the kernel. Without
 * a port, connect() searches for a free 4-tuple, and Linux tries ports of one parity first:
 * past ~14k connections to one node each search scans thousands of ports (11% of the machine's
 * CPU at 88,000 clients). Each worker owns a slice of the ports on every SOURCE_ADDRESS, so a
 * bind is one lookup; the same port serves connections to different nodes.
 */
export class SourcePorts {
  readonly #addresses: readonly string[];
  readonly #first: number;
  readonly #size: number;
  #next = 0;

  constructor(addresses: readonly string[], worker: { index: number; count: number }) {
    this.#addresses = addresses;
    const span = LAST_PORT - FIRST_PORT + 1;
    this.#size = Math.floor(span / worker.count);
    this.#first = FIRST_PORT + (worker.index % worker.count) * this.#size;
  }

  /** The next source in turn, or undefined when no SOURCE_ADDRESSES are set (the OS picks). */
  take(): SourcePort | undefined {
    if (this.#addresses.length === 0) return undefined;
    const turn = this.#next++;
    const localAddress = this.#addresses[turn % this.#addresses.length] as string;
    const localPort = this.#first + (Math.floor(turn / this.#addresses.length) % this.#size);
    return { localAddress, localPort };
  }
}
