// A campaign (design.md §7-§8): fast-check generates plans (generators/), each lowers to a
// scenario that runs under one strategy and unwinder (random mode: the plan's own interrupt
// schedule; exhaustive mode: one interrupt at every instruction boundary); the first failure
// shrinks to a minimal plan, which is run once more to draw its report. A campaign is a function
// of its seed: the same seed (and path) gives the same counterexample. Shards split one campaign
// across processes or CI jobs, each with its own seed derived from the campaign's.
import fc from "fast-check";
import { planArb, planToScenario, scheduleArb, type Plan, type PlanConstraints } from "../generators/index.ts";
import type { Image } from "../jit/image.ts";
import { JitError } from "../jit/lower.ts";
import type { Strategy } from "../jit/strategy.ts";
import { checkExhaustive, checkRandom, firstFailure, imageFor, type CheckOptions, type CoverageKey, type Verdict } from "./property.ts";
import { runScenario, scheduleOf } from "./run.ts";
import { scenarioOf, type Scenario } from "./scenario.ts";
import { StrategyError } from "../jit/strategy.ts";

/** The harness itself could not check a generated plan (a bug to report, with its seed and path). */
export class HarnessError extends Error {
  constructor(message: string, readonly seed: number, readonly path: string | undefined) {
    super(message);
    this.name = "HarnessError";
  }
}

export interface CampaignOptions extends CheckOptions {
  readonly strategy: Strategy;
  /** Cases to generate (this shard's share of them). */
  readonly runs: number;
  readonly seed: number;
  /** Replay: the fast-check path of a counterexample (with its seed). */
  readonly path?: string;
  readonly exhaustive?: boolean;
  readonly constraints?: PlanConstraints;
  /** Called after each case with the number done (progress bars). */
  readonly onCase?: (done: number) => void;
  /**
   * Random mode: interrupt schedules per generated plan (default 1): the plan's own and k - 1
   * more, each a scenario of its own on the one image (JIT, validation and the loaded machine
   * shared); a failure shrinks as the plan with the schedule that failed. Faster per scenario,
   * but fewer plans per scenario: bugs of a program's shape are found later (README).
   */
  readonly schedulesPerPlan?: number;
  /** Called as the shrink tries each candidate plan (progress of a long shrink). */
  readonly onShrink?: (tried: number) => void;
  /** false: stop at the first failure, unshrunk (worker threads: the main thread shrinks it from its seed and path). */
  readonly shrink?: boolean;
}


/** One plan, lowered and checked. */
export interface Checked {
  readonly plan: Plan;
  readonly scenario: Scenario;
  readonly image: Image;
  readonly verdict: Verdict;
}

export interface CampaignResult {
  readonly ok: boolean;
  readonly seed: number;
  /** Cases run (including the failing one; shrink candidates not counted). */
  readonly runs: number;
  readonly shrinks: number;
  /** The failing case's fast-check path, for replay (with the seed; the replay shrinks it again). */
  readonly path?: string;
  readonly counterexample?: Checked;
  /** Interrupt points hit across every case, by class. */
  readonly coverage: ReadonlyMap<CoverageKey, number>;
  readonly elapsedMs: number;
}

type PlanCheck = CheckOptions & { readonly strategy: Strategy; readonly exhaustive?: boolean };

/** Lower a plan and check it; `picture` redraws the failing sample's stacks (for the report). */
export function checkPlan(plan: Plan, o: PlanCheck, picture = false, image?: Image): Checked {
  const scenario = scenarioOf(planToScenario(plan), "generated scenario");
  image ??= imageFor(scenario, o.strategy, o);
  let verdict = o.exhaustive ? checkExhaustive(scenario, o.strategy, o, image) : checkRandom(scenario, o.strategy, o, image);
  const sample = verdict.failure?.sample;
  if (picture && sample !== undefined) {
    // Runs are deterministic: the same run again, drawing the stacks at the failing sample.
    const injections = verdict.injection ? [verdict.injection] : o.exhaustive ? [] : scheduleOf(scenario);
    const outcome = runScenario(scenario, o.strategy, { ...o, policy: o.policy ?? "strict", image, injections, picture: sample });
    verdict = { ...verdict, outcome, failure: firstFailure(outcome) };
  }
  return { plan, scenario, image, verdict };
}

