/**
 * The least a WebSocket server on Node can be: `ws` alone, the library under our nodes and
 * under Socket.IO, holding every client in one set. No rooms, protocol, Redis or storage:
 * `POST /send { body }` writes the message's JSON to every client, as `ws`'s README
 * broadcasts. What it costs per connection and per delivery is the floor for any server
 * built on `ws`. A client learns it has joined from the `{"type":"joined"}` it is sent.
 * Configured by --port=N (or PORT); prints "listening" when ready.
 */
import { createServer } from "node:http";
import { WebSocketServer } from "ws";
import { PLAIN_JOINED } from "./plain-protocol.ts";

const portFlag = process.argv.find((arg) => arg.startsWith("--port="))?.slice("--port=".length);
const port = Number(portFlag ?? process.env.PORT ?? 0);

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
    const frame = Buffer.from(JSON.stringify({ body, sent_at: Date.now() }));
    for (const client of wss.clients) client.send(frame, { binary: false });
    res.writeHead(201, { "content-type": "application/json" }).end("{}");
  });
});

const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on("connection", (socket) => socket.send(PLAIN_JOINED));

http.listen(port, "127.0.0.1", () => {
  const address = http.address();
  console.log(`listening ${typeof address === "object" && address ? address.port : port}`);
});
