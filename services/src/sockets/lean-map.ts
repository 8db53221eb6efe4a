/**
 * A string-keyed map for what one socket holds per topic: most sockets join a single topic,
 * so the first entry is kept in two fields and a Map (~190 B with its table) is made only
 * when a second key arrives. The subset of Map's API the protocols use.
 */
export class LeanMap<V> {
  #key: string | undefined;
  #value: V | undefined;
  #map: Map<string, V> | undefined;

  get size(): number {
    if (this.#map) return this.#map.size;
    return this.#key === undefined ? 0 : 1;
  }

  get(key: string): V | undefined {
    if (this.#map) return this.#map.get(key);
    return key === this.#key ? this.#value : undefined;
  }

  has(key: string): boolean {
    if (this.#map) return this.#map.has(key);
    return key === this.#key;
  }

  set(key: string, value: V): this {
    if (this.#map) this.#map.set(key, value);
    else if (this.#key === undefined || this.#key === key) {
      this.#key = key;
      this.#value = value;
    } else {
      this.#map = new Map([[this.#key, this.#value as V]]);
      this.#map.set(key, value);
      this.#clearField();
    }
    return this;
  }

  delete(key: string): boolean {
    if (this.#map) return this.#map.delete(key);
    if (key !== this.#key) return false;
    this.#clearField();
    return true;
  }

  values(): Iterable<V> {
    if (this.#map) return this.#map.values();
    return this.#key === undefined ? [] : [this.#value as V];
  }

  clear(): void {
    this.#map = undefined;
    this.#clearField();
  }

  #clearField(): void {
    this.#key = undefined;
    this.#value = undefined;
  }
}
