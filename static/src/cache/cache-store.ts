import type CachePolicy from "http-cache-semantics";
import { LRUCache } from "lru-cache";
import type { EdgeMetrics } from "../metrics.ts";

/** A stored response: its policy, the identity body, and compressed variants made once each. */
export interface CachedObject {
  key: string;
  url: string;
  tags: string[];
  policy: CachePolicy;
  /** Epoch ms until which the policy serves it without revalidation, and the Host it was
   * stored for: a plain request within that time is a hit without asking the policy again. */
  freshUntil: number;
  host: string | undefined;
  status: number;
  /** The origin's headers, minus hop-by-hop and framing (length and encoding are the edge's). */
  headers: Record<string, string>;
  body: Buffer;
  encoded: Partial<Record<"br" | "gzip", Buffer>>;
  /** The headers every hit shares, per encoding, as writeHead's flat list: built on first use. */
  hitHeaders?: Partial<Record<"identity" | "br" | "gzip", string[]>>;
}

/** Bookkeeping per object beyond its bodies; keeps many tiny objects from looking free. */
const OBJECT_OVERHEAD_BYTES = 512;

function sizeOf(object: CachedObject): number {
  const encoded = (object.encoded.br?.length ?? 0) + (object.encoded.gzip?.length ?? 0);
  return (
    object.body.length + encoded + JSON.stringify(object.headers).length + OBJECT_OVERHEAD_BYTES
  );
}

/**
 * The cache: an LRU bounded in bytes, keyed by URL plus the request headers the origin
 * varies on (Accept-Encoding aside: the edge encodes variants itself). Indexes by URL and
 * by Surrogate-Key tag serve purges.
 */
export class CacheStore {
  readonly #lru: LRUCache<string, CachedObject>;
  readonly #varyByUrl = new Map<string, string[]>();
  readonly #keysByUrl = new Map<string, Set<string>>();
  readonly #keysByTag = new Map<string, Set<string>>();
  readonly #metrics: EdgeMetrics;

  constructor(maxBytes: number, metrics: EdgeMetrics) {
    this.#metrics = metrics;
    this.#lru = new LRUCache<string, CachedObject>({
      maxSize: maxBytes,
      sizeCalculation: sizeOf,
      dispose: (object, key, reason) => {
        if (reason === "set") return; // replaced under the same key: the indexes still hold
        this.#unindex(key, object);
        if (reason === "evict") this.#metrics.evictions.inc();
        this.#report();
      },
    });
  }

  /** The key a request maps to, given what the URL's stored responses vary on. */
  keyFor(url: string, headers: Record<string, string | string[] | undefined>): string {
    const vary = this.#varyByUrl.get(url) ?? [];
    if (vary.length === 0) return url;
    return [url, ...vary.map((name) => `${name}=${String(headers[name] ?? "")}`)].join("\n");
  }

  /** Records the response's Vary for its URL, returning the key it is stored under. */
  keyForResponse(
    url: string,
    vary: string[],
    headers: Record<string, string | string[] | undefined>,
  ): string {
    this.#varyByUrl.set(url, vary);
    return this.keyFor(url, headers);
  }

  get(key: string): CachedObject | undefined {
    return this.#lru.get(key);
  }

  set(object: CachedObject): void {
    this.#lru.set(object.key, object);
    this.#index(object);
    this.#report();
  }

  purgeUrl(url: string): number {
    return this.#purge(this.#keysByUrl.get(url));
  }

  purgeTag(tag: string): number {
    return this.#purge(this.#keysByTag.get(tag));
  }

  #purge(keys: Set<string> | undefined): number {
    let removed = 0;
    for (const key of [...(keys ?? [])]) if (this.#lru.delete(key)) removed++;
    this.#metrics.purged.inc(removed);
    return removed;
  }

  #index(object: CachedObject): void {
    add(this.#keysByUrl, object.url, object.key);
    for (const tag of object.tags) add(this.#keysByTag, tag, object.key);
  }

  #unindex(key: string, object: CachedObject): void {
    remove(this.#keysByUrl, object.url, key);
    for (const tag of object.tags) remove(this.#keysByTag, tag, key);
  }

  #report(): void {
    this.#metrics.objects.set(this.#lru.size);
    this.#metrics.bytes.set(this.#lru.calculatedSize);
  }
}

function add(index: Map<string, Set<string>>, name: string, key: string): void {
  const keys = index.get(name) ?? new Set();
  keys.add(key);
  index.set(name, keys);
}

function remove(index: Map<string, Set<string>>, name: string, key: string): void {
  const keys = index.get(name);
  keys?.delete(key);
  if (keys?.size === 0) index.delete(name);
}
