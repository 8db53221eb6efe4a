/**
 * One timer for a set of sockets instead of one each, as Action Cable's server beats every
 * connection from one timer: a Timeout with its closure costs ~250 B of heap per socket,
 * and re-arming it on every frame costs CPU. Every `intervalMs` it hands `visit` all of its
 * members; its timer runs only while it has any.
 */
export class Sweep<Member> {
  readonly #members = new Set<Member>();
  readonly #intervalMs: number;
  readonly #visit: (members: ReadonlySet<Member>) => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(intervalMs: number, visit: (members: ReadonlySet<Member>) => void) {
    this.#intervalMs = intervalMs;
    this.#visit = visit;
  }

  add(member: Member): void {
    this.#members.add(member);
    this.#timer ??= setInterval(() => this.#visit(this.#members), this.#intervalMs).unref();
  }

  delete(member: Member): void {
    this.#members.delete(member);
    if (this.#members.size > 0 || !this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
