// Run counts of property suites. A suite names its default; FC_NUM_RUNS, which test/setup.ts
// applies globally, replaces it when set (a numRuns given to a property would override it).
export function runs(defaultRuns: number): { numRuns?: number } {
  const env = process.env.FC_NUM_RUNS;
  return env !== undefined && env !== "" ? {} : { numRuns: defaultRuns };
}
