import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    testTimeout: 30_000,
    // Property suites are CPU-bound; two workers match the 2-core CI machine.
    pool: "forks",
    maxWorkers: 3,
    isolate: false,
  },
});
