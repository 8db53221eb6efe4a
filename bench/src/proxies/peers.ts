import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../../cluster/launcher.ts";
import { CURRENT_RUNTIME, ManagedProcess, type NodeRuntime } from "../../../cluster/process.ts";

/**
 * The servers the proxy benchmarks compare, each started from Debian's packages (or ours)
 * with a config written into `dir`, pinned to the cores given (taskset), on loopback.
 */
export interface Server {
  name: string;
  url: string;
  process: ManagedProcess;
}

export const ASSET_PATH = "/assets/app-3f9a1c.js";
export const ASSET_BYTES = 32 * 1024;

function pinned(
  name: string,
  cores: string,
  command: string,
  args: string[],
  dir: string,
  env?: NodeJS.ProcessEnv,
) {
  return new ManagedProcess({
    name,
    command: "taskset",
    args: ["-c", cores, command, ...args],
    cwd: REPO_ROOT,
    env: env ?? process.env,
    output: { file: join(dir, `${name}.log`) },
  });
}

/** One of our TypeScript entry points (or a bench script), run as production runs it, pinned like the rest. */
function pinnedScript(
  name: string,
  cores: string,
  script: string,
  args: string[],
  dir: string,
  runtime: NodeRuntime,
  env?: NodeJS.ProcessEnv,
) {
  const command = [...runtime.typeScriptArgs, script, ...args];
  return pinned(name, cores, runtime.command, command, dir, env);
}

/** A Node server's name, with its runtime when that is not the one the benchmark runs on. */
const onRuntime = (name: string, runtime: NodeRuntime) =>
  runtime === CURRENT_RUNTIME ? name : `${name} on Node ${runtime.version}`;

async function ready(server: Server, path = "/ok"): Promise<Server> {
  server.process.start();
  await server.process.waitUntil(
    "answering",
    async () => (await fetch(`${server.url}${path}`)).ok,
    20_000,
  );
  return server;
}

/**
 * The upstream every proxy fronts: nginx answering /ok (a tiny dynamic-like response, never
 * cached), /readyz for the gateway's health checks, and a 32 KiB asset that is cacheable
 * for an hour, as the chat nodes serve hashed assets.
 */
export async function startOrigin(dir: string, port: number, cores: string): Promise<Server> {
  const root = join(dir, "origin-root");
  mkdirSync(join(root, "assets"), { recursive: true });
  writeFileSync(join(root, ASSET_PATH), "x".repeat(ASSET_BYTES));
  const conf = join(dir, "origin.conf");
  writeFileSync(
    conf,
    `${nginxHead(dir, "origin")}
http {
  access_log off;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = /ok { add_header Cache-Control "no-store"; return 200 "ok"; }
    location = /readyz { return 200 '{"status":"ok"}'; }
    location /assets/ { root ${root}; add_header Cache-Control "public, max-age=3600"; etag on; }
  }
}
`,
  );
  return ready({
    name: "origin (nginx)",
    url: `http://127.0.0.1:${port}`,
    process: pinned("origin", cores, "nginx", ["-c", conf, "-p", dir], dir),
  });
}

function nginxHead(dir: string, name: string): string {
  // Root drops to nobody by default, who cannot write the temp folder: keep the caller's user.
  const user = process.getuid?.() === 0 ? "user root;" : "";
  return `${user}
worker_processes 1;
daemon off;
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}-error.log`)} warn;
events { worker_connections 16384; }`;
}

/** Our gateway with one worker, its upstream the origin. */
export async function startGateway(
  dir: string,
  port: number,
  origin: Server,
  cores: string,
  runtime = CURRENT_RUNTIME,
) {
  const env = {
    ...process.env,
    PORT: String(port),
    ADMIN_PORT: "0",
    GATEWAY_WORKERS: "1",
    UPSTREAMS: new URL(origin.url).host,
    LOG_LEVEL: "warn",
    SLOW_START_MS: "0",
  };
  return ready({
    name: onRuntime("gateway (ours)", runtime),
    url: `http://127.0.0.1:${port}`,
    process: pinnedScript("gateway", cores, "gateway/src/main.ts", [], dir, runtime, env),
  });
}

