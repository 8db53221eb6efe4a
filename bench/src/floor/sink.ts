/**
 * The write floor's receiver (see floor.ts): accepts connections, reads and counts every
 * byte, and tells the parent the count when asked.
 */
import { createServer } from "node:net";

let received = 0;
const server = createServer((socket) => {
  socket.on("data", (chunk) => {
    received += chunk.length;
  });
  socket.on("error", () => socket.destroy());
});
server.listen(0, "127.0.0.1", 4096, () => {
  const address = server.address();
  process.send?.({ type: "listening", port: typeof address === "object" ? address?.port : 0 });
});
process.on("message", (message: { type: string }) => {
  if (message.type === "count") process.send?.({ type: "count", received });
});
process.on("disconnect", () => process.exit(0));
