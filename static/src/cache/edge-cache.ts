import type { IncomingMessage, ServerResponse } from "node:http";
import { promisify } from "node:util";
import { brotliCompress, gzip } from "node:zlib";
import {
  type Encoding,
  isNotModified,
  keepAliveAgent,
  type Logger,
  preferredEncoding,
  weakEtag,
} from "@chat/shared";
import CachePolicy from "http-cache-semantics";
import parseRange from "range-parser";
import type { EdgeConfig } from "../config.ts";
import type { EdgeMetrics } from "../metrics.ts";
import type { CachedObject, CacheStore } from "./cache-store.ts";
import {
  fetchFromOrigin,
  type OriginResponse,
  originRequestHeaders,
  storableHeaders,
} from "./origin.ts";

const compress = { br: promisify(brotliCompress), gzip: promisify(gzip) };
const COMPRESSIBLE = /^(text\/|application\/(javascript|json|xml|manifest\+json)|image\/svg\+xml)/;
const MIN_COMPRESS_BYTES = 860;

/** How a response was produced, for Cache-Status (RFC 9211) and X-Cache. */
type Outcome =
  | { kind: "hit" }
  | { kind: "swr" }
  | { kind: "stale-if-error" }
  | { kind: "revalidated" }
  | { kind: "miss"; stored: boolean; collapsed: boolean };

type PolicyRequest = CachePolicy.Request;

/**
 * The caching half of the edge (RFC 9111 through http-cache-semantics): fresh hits from
 * memory; concurrent misses for a key collapsed into one origin fetch; stale entries
 * revalidated with their validators, served meanwhile when stale-while-revalidate allows,
 * and served when the origin fails while stale-if-error (or STALE_IF_ERROR_MAX_S) allows.
 */
export class EdgeCache {
  readonly #store: CacheStore;
  readonly #config: EdgeConfig;
  readonly #metrics: EdgeMetrics;
  readonly #log: Logger;
  readonly #origin: URL;
  readonly #agent = keepAliveAgent({ maxSockets: 256 });
  readonly #inflight = new Map<
    string,
    Promise<{ object?: CachedObject; response: OriginResponse }>
  >();

