import { readdir, readFile } from "node:fs/promises";
import type { Logger } from "@chat/shared";
import type pg from "pg";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);
/** Any constant works; every node takes the same lock, so concurrent starts apply each migration once. */
const MIGRATION_LOCK_ID = 7_301_942;

/**
 * Applies the pending `migrations/NNN_name.sql` files in one transaction under an advisory
 * lock. DDL is transactional in Postgres, so a node killed halfway leaves nothing applied.
 */
export async function migrate(primary: pg.Pool, log: Logger): Promise<string[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith(".sql")).sort();
  const client = await primary.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_ID]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ name: string }>("SELECT name FROM schema_migrations")).rows.map(
        (r) => r.name,
      ),
    );
    const pending = files.filter((file) => !done.has(file));
    for (const file of pending) {
      await client.query(await readFile(new URL(file, MIGRATIONS_DIR), "utf8"));
      await client.query("INSERT INTO schema_migrations (name) VALUES ($1)", [file]);
      log.info({ migration: file }, "applied migration");
    }
    await client.query("COMMIT");
    return pending;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
