import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { PostgresTool } from "./binaries.ts";
import { ManagedProcess } from "./process.ts";

export const DB_USER = "chat";
export const DB_NAME = "chat";
const SLOT = "chat_replica";

export interface PostgresSetup {
  bin: Record<PostgresTool, string>;
  dataDir: string;
  logDir: string;
  /** Postgres refuses to run as root; when we are root it runs as this user. */
  runAs: string | undefined;
}

export const postgresUrl = (port: number, database = DB_NAME) =>
  `postgres://${DB_USER}@127.0.0.1:${port}/${database}`;

/** The primary: initialised on first use, with WAL and slots for one streaming replica. */
export async function startPrimary(setup: PostgresSetup, port: number): Promise<ManagedProcess> {
  const dir = join(setup.dataDir, "primary");
  if (!existsSync(join(dir, "PG_VERSION"))) {
    ownedDir(setup, dir);
    await runAsOwner(setup, setup.bin.initdb, [
      "-D",
      dir,
      "-U",
      DB_USER,
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-locale",
    ]);
  }
  const server = postgresProcess(setup, "postgres-primary", dir, port, [
    "-c",
    "wal_level=replica",
    "-c",
    "max_wal_senders=10",
    "-c",
    "max_replication_slots=10",
  ]);
  await waitForPostgres(server, port, async () => true);
  await ensureDatabase(port);
  return server;
}

/** The replica: a pg_basebackup of the primary on first use, then streaming through a slot. */
export async function startReplica(
  setup: PostgresSetup,
  port: number,
  primaryPort: number,
): Promise<ManagedProcess> {
  const dir = join(setup.dataDir, "replica");
  if (!existsSync(join(dir, "PG_VERSION"))) {
    await dropSlot(primaryPort);
    ownedDir(setup, dir);
    await runAsOwner(setup, setup.bin.pg_basebackup, [
      "-h",
      "127.0.0.1",
      "-p",
      String(primaryPort),
      "-U",
      DB_USER,
      "-D",
      dir,
      "-R",
      "-X",
      "stream",
      "-C",
      "-S",
      SLOT,
      "--checkpoint=fast", // the default spread checkpoint can take minutes
    ]);
  }
  // The primary's address is given on every start, so a re-run on other ports still streams.
  const server = postgresProcess(setup, "postgres-replica", dir, port, [
    "-c",
    `primary_conninfo=host=127.0.0.1 port=${primaryPort} user=${DB_USER} application_name=${SLOT}`,
    "-c",
    `primary_slot_name=${SLOT}`,
    "-c",
    "hot_standby=on",
  ]);
  await waitForPostgres(server, port, async (client) => {
    const { rows } = await client.query<{ standby: boolean }>(
      "SELECT pg_is_in_recovery() AS standby",
    );
    return rows[0]?.standby === true;
  });
  return server;
}

function postgresProcess(
  setup: PostgresSetup,
  name: string,
  dir: string,
  port: number,
  settings: string[],
) {
  const socketDir = ownedDir(setup, join(setup.dataDir, "run"));
  const server = new ManagedProcess({
    name,
    command: setup.bin.postgres,
    args: [
      "-D",
      dir,
      "-p",
      String(port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      `unix_socket_directories=${socketDir}`,
      ...settings,
    ],
    output: { file: join(setup.logDir, `${name}.log`) },
    runAs: setup.runAs,
  });
  server.start();
  return server;
}

async function waitForPostgres(
  server: ManagedProcess,
  port: number,
  isReady: (client: pg.Client) => Promise<boolean>,
): Promise<void> {
  await server.waitUntil("accepting connections", () => withClient(port, "postgres", isReady));
}

async function ensureDatabase(port: number): Promise<void> {
  await withClient(port, "postgres", async (client) => {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [
      DB_NAME,
    ]);
    if (!rowCount) await client.query(`CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}`);
    return true;
  });
}

/** Promotes a streaming replica to a primary, waiting until it takes writes. */
export async function promote(port: number): Promise<void> {
  await withClient(port, "postgres", async (client) => {
    const { rows } = await client.query<{ done: boolean }>("SELECT pg_promote(true, 30) AS done");
    if (!rows[0]?.done) throw new Error(`the replica on port ${port} did not finish promotion`);
  });
}

/** A slot left by an earlier replica would hold WAL forever and block `-C`. */
async function dropSlot(primaryPort: number): Promise<void> {
  await withClient(primaryPort, "postgres", async (client) => {
    await client.query(
      "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
      [SLOT],
    );
    return true;
  });
}

export async function withClient<T>(
  port: number,
  database: string,
  use: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({
    connectionString: postgresUrl(port, database),
    connectionTimeoutMillis: 2000,
  });
  client.on("error", () => {}); // a server shutting down mid-check is expected here
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function ownedDir(setup: PostgresSetup, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (setup.runAs) {
    const uid = Number(execFileSync("id", ["-u", setup.runAs], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", setup.runAs], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  return dir;
}

async function runAsOwner(setup: PostgresSetup, command: string, args: string[]): Promise<void> {
  const [file, argv] = setup.runAs
    ? [
        "setpriv",
        [`--reuid=${setup.runAs}`, `--regid=${setup.runAs}`, "--init-groups", command, ...args],
      ]
    : [command, args];
  await promisify(execFile)(file, argv, { cwd: setup.dataDir, timeout: 120_000 }).catch(
    (error: { stderr?: string }) => {
      throw new Error(`${command} failed: ${error.stderr ?? String(error)}`);
    },
  );
}
