// Campaign figures for `npm run bench` (design §9): scenarios per second end to end, exhaustive
// time for a 20-function scenario, and time to find and shrink each broken design.
import fc from "fast-check";
import type { Plan } from "../../generators/index.ts";
import type { Strategy } from "../../jit/strategy.ts";
import type { Policy } from "../../harness/oracles/classify.ts";
import type { UnwinderName } from "../../harness/run.ts";
import { distIsFresh } from "../../bin/entry.js";
import { EXHAUSTIVE_SEED, exhaustiveConstraints, SMALL } from "./plans.ts";

/**
 * The campaign code as the CLI runs it: compiled (dist/) while the build is fresh, else the
 * sources. Through tsx, which keeps function names (esbuild's keepNames wraps every closure it
 * creates), the same campaigns run about a tenth slower.
 */
export const COMPILED = distIsFresh();
const from = <T>(source: string, compiled: string): Promise<T> => import(COMPILED ? compiled : source) as Promise<T>;
const { checkPlan, runCampaign } = await from<typeof import("../../harness/campaign.ts")>("../../harness/campaign.ts", "../../dist/harness/campaign.js");
const { planArb } = await from<typeof import("../../generators/index.ts")>("../../generators/index.ts", "../../dist/generators/index.js");
const { BUILTIN_STRATEGIES } = await from<typeof import("../../jit/strategies/index.ts")>("../../jit/strategies/index.ts", "../../dist/jit/strategies/index.js");
const { runOnWorkers } = await from<typeof import("../../harness/cli/pool.ts")>("../../harness/cli/pool.ts", "../../dist/harness/cli/pool.js");

const strategy = (n: string): Strategy => BUILTIN_STRATEGIES.find((s) => s.name === n)!;
const functions = (p: Plan) => p.programs.reduce((n, x) => n + x.funcs.length, 0);

/** End to end (generate, lower, JIT, run with the plan's interrupts, check): scenarios per second. */
export function benchScenarios(runs: number, seed: number, small: boolean, schedulesPerPlan = 1): { perSecond: number; runs: number } {
  const constraints = small ? SMALL : {};
  const r = runCampaign({ strategy: strategy("baseline"), unwinder: "frame", policy: "strict", runs, seed, constraints, schedulesPerPlan });
  if (!r.ok) throw new Error(`bench: baseline failed (seed ${seed}, path ${r.path})`);
  return { perSecond: (r.runs / r.elapsedMs) * 1000, runs: r.runs };
}

/** Exhaustive mode on the first generated plan with at least 20 functions: its time and runs. */
export function benchExhaustive20(seed: number): { ms: number; runs: number; functions: number } {
  const plan = fc.sample(planArb({ maxPrograms: 8, maxFuncs: 4, maxItems: 4 }), { numRuns: 500, seed }).find((p) => functions(p) >= 20);
  if (!plan) throw new Error("bench: no 20-function plan in 500 samples");
  const t0 = performance.now();
  const c = checkPlan({ ...plan, interrupts: [] }, { strategy: strategy("baseline"), unwinder: "frame", policy: "strict", exhaustive: true });
  const ms = performance.now() - t0;
  if (!c.verdict.ok) throw new Error("bench: baseline failed the exhaustive run");
  return { ms, runs: c.verdict.runs, functions: functions(plan) };
}

/**
 * Exhaustive mode's rate for one kind of interrupt: instruction boundaries checked per second
 * over small generated scenarios with one task (random interrupts off), baseline. CPU time (the
 * process's: V8's compiler and collector threads count too), and wall time, as gdb's reference
 * figure is taken.
 */
export function benchExhaustiveRate(kind: "irq" | "nmi", scenarios = 12): { perSecond: number; perWallSecond: number; boundaries: number; scenarios: number } {
  const plans = fc.sample(planArb(exhaustiveConstraints(kind)), { numRuns: scenarios, seed: EXHAUSTIVE_SEED });
  let boundaries = 0, cpu = 0;
  const t0 = performance.now();
  for (const plan of plans) {
    const t0 = process.cpuUsage();
    const c = checkPlan(plan, { strategy: strategy("baseline"), unwinder: "frame", policy: "strict", exhaustive: true, kinds: [kind] });
    const d = process.cpuUsage(t0);
    if (!c.verdict.ok) throw new Error("bench: baseline failed the exhaustive run");
    boundaries += c.verdict.runs - 1; // the base run, then one fork per boundary
    cpu += (d.user + d.system) / 1e6;
  }
  return { perSecond: boundaries / cpu, perWallSecond: (boundaries / (performance.now() - t0)) * 1000, boundaries, scenarios: plans.length };
}

/** Each broken design: time to find and shrink, cases run, shrink steps, shrunk functions. */
export function benchBroken(seed: number, unwinder: UnwinderName = "frame", policy: Policy = "strict"): { name: string; ms: number; runs: number; shrinks: number; functions: number; what: string }[] {
  return BUILTIN_STRATEGIES.filter((s) => !["baseline", "r9-private"].includes(s.name)).map((s) => {
    const r = runCampaign({ strategy: s, unwinder, policy, runs: 1000, seed });
    if (r.ok) throw new Error(`bench: ${s.name} was not found in ${r.runs} scenarios (seed ${seed})`);
    const cx = r.counterexample!;
    return { name: s.name, ms: r.elapsedMs, runs: r.runs, shrinks: r.shrinks, functions: cx.scenario.programs.reduce((n, p) => n + p.funcs.length, 0), what: cx.verdict.failure!.what };
  });
}

/** End to end on worker threads, as `check --workers N` runs a campaign: scenarios per second, start-up included. */
export async function benchScenariosPooled(runs: number, seed: number, workers: number): Promise<{ perSecond: number; runs: number }> {
  const { results, elapsedMs } = await runOnWorkers({
    strategy: "baseline", jit: "ts", unwinder: "frame", policy: "strict", privateStacks: "none", exhaustive: false, constraints: SMALL,
  }, runs, seed, workers);
  const failed = results.find((r) => !r.ok);
  if (failed) throw new Error(`bench: baseline failed (seed ${failed.seed}, path ${failed.path})`);
  const total = results.reduce((n, r) => n + r.runs, 0);
  return { perSecond: (total / elapsedMs) * 1000, runs: total };
}
