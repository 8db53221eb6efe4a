import type { Server, ServerResponse } from "node:http";

/** Starts listening; resolves with the port it got (the one asked for, or a free one for 0). */
export function listenOn(
  server: Server,
  port: number,
  host: string,
  backlog = 4096,
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, backlog, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

/** Answers a Prometheus scrape with what `collect` gathers, or 503 if gathering fails. */
export function answerMetrics(
  res: ServerResponse,
  contentType: string,
  collect: () => Promise<string>,
): void {
  collect().then(
    (text) => res.writeHead(200, { "content-type": contentType }).end(text),
    () => res.writeHead(503).end(),
  );
}
