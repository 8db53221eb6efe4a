/**
 * http-proxy-3 with nothing around it: node:http in, `proxy.web` with a keep-alive agent out,
 * no balancing, retries, timeouts, headers of our own or metrics. It measures the ceiling the
 * library sets for the gateway, which is built on it.
 * Usage: bare-http-proxy-3.ts <port> <upstream host:port>
 */
import { Agent, createServer } from "node:http";
import { createProxyServer } from "http-proxy-3";

const [port, upstream] = process.argv.slice(2);
const [host = "127.0.0.1", upstreamPort] = (upstream ?? "").split(":");
const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
const proxy = createProxyServer({});

createServer((req, res) => {
  proxy.web(req, res, { target: { host, port: Number(upstreamPort) }, agent }, () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
}).listen(Number(port), "127.0.0.1");
