/**
 * Builds the web client into static/dist: content-hashed assets under /assets/ (served as
 * immutable for a year) and index.html pointing at them (served with an ETag and a short
 * max-age), so a deploy shows at once while assets stay cached.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildClient();
  console.log(`web client built into ${out}`);
}
