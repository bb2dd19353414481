// Run counts of property suites. A suite names its default; FC_NUM_RUNS, which test/setup.ts
// applies globally, replaces it when set (a numRuns given to a property would override it).
export function runs(defaultRuns: number): { numRuns?: number } {
  const env = process.env.FC_NUM_RUNS;
  return env !== undefined && env !== "" ? {} : { numRuns: defaultRuns };
}

/** A property's timeout: `ms` at its default run count, scaled up when FC_NUM_RUNS asks for more. */
export function runsTimeout(defaultRuns: number, ms: number): number {
  const env = process.env.FC_NUM_RUNS;
  const n = env !== undefined && env !== "" ? Number(env) : defaultRuns;
  return Math.max(ms, Math.ceil((ms * n) / defaultRuns));
}