/**
 * Keep the fewest consecutive programs, then the fewest leading functions of each, that still
 * fail alike. fc.oneof shrinks within the arm it drew, and a nesting chain (planArb's second
 * arm) has a fixed length, so fast-check alone would keep every link.
 */
function trimPlan(plan: Plan, failsAlike: (p: Plan) => boolean): { plan: Plan; steps: number } {
  let steps = 0;
  // the fewest consecutive programs (the first of them becomes the task's)
  const n = plan.programs.length;
  search: for (let size = 1; size < n; size++) {
    for (let at = 0; at + size <= n; at++) {
      const fewer = { ...plan, programs: plan.programs.slice(at, at + size) };
      if (failsAlike(fewer)) { plan = fewer; steps++; break search; }
    }
  }
  for (let i = 0; i < plan.programs.length; i++) {
    const funcs = plan.programs[i]!.funcs;
    for (let j = 1; j < funcs.length; j++) {
      const fewer = { ...plan, programs: plan.programs.map((p, x) => (x === i ? { ...p, funcs: funcs.slice(0, j) } : p)) };
      if (failsAlike(fewer)) { plan = fewer; steps++; break; }
    }
  }
  return { plan, steps };
}

/** Machine steps a shrink may spend on its candidates (about 20 s of runs). */
export const SHRINK_STEP_BUDGET = 100_000_000;

/** The failure class of a plan on which checking throws: a harness bug, shrunk like any failure. */
const THREW = "(the harness threw)";

/**
 * Shrink the first failing plan a campaign found: trim it, let fast-check shrink the trimmed plan
 * from scratch (a failing example is shrunk without fast-check's context; any failure counts, a
 * plan the harness throws on too, as when fast-check shrinks a campaign's failure itself), then
 * trim what it left. Trimming first keeps this quick: the found plan is full size, each shrink
 * candidate costs a whole check, and the trim removes most programs in a few checks (rbp-private
 * under ORC at seed 1: about 660 candidates and 6-7 s when fast-check shrank the found plan
 * itself; 2.5 s this way). `shrinks` counts the steps that made the plan smaller.
 * Deterministic: a replay (seed and path of the found plan) shrinks to the same plan.
 */
function shrinkPlan(found: Plan, o: PlanCheck & { readonly constraints?: PlanConstraints; readonly onShrink?: (tried: number) => void }): { plan: Plan; shrinks: number } {
  // Candidates are run until SHRINK_STEP_BUDGET machine steps are spent, then taken as passing,
  // which ends the shrink where it is: a bound in steps, not time, so a replay ends alike. Typical
  // plans never reach it; plans with a loop only may_goto bounds (a million steps each) do.
  let spent = 0, tried = 0;
  const failure = (p: Plan) => {
    if (spent > SHRINK_STEP_BUDGET) return undefined;
    o.onShrink?.(++tried);
    try {
      const v = checkPlan(p, o).verdict;
      spent += "steps" in v.outcome.result ? v.outcome.result.steps : 0;
      return v.failure?.what;
    } catch {
      return THREW;
    }
  };
  const trim = (p: Plan) => {
    const what = failure(p);
    return what === undefined ? { plan: p, steps: 0 } : trimPlan(p, (q) => failure(q) === what);
  };
  const first = trim(found);
  const d = fc.check(fc.property(planArb(o.constraints ?? {}), (p) => failure(p) === undefined), { examples: [[first.plan]], numRuns: 1, seed: 0 });
  const last = trim((d.failed && d.counterexample?.[0]) || first.plan);
  return { plan: last.plan, shrinks: first.steps + d.numShrinks + last.steps };
}

