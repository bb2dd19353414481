// `npm run bench` runs test/bench/emulator.vitest.ts under vitest with this configuration (not
// part of `npm test`): the emulator's speed under vitest's module runner, beside the tsx figure.
import { defineConfig } from "vitest/config";

export default defineConfig({
  // the setup `npm test` has (V8 flags, fast-check configuration)
  test: { include: ["test/bench/*.vitest.ts"], setupFiles: ["test/setup.ts"], pool: "forks", maxWorkers: 1, testTimeout: 120_000 },
});
