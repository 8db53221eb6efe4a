import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll } from "vitest";

/**
 * A few-line stand-in for a sticky-free balancer: each HTTP request goes to the next live
 * node, so one client's consecutive polls and posts land on different nodes. Counts the
 * requests each node got.
 */
export async function roundRobinProxy(liveNodes: () => string[]) {
  const perNode = new Map<string, number>();
  let next = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const attempt = (tries: number) => {
        const nodes = liveNodes();
        const target = nodes[next++ % nodes.length];
        if (!target) {
          res.writeHead(503);
          res.end();
          return;
        }
        const upstream = request(
          `${target}${req.url}`,
          { method: req.method, headers: req.headers },
          (answer) => {
            perNode.set(target, (perNode.get(target) ?? 0) + 1);
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        // A node that is down or dies mid-request: try the next one, as a balancer would.
        upstream.on("error", () =>
          tries < 3 && !res.headersSent ? attempt(tries + 1) : res.destroy(),
        );
        upstream.end(Buffer.concat(chunks));
      };
      attempt(0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, perNode };
}
