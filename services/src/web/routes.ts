import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { ChatError } from "@chat/shared";
import type { Context } from "hono";
import type { App, NodeServices } from "../http/context.ts";

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
  cacheControl: string;
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
    c.header("ETag", file.etag);
    c.header("Cache-Control", file.cacheControl);
    c.header("Surrogate-Key", name === "index.html" ? "page" : "assets");
    if (c.req.header("if-none-match") === file.etag) return c.body(null, 304);
    return c.body(new Uint8Array(file.body), 200, { "Content-Type": file.type });
  };
  app.get("/", (c) => serve(c, "index.html"));
  app.get("/chat", (c) => serve(c, "index.html"));
  app.get("/assets/:file", (c) => serve(c, `assets/${c.req.param("file")}`));
}

function loadBuild(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const add = (name: string, cacheControl: string) => {
    const body = readFileSync(join(dir, name));
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    files.set(name, {
      body,
      type: TYPES[extname(name)] ?? "application/octet-stream",
      etag,
      cacheControl,
    });
  };
  add("index.html", PAGE);
  for (const asset of readdirSync(join(dir, "assets"))) add(`assets/${asset}`, IMMUTABLE);
  return files;
}
