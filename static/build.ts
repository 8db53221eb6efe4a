/**
 * Builds the web client into static/dist: content-hashed assets under /assets/ (served as
 * immutable for a year) and index.html pointing at them (served with an ETag and a short
 * max-age), so a deploy shows at once while assets stay cached. Text files get brotli and
 * gzip siblings (`.br`, `.gz`), compressed once here at the highest levels, which a node
 * serves to browsers that reach it without an edge.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { brotliCompress, constants, gzip } from "node:zlib";
import { PRECOMPRESSED_SUFFIX } from "@chat/shared";
import { build } from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");

export async function buildClient(): Promise<void> {
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, "assets"), { recursive: true });
  const result = await build({
    entryPoints: [join(root, "client/src/main.ts"), join(root, "client/src/styles.css")],
    bundle: true,
    minify: true,
    sourcemap: true,
    format: "esm",
    target: ["es2022"],
    outdir: join(out, "assets"),
    entryNames: "[name]-[hash]",
    metafile: true,
    logLevel: "warning",
  });
  const outputs = Object.keys(result.metafile.outputs).map((file) => basename(file));
  const script = outputs.find((file) => file.startsWith("main-") && file.endsWith(".js"));
  const styles = outputs.find((file) => file.startsWith("styles-") && file.endsWith(".css"));
  if (!script || !styles)
    throw new Error(`build produced no script or styles: ${outputs.join(", ")}`);
  const template = await readFile(join(root, "client/index.html"), "utf8");
  const html = template
    .replace("%SCRIPT%", `/assets/${script}`)
    .replace("%STYLES%", `/assets/${styles}`);
  await writeFile(join(out, "index.html"), html);
  await Promise.all(
    ["index.html", ...outputs.map((file) => `assets/${file}`)].map((file) =>
      precompress(join(out, file)),
    ),
  );
}

/** Extensions of the text files worth compressing; smaller files gain less than headers cost. */
const COMPRESSIBLE = new Set([".html", ".js", ".css", ".map", ".svg"]);
const MIN_COMPRESS_BYTES = 860;
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** Writes brotli and gzip copies beside a compressible file, where they are smaller. */
async function precompress(file: string): Promise<void> {
  if (!COMPRESSIBLE.has(extname(file))) return;
  const body = await readFile(file);
  if (body.length < MIN_COMPRESS_BYTES) return;
  const copies = {
    br: await brotli(body, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
        [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      },
    }),
    gzip: await gzipAsync(body, { level: constants.Z_BEST_COMPRESSION }),
  };
  for (const [encoding, compressed] of Object.entries(copies))
    if (compressed.length < body.length)
      await writeFile(file + PRECOMPRESSED_SUFFIX[encoding as keyof typeof copies], compressed);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildClient();
  console.log(`web client built into ${out}`);
}
