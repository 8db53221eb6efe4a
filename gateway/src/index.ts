export { loadGatewayConfig } from "./config.ts";
export { createGateway } from "./gateway.ts";
