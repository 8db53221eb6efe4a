import { createServer, type Server } from "node:http";

/**
 * The peers' HTTP side: `POST /send { body }` hands the body to `broadcast` and answers
 * 201; anything else is 404 (so a GET / tells the benchmark the server is up).
 */
export function sendEndpoint(broadcast: (body: string) => void): Server {
  return createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/send") {
      res.writeHead(404).end();
      return;
    }
    let raw = "";
    req.on("data", (chunk: Buffer) => {
      raw += chunk.toString();
    });
    req.on("end", () => {
      broadcast((JSON.parse(raw) as { body: string }).body);
      res.writeHead(201, { "content-type": "application/json" }).end("{}");
    });
  });
}

/** Listens on --port=N (or PORT) and prints "listening PORT", which the benchmark waits for. */
export function listenAsPeer(server: Server): void {
  const flag = process.argv.find((arg) => arg.startsWith("--port="))?.slice("--port=".length);
  const port = Number(flag ?? process.env.PORT ?? 0);
  server.listen(port, "127.0.0.1", () => {
    const address = server.address();
    console.log(`listening ${typeof address === "object" && address ? address.port : port}`);
  });
}
