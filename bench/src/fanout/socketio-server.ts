/**
 * The peer a user would pick instead: a Socket.IO server scaled out with
 * @socket.io/redis-adapter, doing the same job as a chat node in the fan-out benchmark —
 * every client joins the room `chat`, and `POST /send { body }` broadcasts to it. It stores
 * nothing (our nodes commit each message to Postgres first), so the comparison favours it.
 * Configured by --port=N (or PORT) and REDIS_URL; prints "listening" when ready.
 */
import { createServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";

const portFlag = process.argv.find((arg) => arg.startsWith("--port="))?.slice("--port=".length);
const port = Number(portFlag ?? process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const publisher = new Redis(redisUrl);
const subscriber = publisher.duplicate();

const http = createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/send") {
    res.writeHead(404).end();
    return;
  }
  let raw = "";
  req.on("data", (chunk: Buffer) => {
    raw += chunk.toString();
  });
  req.on("end", () => {
    const { body } = JSON.parse(raw) as { body: string };
    io.to("chat").emit("publish", { body, sent_at: Date.now() });
    res.writeHead(201, { "content-type": "application/json" }).end("{}");
  });
});

const io = new Server(http, {
  adapter: createAdapter(publisher, subscriber),
  transports: ["websocket"],
  perMessageDeflate: false,
});
io.on("connection", (socket) => void socket.join("chat"));

http.listen(port, "127.0.0.1", () => {
  const address = http.address();
  console.log(`listening ${typeof address === "object" && address ? address.port : port}`);
});
