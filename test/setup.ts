// Global fast-check configuration for every suite: FC_SEED pins the seed, FC_NUM_RUNS scales
// the number of runs. Every property failure prints its seed and path, so it can be replayed.
import { fc } from "@fast-check/vitest";

const seed = process.env.FC_SEED;
const numRuns = process.env.FC_NUM_RUNS;
fc.configureGlobal({
  ...(seed !== undefined && seed !== "" ? { seed: Number(seed) } : {}),
  ...(numRuns !== undefined && numRuns !== "" ? { numRuns: Number(numRuns) } : {}),
});
