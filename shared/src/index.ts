export * from "./close-codes.ts";
export * from "./config.ts";
export * from "./errors.ts";
export * from "./http-headers.ts";
export * from "./logger.ts";
export * from "./metrics.ts";
export * from "./raw-answers.ts";
export * from "./wire.ts";