export function runCampaign(o: CampaignOptions): CampaignResult {
  const started = performance.now();
  o.jit?.admit(o.strategy);
  const coverage = new Map<CoverageKey, number>();
  // random mode: each case is a plan and schedules for it (exhaustive mode injects its own)
  const perCase = o.exhaustive ? 1 : Math.max(1, o.schedulesPerPlan ?? 1);
  let done = 0;
  /** The plan (with one schedule) being checked: after a failure, or a throw, the one that failed. */
  let current: Plan | undefined;
  /**
   * The case's scenarios in order, until one fails (its plan with that schedule), or undefined.
   * The last case of a campaign runs only as many as `runs` has left; a replay (path) all.
   */
  const firstFailing = (plan: Plan, more: readonly (readonly Plan["interrupts"][number][])[]): Plan | undefined => {
    let image: Image | undefined;
    const n = o.path !== undefined ? perCase : Math.max(1, Math.min(perCase, o.runs - done));
    for (const interrupts of [plan.interrupts, ...more].slice(0, n)) {
      const one = (current = { ...plan, interrupts });
      const c = checkPlan(one, o, false, image);
      image = c.image; // the JIT's work is the plan's, not the schedule's
      for (const [k, n] of c.verdict.coverage) coverage.set(k, (coverage.get(k) ?? 0) + n);
      done++;
      o.onCase?.(done);
      if (!c.verdict.ok) return one;
    }
    return undefined;
  };
  // (one schedule: the plans alone, so a seed draws what it drew before schedules were a choice)
  const cases: fc.Arbitrary<[Plan, readonly (readonly Plan["interrupts"][number][])[]]> = perCase === 1
    ? planArb(o.constraints ?? {}).map((p) => [p, []])
    : fc.tuple(planArb(o.constraints ?? {}), fc.array(scheduleArb(o.constraints ?? {}), { minLength: perCase - 1, maxLength: perCase - 1 }));
  const property = fc.property(cases, ([plan, more]) => firstFailing(plan, more) === undefined);
  // The first failure, unshrunk (shrinkPlan() does better); its path replays it.
  const details = fc.check(property, { numRuns: Math.ceil(o.runs / perCase), seed: o.seed, endOnFailure: true, ...(o.path !== undefined ? { path: o.path } : {}) });
  if (!details.failed) return { ok: true, seed: o.seed, runs: done, shrinks: 0, coverage, elapsedMs: performance.now() - started };
  const found = details.counterexample;
  if (found === undefined || found === null) throw new Error(`the campaign failed without a counterexample: ${String(details.errorInstance)}`);
  const plan = current ?? found[0][0];
  const path = details.counterexamplePath ?? undefined;
  const failed = { ok: false, seed: o.seed, runs: done, path, coverage };
  if (o.shrink === false) return { ...failed, shrinks: 0, elapsedMs: performance.now() - started };
  const shrunk = shrinkPlan(plan, o);
  // A plan that throws (not a verdict) is a harness bug: surface it, shrunk, not a silent FAIL.
  let counterexample: Checked;
  try {
    counterexample = checkPlan(shrunk.plan, o, true);
  } catch (e) {
    // A JIT (a kernel tree's, or a strategy's code) refusing a valid program is a finding, reported shrunk.
    if (e instanceof JitError) throw new JitError(`${e.message}\nfound at seed ${o.seed}, path ${path}; shrunk plan: ${JSON.stringify(shrunk.plan)}`);
    // A user's strategy module failing (a hook threw, returned garbage, emitted what cannot be
    // assembled) is an input error, shrunk to the plan that shows it.
    if (e instanceof StrategyError) throw new StrategyError(`${e.message}\n(at seed ${o.seed}, path ${path}; the smallest plan that shows it: ${JSON.stringify(shrunk.plan)})`);
    throw new HarnessError(`checking a generated plan threw (seed ${o.seed}, path ${path}): ${(e as Error).message}\nplan: ${JSON.stringify(shrunk.plan)}`, o.seed, path);
  }
  return { ...failed, shrinks: shrunk.shrinks, counterexample, elapsedMs: performance.now() - started };
}

/** `i/n`: shard i (1-based) of n. */
export interface Shard { readonly index: number; readonly count: number }

/** This shard's share of `runs` cases and its seed (the campaign seed for shard 1, then seed + i - 1). */
export function shardOf(runs: number, seed: number, s: Shard): { runs: number; seed: number } {
  const base = Math.floor(runs / s.count), extra = runs % s.count;
  return { runs: base + (s.index <= extra ? 1 : 0), seed: (seed + s.index - 1) | 0 };
}
