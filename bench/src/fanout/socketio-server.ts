/**
 * The peer a user would pick instead: a Socket.IO server scaled out with
 * @socket.io/redis-adapter, doing the same job as a chat node in the fan-out benchmark —
 * every client joins the room `chat`, and `POST /send { body }` broadcasts to it. It stores
 * nothing (our nodes commit each message to Postgres first), so the comparison favours it.
 * Configured by --port=N (or PORT) and REDIS_URL; prints "listening" when ready.
 */
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";
import { listenAsPeer, sendEndpoint } from "./send-endpoint.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const publisher = new Redis(redisUrl);
const subscriber = publisher.duplicate();

const http = sendEndpoint((body) => io.to("chat").emit("publish", { body, sent_at: Date.now() }));
const io = new Server(http, {
  adapter: createAdapter(publisher, subscriber),
  transports: ["websocket"],
  perMessageDeflate: false,
});
io.on("connection", (socket) => void socket.join("chat"));
listenAsPeer(http);
