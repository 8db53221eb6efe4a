/** What the bare `ws` server (ws-server.ts) sends a client as it connects: the generators
 * count the client joined on it. Its broadcasts are the message's JSON alone. */
export const PLAIN_JOINED = '{"type":"joined"}';
