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
  return hostTimeout(Math.max(ms, Math.ceil((ms * n) / defaultRuns)));
}

/**
 * How much slower this host is than the 2-core machine the timeouts were set on: measured once
 * by vitest.config.ts (a fixed loop's time against its time there), at least 1; or as
 * STACKCHECK_HOST_SLOWNESS says.
 */
export const HOST_SLOWNESS = Math.max(1, Number(process.env.STACKCHECK_HOST_SLOWNESS ?? 1) || 1);

/** A test's timeout on this host: `ms` on the reference machine, scaled by HOST_SLOWNESS. */
export function hostTimeout(ms: number): number {
  return Math.ceil(ms * HOST_SLOWNESS);
}
