import { ChatError } from "@chat/shared";
import { Hono } from "hono";
import { routePath } from "hono/route";
import { authenticate } from "../identity/auth.ts";
import { sessionRoutes } from "../identity/routes.ts";
import { healthRoutes } from "../lifecycle/health.ts";
import { roomRoutes } from "../rooms/routes.ts";
import { actionCableRoutes } from "../transports/cable/cable.ts";
import { messageRoutes } from "../transports/http-messages.ts";
import { phoenixSocketRoutes } from "../transports/phoenix/socket.ts";
import { phoenixLongPollRoutes } from "../transports/phoenix-longpoll/routes.ts";
import { sseRoutes } from "../transports/sse.ts";
import { thesisRoutes } from "../transports/thesis.ts";
import { thesisSocketRoutes } from "../transports/thesis-websocket.ts";
import { webRoutes } from "../web/routes.ts";
import { limitRequestBody } from "./body.ts";
import type { App, AppEnv, NodeServices } from "./context.ts";
import { errorResponse, unrouted } from "./errors.ts";

const OPERATIONS = new Set(["/healthz", "/readyz", "/metrics"]);

/** The node's HTTP surface: cross-cutting middleware, then each feature's routes. */
export function createApp(services: NodeServices): App {
  const { config, metrics, drainer, tokens, log } = services;
  const app = new Hono<AppEnv>();

  app.use(async (c, next) => {
    // On Node's response, which merges it into whatever Hono writes: setting it on c.res
    // after the handler would make @hono/node-server rebuild the response as a Web one.
    const outgoing = c.env.outgoing;
    outgoing?.setHeader("X-Chat-Node", config.NODE_ID);
    await next();
    const route = routePath(c, -1);
    metrics.httpRequests.inc({
      method: c.req.method,
      route: route.endsWith("*") ? "unmatched" : route,
      status: c.res.status,
    });
    if (!outgoing) c.header("X-Chat-Node", config.NODE_ID); // upgrades have no Node response
  });

  // A draining node refuses new work with a retryable 503 that the gateway retries elsewhere.
  app.use(async (c, next) => {
    if (drainer.draining && !OPERATIONS.has(c.req.path)) {
      c.header("Connection", "close");
      c.header("X-Chat-Draining", "1"); // the gateway retries these elsewhere: no work was done
      throw new ChatError("draining", "this node is shutting down; retry", { retryAfter: 1 });
    }
    await next();
  });

  const limitBody = limitRequestBody(config.MAX_REQUEST_BYTES);
  const auth = authenticate(tokens, config.REQUIRE_TOKEN);
  for (const path of ["/api/*", "/chat/*"]) app.use(path, limitBody);
  for (const path of ["/api/rooms", "/api/rooms/*", "/chat/*"]) app.use(path, auth);

  for (const routes of [
    healthRoutes,
    sessionRoutes,
    roomRoutes,
    messageRoutes,
    sseRoutes,
    thesisRoutes,
    phoenixSocketRoutes,
    phoenixLongPollRoutes,
    actionCableRoutes,
    thesisSocketRoutes,
    webRoutes,
  ]) {
    routes(app, services);
  }
  app.notFound(unrouted(app));
  app.onError((error, c) => errorResponse(error, c, log));
  return app;
}
