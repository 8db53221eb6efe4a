import type { App, NodeServices } from "../http/context.ts";

/**
 * `/healthz`: the process is alive. `/readyz`: it can serve, i.e. it is not draining and
 * Postgres answers (primary, or the replica for reads). Redis being down is reported but
 * keeps the node ready: sends still commit and delivery falls back to Postgres, so pulling
 * every node out of rotation would turn a degradation into an outage.
 */
export function healthRoutes(app: App, { db, bus, drainer, metrics, config }: NodeServices): void {
  app.get("/healthz", (c) => c.json({ status: "ok", node: config.NODE_ID }));

  app.get("/readyz", async (c) => {
    const [postgres, redis] = await Promise.all([db.ping(), bus.ping()]);
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
