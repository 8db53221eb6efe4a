import { defineConfig } from "vitest/config";

/** The Compose stack suite (`npm run test:compose`): slow, needs Docker, runs apart from `npm test`. */
export default defineConfig({
  test: {
    include: ["test/compose/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 1_500_000,
  },
});