  constructor(deps: { store: CacheStore; config: EdgeConfig; metrics: EdgeMetrics; log: Logger }) {
    this.#store = deps.store;
    this.#config = deps.config;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#origin = new URL(deps.config.ORIGIN_URL);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const key = this.#store.keyFor(url, req.headers);
    const cached = this.#store.get(key);
    if (cached && isPlainHit(req, cached)) return this.#sendCached(req, res, cached, HIT);
    const policyRequest: PolicyRequest = {
      method: req.method ?? "GET",
      url,
      headers: cacheRequestHeaders(req),
    };
    if (cached) {
      const evaluation = cached.policy.evaluateRequest(policyRequest);
      if (evaluation.response && !evaluation.revalidation) return this.#send(req, res, cached, HIT);
      if (evaluation.response && evaluation.revalidation && !evaluation.revalidation.synchronous) {
        void this.#revalidate(key, cached, policyRequest, req).catch((error: unknown) =>
          this.#log.warn({ err: error, url }, "background revalidation failed"),
        );
        return this.#send(req, res, cached, { kind: "swr" });
      }
      try {
        const fresh = await this.#revalidate(key, cached, policyRequest, req);
        const outcome: Outcome =
          fresh.response.status === 304
            ? { kind: "revalidated" }
            : { kind: "miss", stored: Boolean(fresh.object), collapsed: false };
        return this.#send(req, res, fresh.object ?? fresh.response, outcome);
      } catch (error) {
        if (this.#mayServeStaleOnError(cached))
          return this.#send(req, res, cached, { kind: "stale-if-error" });
        throw error;
      }
    }
    const collapsed = this.#inflight.has(key);
    if (collapsed) this.#metrics.coalesced.inc();
    else this.#metrics.misses.inc();
    const fetched = await this.#fetchOnce(key, () => this.#fetch(url, policyRequest, req));
    // A response not shared through the cache may be personal: a waiter fetches its own.
    const result =
      collapsed && !fetched.object ? await this.#fetch(url, policyRequest, req) : fetched;
    return this.#send(req, res, result.object ?? result.response, {
      kind: "miss",
      stored: Boolean(result.object),
      collapsed,
    });
  }

  /** One origin request per key at a time; everyone else waits for its result. */
  #fetchOnce<T>(key: string, run: () => Promise<T>): Promise<T> {
    const running = this.#inflight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const started = run().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, started as Promise<{ response: OriginResponse }>);
    return started;
  }

  async #fetch(
    url: string,
    policyRequest: PolicyRequest,
    req: IncomingMessage,
    extraHeaders: Record<string, string> = {},
  ) {
    const response = await fetchFromOrigin({
      origin: this.#origin,
      method: req.method === "HEAD" ? "HEAD" : "GET",
      path: url,
      headers: {
        ...originRequestHeaders(req.headers, this.#origin.host, req.socket.remoteAddress ?? ""),
        ...extraHeaders,
      },
      agent: this.#agent,
      timeoutMs: this.#config.ORIGIN_TIMEOUT_MS,
      maxBytes: this.#config.CACHE_MAX_OBJECT_BYTES,
    });
    this.#metrics.bytesFromOrigin.inc(response.body.length);
    if (response.status >= 500)
      throw Object.assign(new Error(`origin answered ${response.status}`), { response });
    return { object: this.#storeIfAllowed(url, policyRequest, req, response), response };
  }

  /** A conditional request with the stored validators; a 304 refreshes the stored entry. */
  #revalidate(
    key: string,
    cached: CachedObject,
    policyRequest: PolicyRequest,
    req: IncomingMessage,
  ) {
    return this.#fetchOnce(key, async () => {
      const validators = cached.policy.revalidationHeaders(policyRequest) as Record<string, string>;
      const conditional: Record<string, string> = {};
      for (const name of ["if-none-match", "if-modified-since"]) {
        const value = validators[name];
        if (value) conditional[name] = value;
      }
      const fetched = await this.#fetch(req.url ?? "/", policyRequest, req, conditional);
      if (fetched.response.status !== 304) {
        this.#metrics.revalidations.inc({ outcome: "modified" });
        return fetched;
      }
      this.#metrics.revalidations.inc({ outcome: "not_modified" });
      const { policy } = cached.policy.revalidatedPolicy(policyRequest, {
        status: 304,
        headers: fetched.response.headers,
      });
      const refreshed: CachedObject = {
        ...cached,
        policy,
        freshUntil: freshUntil(policy),
        headers: { ...cached.headers, ...storableHeaders(policy.responseHeaders()) },
        hitHeaders: undefined,
      };
      this.#store.set(refreshed);
      return { object: refreshed, response: fetched.response };
    });
  }

  #storeIfAllowed(
    url: string,
    policyRequest: PolicyRequest,
    req: IncomingMessage,
    response: OriginResponse,
  ) {
    const policyResponse = { status: response.status, headers: response.headers };
    const policy = new CachePolicy(policyRequest, policyResponse, { shared: true });
    const cacheControl = String(response.headers["cache-control"] ?? "");
    const vary = String(response.headers.vary ?? "")
      .toLowerCase()
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name && name !== "accept-encoding");
    const personal =
      response.headers["set-cookie"] !== undefined && !/\bpublic\b/.test(cacheControl);
    if (!policy.storable() || personal || vary.includes("*") || response.status === 304)
      return undefined;
    const object: CachedObject = {
      key: this.#store.keyForResponse(url, vary, req.headers),
      url,
      tags: String(response.headers["surrogate-key"] ?? "")
        .split(/\s+/)
        .filter(Boolean),
      policy,
      freshUntil: freshUntil(policy),
      host: req.headers.host,
      status: response.status,
      headers: storableHeaders(response.headers),
      body: response.body,
      encoded: {},
    };
    this.#store.set(object);
    return object;
  }

  #mayServeStaleOnError(cached: CachedObject): boolean {
    const cacheControl = cached.headers["cache-control"] ?? "";
    if (/\b(must-revalidate|proxy-revalidate|no-cache)\b/.test(cacheControl)) return false;
    const declared = Number(/stale-if-error=(\d+)/.exec(cacheControl)?.[1] ?? 0);
    const overdue = cached.policy.age() - cached.policy.maxAge();
    return overdue <= Math.max(declared, this.#config.STALE_IF_ERROR_MAX_S);
  }

  /** A stored object as #sendCached does; anything else as the origin sent it, uncompressed. */
  async #send(
    req: IncomingMessage,
    res: ServerResponse,
    source: CachedObject | OriginResponse,
    outcome: Outcome,
  ) {
    if ("policy" in source) return this.#sendCached(req, res, source, outcome);
    const headers = originHeaders(source);
    const { body } = source;
    headers.vary = mergeVary(headers.vary, "Accept-Encoding");
    headers["content-length"] = String(body.length);
    headers.age = "0";
    headers["cache-status"] = cacheStatus(outcome);
    headers["x-cache"] = xCache(outcome);
    res.writeHead(source.status, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  }

  /**
   * A stored object: the hot path, its shared headers built once, only Age and status per
   * hit. A conditional request its variant's validators satisfy gets a 304.
   */
  async #sendCached(
    req: IncomingMessage,
    res: ServerResponse,
    object: CachedObject,
    outcome: Outcome,
  ) {
    const encoding = await this.#encodingFor(req, object);
    const body = encoding === "identity" ? object.body : (object.encoded[encoding] ?? object.body);
    const age = String(Math.round(object.policy.age()));
    const status = cacheStatus(outcome);
    const xcache = xCache(outcome);
    if (outcome.kind === "hit") this.#metrics.hits.inc();
    else if (outcome.kind === "swr" || outcome.kind === "stale-if-error")
      this.#metrics.staleServed.inc();
    const shared = hitHeaders(object, encoding, body);
    const perResponse = ["age", age, "cache-status", status, "x-cache", xcache];
    const conditional = req.headers["if-none-match"] ?? req.headers["if-modified-since"];
    const validated = object.status === 200 && conditional !== undefined; // not a stored 404
    if (validated && isNotModified(req.headers, variantValidators(object, encoding))) {
      res.writeHead(304, [
        ...pickHeaders(shared, (name) => NOT_MODIFIED_HEADERS.has(name)),
        ...perResponse,
      ]);
      res.end();
      return;
    }
    const range = rangeToSend(req, object, encoding, body.length);
    const sent = range ? sendRange(res, range, body, shared, perResponse) : body;
    if (!range) {
      res.writeHead(object.status, [...shared, ...perResponse]);
      res.end(req.method === "HEAD" ? undefined : body);
    }
    if (outcome.kind !== "miss" && req.method !== "HEAD")
      this.#metrics.bytesFromCache.inc(sent.length);
  }

  /** Compresses a stored object's body once per encoding and keeps the result with it. */
  async #encodingFor(req: IncomingMessage, source: CachedObject): Promise<Encoding> {
    const wanted = preferredEncoding(req.headers["accept-encoding"]);
    const type = String(source.headers["content-type"] ?? "");
    if (
      wanted === "identity" ||
      !COMPRESSIBLE.test(type) ||
      source.body.length < MIN_COMPRESS_BYTES
    ) {
      return "identity";
    }
    if (!source.encoded[wanted]) {
      source.encoded[wanted] = await compress[wanted](source.body);
      this.#store.set(source); // re-measured: the variant counts against CACHE_MAX_BYTES
    }
    return wanted;
  }
}

