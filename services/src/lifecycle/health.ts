import type { App, NodeServices } from "../http/context.ts";

/**
 * `/healthz`: the process is alive. `/readyz`: it can serve, i.e. it is not draining and
 * Postgres answers (primary, or the replica for reads). Redis being down is reported but
 * keeps the node ready: sends still commit and delivery falls back to Postgres, so pulling
 * every node out of rotation would turn a degradation into an outage. Each check gets
 * READY_CHECK_TIMEOUT_MS: a stalled Redis or Postgres must not stall the answer past the
 * balancer's own timeout, or every node would look dead at once.
 */
export function healthRoutes(app: App, { db, bus, drainer, metrics, config }: NodeServices): void {
  app.get("/healthz", (c) => c.json({ status: "ok", node: config.NODE_ID }));

  app.get("/readyz", async (c) => {
    const limit = config.READY_CHECK_TIMEOUT_MS;
    const [postgres, redis] = await Promise.all([
      within(limit, db.ping(), { primary: false, replica: null }),
      within(limit, bus.ping(), false),
    ]);
    const ready = !drainer.draining && (postgres.primary || postgres.replica === true);
    const degraded = !postgres.primary || postgres.replica === false || !redis;
    const status = drainer.draining
      ? "draining"
      : !ready
        ? "unavailable"
        : degraded
          ? "degraded"
          : "ok";
    return c.json(
      { status, node: config.NODE_ID, checks: { ...postgres, redis, draining: drainer.draining } },
      ready ? 200 : 503,
    );
  });

  app.get("/metrics", async (c) =>
    c.text(await metrics.registry.metrics(), 200, { "Content-Type": metrics.registry.contentType }),
  );
}

/** The check's answer, or `fallback` when it takes longer than `ms`. */
function within<T>(ms: number, check: Promise<T>, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  return Promise.race([check, late]).finally(() => clearTimeout(timer));
}
