/**
 * The least a Node.js reverse proxy can do: node:http in, a keep-alive node:http client out,
 * bodies piped, no balancing, retries, health checks or metrics. It measures the ceiling
 * Node's HTTP stack puts on any proxy written for it, our gateway included.
 * Usage: bare-node-proxy.ts <port> <upstream host:port>
 */
import { Agent, createServer, request } from "node:http";

const [port, upstream] = process.argv.slice(2);
const [host, upstreamPort] = (upstream ?? "").split(":");
const agent = new Agent({ keepAlive: true, maxSockets: 1024 });

createServer((req, res) => {
  const outgoing = request(
    { host, port: upstreamPort, path: req.url, method: req.method, headers: req.headers, agent },
    (response) => {
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.pipe(res);
    },
  );
  outgoing.on("error", () => {
    res.writeHead(502).end();
  });
  req.pipe(outgoing);
}).listen(Number(port), "127.0.0.1");
