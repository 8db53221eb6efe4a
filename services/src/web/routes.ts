import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import {
  ChatError,
  type Encoding,
  isNotModified,
  PRECOMPRESSED_SUFFIX,
  preferredEncoding,
} from "@chat/shared";
import type { Context } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { App, NodeServices } from "../http/context.ts";

/** One encoding of a file: its bytes and the ETag that names them. */
interface Representation {
  body: Uint8Array<ArrayBuffer>;
  etag: string;
}

interface StaticFile extends Representation {
  type: string;
  cacheControl: string;
  /** The build's brotli and gzip siblings, where compressing saved bytes. */
  encoded: Partial<Record<Exclude<Encoding, "identity">, Representation>>;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};
/** Hashed names never change content: caches may keep them for a year. */
const IMMUTABLE = "public, max-age=31536000, immutable";
/** The page names the current assets: short-lived, revalidated by ETag, so a deploy shows at once. */
const PAGE = "public, max-age=5, stale-while-revalidate=30";

/**
 * The origin side of the edge: the built web client (`npm run build` → STATIC_DIR), held in
 * memory. `/` and `/chat` are the page (the thesis's chat page is `/chat`); `/assets/*`
 * the content-hashed bundle.
 */
export function webRoutes(app: App, { config, log }: NodeServices): void {
  let files = new Map<string, StaticFile>();
  try {
    files = loadBuild(config.STATIC_DIR); // once at start-up: a few small files
  } catch (error) {
    log.warn({ err: error, dir: config.STATIC_DIR }, "web client not built; run `npm run build`");
  }
  const serve = (c: Context, name: string) => {
    const file = files.get(name);
    if (!file)
      throw new ChatError(
        "not_found",
        files.size ? `no asset ${name}` : "the web client is not built: run `npm run build`",
      );
    const encoding = preferredEncoding(c.req.header("accept-encoding"));
    const chosen = (encoding !== "identity" && file.encoded[encoding]) || file;
    c.header("ETag", chosen.etag);
    c.header("Cache-Control", file.cacheControl);
    c.header("Vary", "Accept-Encoding");
    c.header("Surrogate-Key", name === "index.html" ? "page" : "assets");
    if (isNotModified(c.req.header(), { etag: chosen.etag })) return c.body(null, 304);
    if (chosen !== file) c.header("Content-Encoding", encoding);
    return c.body(chosen.body, 200, { "Content-Type": file.type });
  };
  for (const path of ["/", "/chat", "/assets/*"]) app.use(path, pageSecurity);
  app.get("/", (c) => serve(c, "index.html"));
  app.get("/chat", (c) => serve(c, "index.html"));
  app.get("/assets/:file", (c) => serve(c, `assets/${c.req.param("file")}`));
}

/**
 * The page loads only its own files and talks only to its own origin, so even text that
 * slipped past escaping could run no script. No HSTS: TLS, if any, ends in front of the edge,
 * and whoever runs it decides.
 */
const pageSecurity = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'", "data:"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'none'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
  xFrameOptions: "DENY", // as frame-ancestors 'none' says, for browsers without CSP
  strictTransportSecurity: false,
});

function loadBuild(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const add = (name: string, cacheControl: string) => {
    const encoded: StaticFile["encoded"] = {};
    for (const [encoding, suffix] of Object.entries(PRECOMPRESSED_SUFFIX) as [
      keyof typeof PRECOMPRESSED_SUFFIX,
      string,
    ][]) {
      const sibling = join(dir, name + suffix);
      if (existsSync(sibling)) encoded[encoding] = represent(readFileSync(sibling), suffix);
    }
    files.set(name, {
      ...represent(readFileSync(join(dir, name))),
      type: TYPES[extname(name)] ?? "application/octet-stream",
      cacheControl,
      encoded,
    });
  };
  add("index.html", PAGE);
  const siblings = Object.values(PRECOMPRESSED_SUFFIX);
  for (const asset of readdirSync(join(dir, "assets")))
    if (!siblings.includes(extname(asset))) add(`assets/${asset}`, IMMUTABLE);
  return files;
}

/** Each encoding is its own representation, with its own strong ETag (RFC 9110 §8.8.3). */
function represent(body: Buffer, suffix = ""): Representation {
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 27);
  return {
    // readFileSync's buffer is its own (never pooled), so a view copies nothing.
    body: new Uint8Array(body.buffer as ArrayBuffer, body.byteOffset, body.length),
    etag: `"${hash}${suffix}"`,
  };
}