/** A proxy from this folder that takes `<port> <upstream host:port>`, on `cores`. */
const bareProxy =
  (name: string, script: string) =>
  (dir: string, port: number, origin: Server, cores: string, runtime = CURRENT_RUNTIME) =>
    ready({
      name: onRuntime(name, runtime),
      url: `http://127.0.0.1:${port}`,
      process: pinnedScript(
        script,
        cores,
        `bench/src/proxies/${script}.ts`,
        [String(port), new URL(origin.url).host],
        dir,
        runtime,
      ),
    });

/** A bare node:http proxy: the ceiling Node's HTTP stack sets for any proxy built on it. */
export const startBareNodeProxy = bareProxy("bare node:http proxy", "bare-node-proxy");

/** http-proxy-3 alone: the ceiling the library sets for the gateway built on it. */
export const startBareHttpProxy3 = bareProxy("bare http-proxy-3", "bare-http-proxy-3");

/** HAProxy with one thread, keep-alive to the origin, as a load balancer in front of nodes. */
export async function startHaproxy(dir: string, port: number, origin: Server, cores: string) {
  const conf = join(dir, "haproxy.cfg");
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend nodes
backend nodes
  balance leastconn
  option httpchk GET /readyz
  server origin ${new URL(origin.url).host} check inter 1s
`,
  );
  return ready({
    name: "HAProxy",
    url: `http://127.0.0.1:${port}`,
    process: pinned("haproxy", cores, "haproxy", ["-f", conf, "-db"], dir),
  });
}

/** Our edge cache in front of the origin. */
export async function startEdge(
  dir: string,
  port: number,
  origin: Server,
  cores: string,
  runtime = CURRENT_RUNTIME,
) {
  const env = {
    ...process.env,
    PORT: String(port),
    ADMIN_PORT: "0", // its metrics are not measured here; any free port
    ORIGIN_URL: origin.url,
    LOG_LEVEL: "warn",
  };
  return ready(
    {
      name: onRuntime("edge (ours)", runtime),
      url: `http://127.0.0.1:${port}`,
      process: pinnedScript("edge", cores, "static/src/main.ts", [], dir, runtime, env),
    },
    ASSET_PATH,
  );
}

/** nginx proxy_cache with one worker, caching what the origin marks cacheable. */
export async function startNginxCache(dir: string, port: number, origin: Server, cores: string) {
  const cache = join(dir, "nginx-cache");
  mkdirSync(cache, { recursive: true });
  const conf = join(dir, "nginx-cache.conf");
  writeFileSync(
    conf,
    `${nginxHead(dir, "nginx-cache")}
http {
  access_log off;
  proxy_cache_path ${cache} keys_zone=edge:16m max_size=256m;
  upstream origin { server ${new URL(origin.url).host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_use_stale error timeout updating;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`,
  );
  return ready(
    {
      name: "nginx proxy_cache",
      url: `http://127.0.0.1:${port}`,
      process: pinned("nginx-cache", cores, "nginx", ["-c", conf, "-p", dir], dir),
    },
    ASSET_PATH,
  );
}

/** Varnish with its default VCL behaviour, memory storage. */
export async function startVarnish(dir: string, port: number, origin: Server, cores: string) {
  const vcl = join(dir, "default.vcl");
  const { hostname, port: originPort } = new URL(origin.url);
  writeFileSync(
    vcl,
    `vcl 4.1;\nbackend origin { .host = "${hostname}"; .port = "${originPort}"; }\n`,
  );
  const work = join(dir, "varnish");
  mkdirSync(work, { recursive: true });
  const args = ["-F", "-a", `127.0.0.1:${port}`, "-f", vcl, "-n", work, "-s", "malloc,256m"];
  if (process.getuid?.() === 0) args.push("-j", "none");
  return ready(
    {
      name: "Varnish",
      url: `http://127.0.0.1:${port}`,
      process: pinned("varnish", cores, "varnishd", args, dir),
    },
    ASSET_PATH,
  );
}

export const installed = (command: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
