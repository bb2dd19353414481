import { defineConfig } from "vitest/config";

/**
 * How much slower this host is than the 2-core machine the tests' timeouts were set on: a fixed
 * loop's time against its time there (about 100 ms), at least 1 and at most 8. The test
 * workers read it (test/helpers/runs.ts hostTimeout()); STACKCHECK_HOST_SLOWNESS sets it.
 */
function hostSlowness(): number {
  const given = Number(process.env.STACKCHECK_HOST_SLOWNESS);
  if (given > 0) return given;
  const t0 = performance.now();
  let x = 0;
  for (let i = 0; i < 3_000_000; i++) x = (x * 31 + i) | 0;
  const ms = performance.now() - t0 + (x === 42 ? 1 : 0);
  return Math.min(8, Math.max(1, ms / 100));
}
const slowness = hostSlowness();
process.env.STACKCHECK_HOST_SLOWNESS = String(slowness);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    testTimeout: Math.ceil(30_000 * slowness),
    hookTimeout: Math.ceil(30_000 * slowness),
    // Property suites are CPU-bound; two workers match the 2-core CI machine.
    pool: "forks",
    maxWorkers: 2,
    isolate: false,
  },
});
