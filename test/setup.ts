// Global fast-check configuration for every suite: FC_SEED pins the seed, FC_NUM_RUNS scales
// the number of runs. Every property failure prints its seed and path, so it can be replayed.
import fc from "fast-check";
// @fast-check/vitest (test.prop), loaded here, before any test file: once a test file in a
// worker has started the kernel JIT's shim (jit/tree/child.ts KernelJit), a package the worker
// imports for the first time is a second instance of it. A test file that brought in
// @fast-check/vitest then got a copy bound to a second vitest, whose test() finds no suite
// ("Vitest failed to find the current suite": the whole file failed to load), and a second
// fast-check without the configuration below. Which files met this depended on how vitest
// dealt them to its workers. Files share a worker's modules (isolate: false): this costs one
// load per worker.
import "@fast-check/vitest";

const seed = process.env.FC_SEED;
const numRuns = process.env.FC_NUM_RUNS;
fc.configureGlobal({
  ...(seed !== undefined && seed !== "" ? { seed: Number(seed) } : {}),
  ...(numRuns !== undefined && numRuns !== "" ? { numRuns: Number(numRuns) } : {}),
});