/**
 * What every hit on an object shares, as writeHead's flat [name, value, …] list, memoized on
 * the object per encoding. The origin's Date stands (RFC 9111: caches do not rewrite it);
 * the Age of each hit is added by the caller.
 */
function hitHeaders(object: CachedObject, encoding: Encoding, body: Buffer): string[] {
  const memo = object.hitHeaders?.[encoding];
  if (memo) return memo;
  const { age: _age, ...headers } = object.headers;
  if (encoding !== "identity") {
    headers["content-encoding"] = encoding;
    if (headers.etag) headers.etag = weakEtag(headers.etag);
  }
  headers.vary = mergeVary(headers.vary, "Accept-Encoding");
  headers["content-length"] = String(body.length);
  if (object.status === 200) headers["accept-ranges"] = "bytes";
  const flat = Object.entries(headers).flat();
  object.hitHeaders = { ...object.hitHeaders, [encoding]: flat };
  return flat;
}

/** A 206 with the one range asked for, or a 416 when none of the body is in it; the bytes sent. */
function sendRange(
  res: ServerResponse,
  range: { start: number; end: number } | "unsatisfiable",
  body: Buffer,
  shared: string[],
  perResponse: string[],
): Buffer {
  const headers = pickHeaders(shared, (name) => name !== "content-length");
  if (range === "unsatisfiable") {
    res.writeHead(416, [...headers, "content-range", `bytes */${body.length}`, ...perResponse]);
    res.end();
    return Buffer.alloc(0);
  }
  const part = body.subarray(range.start, range.end + 1);
  res.writeHead(206, [
    ...headers,
    "content-range",
    `bytes ${range.start}-${range.end}/${body.length}`,
    "content-length",
    String(part.length),
    ...perResponse,
  ]);
  res.end(part);
  return part;
}

