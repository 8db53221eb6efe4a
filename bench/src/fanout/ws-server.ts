/**
 * The least a WebSocket server on Node can be: `ws` alone, the library under our nodes and
 * under Socket.IO, holding every client in one set. No rooms, protocol, Redis or storage:
 * `POST /send { body }` writes the message's JSON to every client, as `ws`'s README
 * broadcasts. What it costs per connection and per delivery is the floor for any server
 * built on `ws`. A client learns it has joined from PLAIN_JOINED.
 * Configured by --port=N (or PORT); prints "listening" when ready.
 */
import { WebSocketServer } from "ws";
import { PLAIN_JOINED } from "./plain-protocol.ts";
import { listenAsPeer, sendEndpoint } from "./send-endpoint.ts";

const http = sendEndpoint((body) => {
  const frame = Buffer.from(JSON.stringify({ body, sent_at: Date.now() }));
  for (const client of wss.clients) client.send(frame, { binary: false });
});
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on("connection", (socket) => socket.send(PLAIN_JOINED));
listenAsPeer(http);
