import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "services/src/**/*.test.ts",
      "gateway/src/**/*.test.ts",
      "shared/src/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    exclude: ["**/node_modules/**", "test/compose/**"],
    // Cluster suites start real Postgres, Redis and node processes; one file at a time keeps
    // two cores from being shared by several clusters.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
