// Global fast-check configuration for every suite: FC_SEED pins the seed, FC_NUM_RUNS scales
// the number of runs. Every property failure prints its seed and path, so it can be replayed.
import fc from "fast-check";
// @fast-check/vitest (test.prop), loaded here, before any test file. Observed (not explained):
// once a test file in a worker has started the kernel JIT's shim (jit/tree/child.ts KernelJit),
// the worker's first import of @fast-check/vitest can get (about one time in two, by timing) a
// second instance of it and of what it imports: bound to a second vitest, whose test() finds
// no suite ("Vitest failed to find the current suite": the whole test file fails to load), and
// to a second fast-check without the configuration below. Which files met this depended on how vitest dealt them to its workers.
// Files share a worker's modules (isolate: false): this is one load per worker.
import "@fast-check/vitest";
import { tuneV8 } from "../bin/entry.js";

// as the CLI runs campaigns (bin/entry.js V8_FLAGS)
tuneV8();

const seed = process.env.FC_SEED;
const numRuns = process.env.FC_NUM_RUNS;
fc.configureGlobal({
  ...(seed !== undefined && seed !== "" ? { seed: Number(seed) } : {}),
  ...(numRuns !== undefined && numRuns !== "" ? { numRuns: Number(numRuns) } : {}),
});
