import { readJsonObject } from "../http/body.ts";
import type { App, NodeServices } from "../http/context.ts";
import { parseRoomName } from "./room-name.ts";

const ROOM_LIST_LIMIT = 1000;

/** `GET /api/rooms` lists rooms; `POST /api/rooms { name }` creates one (409 if it exists). */
export function roomRoutes(app: App, { store }: NodeServices): void {
  app.get("/api/rooms", async (c) => c.json({ rooms: await store.listRooms(ROOM_LIST_LIMIT) }));

  app.post("/api/rooms", async (c) => {
    const name = parseRoomName((await readJsonObject(c)).name);
    return c.json({ room: await store.createRoom(name) }, 201);
  });
}
