import { z } from "zod";
import type { NodeConfig } from "../config.ts";
import { readJsonObject } from "../http/body.ts";
import type { App, NodeServices } from "../http/context.ts";
import { pageLimit, parseOr400 } from "../messages/input.ts";
import { parseRoomName } from "./room-name.ts";

/** Query of the room list: names after `after`, by name, `limit` to a page. */
function roomListQuerySchema(config: NodeConfig) {
  return z.object({
    after: z.string().max(64).default(""),
    limit: pageLimit(
      config.ROOM_LIST_MAX_LIMIT,
      config.ROOM_LIST_DEFAULT_LIMIT,
      "ROOM_LIST_MAX_LIMIT",
    ),
  });
}

/**
 * `GET /api/rooms?after=&limit=` lists rooms a page at a time, `next` naming the cursor of the
 * following page (null on the last); `POST /api/rooms { name }` creates one (409 if it exists).
 */
export function roomRoutes(app: App, { store, config }: NodeServices): void {
  const querySchema = roomListQuerySchema(config);
  app.get("/api/rooms", async (c) => {
    const { after, limit } = parseOr400(querySchema, c.req.query());
    // One extra row says whether another page follows, without a count.
    const rooms = await store.listRooms(after, limit + 1);
    const page = rooms.slice(0, limit);
    const next = rooms.length > limit ? (page.at(-1)?.name ?? null) : null;
    return c.json({ rooms: page, next });
  });

  app.post("/api/rooms", async (c) => {
    const name = parseRoomName((await readJsonObject(c)).name);
    return c.json({ room: await store.createRoom(name) }, 201);
  });
}