/** The validators of the variant sent: an encoded one's ETag is weak (see hitHeaders). */
function variantValidators(object: CachedObject, encoding: Encoding) {
  const { etag, "last-modified": lastModified } = object.headers;
  return {
    etag: etag !== undefined && encoding !== "identity" ? weakEtag(etag) : etag,
    "last-modified": lastModified,
  };
}

/**
 * The part of a stored 200 a GET's Range asks for (RFC 9110 §14): one range, or
 * "unsatisfiable". None (the whole body) for a malformed Range, several ranges (allowed:
 * §14.2; multipart answers are rarely worth it) or an If-Range the variant does not satisfy.
 */
function rangeToSend(
  req: IncomingMessage,
  object: CachedObject,
  encoding: Encoding,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const header = req.headers.range;
  if (header === undefined || req.method !== "GET" || object.status !== 200) return undefined;
  const ifRange = req.headers["if-range"]?.toString();
  if (!ifRangeHolds(ifRange, variantValidators(object, encoding))) return undefined;
  const ranges = parseRange(size, header, { combine: true });
  if (ranges === -1) return "unsatisfiable";
  if (ranges === -2 || ranges.type !== "bytes" || ranges.length !== 1) return undefined;
  return ranges[0];
}

/** If-Range holds for a strong ETag equal to it, or a Last-Modified date equal to it (§13.1.5). */
function ifRangeHolds(
  ifRange: string | undefined,
  validators: { etag?: string; "last-modified"?: string },
): boolean {
  if (ifRange === undefined) return true;
  if (ifRange.startsWith('"') || ifRange.startsWith("W/"))
    return !ifRange.startsWith("W/") && ifRange === validators.etag;
  return ifRange === validators["last-modified"];
}

/** What a 304 repeats of the 200 it stands for (RFC 9110 §15.4.5). */
const NOT_MODIFIED_HEADERS = new Set([
  "cache-control",
  "content-location",
  "etag",
  "expires",
  "vary",
]);

/** The entries of a flat [name, value, …] header list whose names `keep` accepts. */
function pickHeaders(flat: string[], keep: (name: string) => boolean): string[] {
  const kept: string[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i] ?? "";
    if (keep(name)) kept.push(name, flat[i + 1] ?? "");
  }
  return kept;
}

const HIT: Outcome = { kind: "hit" };

/** When the policy's freshness lifetime ends (timeToLive() would add the stale windows). */
function freshUntil(policy: CachePolicy): number {
  return Date.now() + Math.max(0, policy.maxAge() - policy.age()) * 1000;
}

/**
 * A fresh object asked for with no cache directives, on the Host it was stored for (the key
 * already matched its Vary): the policy's answer would be a hit, so it is not asked again.
 */
function isPlainHit(req: IncomingMessage, object: CachedObject): boolean {
  return (
    Date.now() < object.freshUntil &&
    req.headers["cache-control"] === undefined &&
    req.headers.pragma === undefined &&
    req.headers.host === object.host
  );
}

/** The request as the cache policy sees it: encoding and the client's conditionals are the edge's business. */
function cacheRequestHeaders(req: IncomingMessage): CachePolicy.Headers {
  const {
    "accept-encoding": _encoding,
    "if-none-match": _etag,
    "if-modified-since": _since,
    ...headers
  } = req.headers;
  return headers;
}

function originHeaders(response: OriginResponse): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = storableHeaders(response.headers);
  const cookies = response.headers["set-cookie"];
  if (cookies) headers["set-cookie"] = cookies; // passed to this one client, never stored
  return headers;
}

function mergeVary(existing: string | string[] | undefined, name: string): string {
  const current = String(existing ?? "");
  return current.toLowerCase().includes(name.toLowerCase())
    ? current
    : current
      ? `${current}, ${name}`
      : name;
}

function cacheStatus(outcome: Outcome): string {
  switch (outcome.kind) {
    case "hit":
      return "chat-edge; hit";
    case "swr":
      return "chat-edge; hit; detail=stale-while-revalidate";
    case "stale-if-error":
      return "chat-edge; hit; detail=stale-if-error";
    case "revalidated":
      return "chat-edge; fwd=stale; fwd-status=304";
    case "miss":
      return `chat-edge; fwd=miss${outcome.stored ? "; stored" : ""}${outcome.collapsed ? "; collapsed" : ""}`;
  }
}

function xCache(outcome: Outcome): string {
  return {
    hit: "HIT",
    swr: "STALE",
    "stale-if-error": "STALE",
    revalidated: "REVALIDATED",
    miss: "MISS",
  }[outcome.kind];
}
