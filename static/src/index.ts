export { loadEdgeConfig } from "./config.ts";
export { createEdge } from "./edge.ts";
