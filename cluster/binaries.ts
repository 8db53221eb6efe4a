import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const POSTGRES_TOOLS = ["initdb", "postgres", "pg_basebackup"] as const;
export type PostgresTool = (typeof POSTGRES_TOOLS)[number];

const onPath = (name: string) => spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;

/** Debian keeps server binaries off PATH, under /usr/lib/postgresql/<version>/bin. */
function postgresBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  return versions[0] ? join(root, versions[0], "bin") : undefined;
}

/**
 * Makes sure redis-server and the Postgres server tools exist, installing them with apt as
 * root on Debian/Ubuntu; elsewhere it stops with the exact command to run.
 */
export function ensureBinaries(log: (line: string) => void): {
  redis: string;
  postgres: Record<PostgresTool, string>;
} {
  const missing: string[] = [];
  if (!onPath("redis-server")) missing.push("redis-server");
  if (!postgresBinDir() && !POSTGRES_TOOLS.every(onPath)) missing.push("postgresql");
  if (missing.length > 0) install(missing, log);
  const dir = postgresBinDir();
  const tool = (name: PostgresTool) => (dir ? join(dir, name) : name);
  return {
    redis: "redis-server",
    postgres: {
      initdb: tool("initdb"),
      postgres: tool("postgres"),
      pg_basebackup: tool("pg_basebackup"),
    },
  };
}

function install(packages: string[], log: (line: string) => void): void {
  const command = `apt-get install -y ${packages.join(" ")}`;
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    throw new Error(`missing ${packages.join(" and ")}; install with:\n  sudo ${command}`);
  }
  log(`installing ${packages.join(", ")}: ${command}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = () =>
    execFileSync("apt-get", ["install", "-y", "-qq", ...packages], { env, stdio: "inherit" });
  try {
    run();
  } catch {
    execFileSync("apt-get", ["update", "-qq"], { env, stdio: "inherit" });
    run();
  }
}
