// The property runner (design.md §6-§8): one scenario × strategy × unwinder → a verdict, in
// random mode (the scenario's own interrupt schedule) or exhaustive mode (one run per
// instruction boundary, an IRQ or an NMI injected there), with a coverage count of the
// interrupt points hit: (function kind, prologue/body/epilogue window).
import { HELPERS, KFUNCS } from "../jit/bpf/abi.ts";
import { SymbolTable } from "./machine/symbols.ts";
import { buildImage, type Image } from "../jit/image.ts";
import type { JitBackend } from "../jit/backend.ts";
import type { Strategy } from "../jit/strategy.ts";
import type { Policy, StackClass } from "./oracles/classify.ts";
import type { RunFailure } from "./oracles/run.ts";
import { RUN_STEP_BUDGET, runScenario, scheduleOf, startRun, type Injection, type RunOptions, type RunOutcome, type UnwinderName } from "./run.ts";
import type { Scenario } from "./scenario.ts";
import { LOCAL_TIMER_VECTOR } from "../jit/kernel/layout.ts";


/** The first thing that failed in a run, in the order a reader needs it: the run, a walk, a check. */
export interface FirstFailure {
  readonly kind: "run" | "sample" | "check";
  /** The run's result kind, the sample's class, or the check's name. */
  readonly what: string;
  readonly message: string;
  /** Index of the failing sample. */
  readonly sample?: number;
}

export function firstFailure(o: RunOutcome): FirstFailure | undefined {
  if (o.result.kind !== "completed") return { kind: "run", what: o.result.kind, message: `the run ended ${o.result.kind}${"message" in o.result ? `: ${o.result.message}` : ""}` };
  const i = o.samples.findIndex((s) => s.failed);
  if (i >= 0) {
    const s = o.samples[i]!;
    return { kind: "sample", what: s.class, sample: i, message: `${s.kind} at ${s.where} (step ${s.step}): ${s.class}` };
  }
  const c: RunFailure | undefined = o.checks.failures[0];
  return c ? { kind: "check", what: c.check, message: c.message } : undefined;
}

export type FunctionKind = "main" | "subprog" | "helper" | "kfunc" | "entry" | "kernel";
export type CodeWindow = "prologue" | "body" | "epilogue";
/** Where an interrupt hit: `main/prologue`, `subprog/body`, `helper`, `entry`, ... */
export type PointClass = `${FunctionKind}/${CodeWindow}` | FunctionKind;

/**
 * What the scheduler did, counted beside the interrupt points (several tasks): ticks, preemptions
 * at interrupt return inside BPF code or kernel code and at preempt_enable(), sleeps, and
 * reliable walks of blocked tasks (and how many of those were -EINVAL).
 */
export const SCHED_KEYS = ["tick", "preempt/bpf", "preempt/kernel", "preempt/enable", "sleep", "blocked-walk", "blocked-unreliable"] as const;
export type SchedKey = (typeof SCHED_KEYS)[number];
/** A coverage count's key: an interrupt point's class, or a scheduling event. */
export type CoverageKey = PointClass | SchedKey;

/** Every class pointClassifier() can give: the coverage report counts how many of them were hit. */
export const POINT_CLASSES: readonly PointClass[] = [
  ...(["main", "subprog"] as const).flatMap((k) => (["prologue", "body", "epilogue"] as const).map((w) => `${k}/${w}` as const)),
  "helper", "kfunc", "entry", "kernel",
];

const POINT_OF_KERNEL_FUNCTION: ReadonlyMap<string, PointClass> = new Map([
  ...HELPERS.map((h) => [h.name, "helper"] as const), ...KFUNCS.map((k) => [k.name, "kfunc"] as const),
]);

/**
 * Classes interrupt points of one image: BPF functions by the frame window their strategy
 * declared (before it is ready: prologue; once gone: epilogue), kernel code by its symbol.
 */
export function pointClassifier(img: Image): (ip: bigint) => PointClass {
  const symbols = new SymbolTable(img.symbols);
  const bpf = img.programs.flatMap((p) => p.jit.funcs.map((f) => ({ main: f.fi === 0, base: f.image.base, end: f.image.end, frame: f.frame })));
  return (ip) => {
    const f = bpf.find((x) => ip >= x.base && ip < x.end);
    if (f) return `${f.main ? "main" : "subprog"}/${ip < f.frame.ready ? "prologue" : ip >= f.frame.gone ? "epilogue" : "body"}`;
    const s = symbols.lookup(ip);
    if (s?.kind === "entry") return "entry";
    return POINT_OF_KERNEL_FUNCTION.get(s?.name ?? "") ?? "kernel";
  };
}

export interface CheckOptions {
  readonly unwinder: UnwinderName;
  /** Which JIT makes the BPF code (default the TypeScript JIT). */
  readonly jit?: JitBackend;
  readonly policy?: Policy;
  readonly privateStacks?: RunOptions["privateStacks"];
  readonly budgets?: RunOptions["budgets"];
  readonly maxSteps?: number;
  /** Exhaustive mode: told how many boundaries of how many are done (every 256, and at the end). */
  readonly onBoundary?: (done: number, total: number) => void;
}

export interface Verdict {
  readonly ok: boolean;
  /** The failing run (random mode: the run; exhaustive: the first failing fork), else the base run. */
  readonly outcome: RunOutcome;
  readonly failure: FirstFailure | undefined;
  /** Exhaustive mode: the injection of the failing fork. */
  readonly injection?: Injection;
  /** Runs made (1 in random mode). */
  readonly runs: number;
  /** Interrupt points hit, by class (delivered interrupts), and scheduling events. */
  readonly coverage: ReadonlyMap<CoverageKey, number>;
}

const runOpts = (o: CheckOptions, image: Image, injections: readonly Injection[]): RunOptions => ({
  unwinder: o.unwinder, policy: o.policy ?? "strict", image, injections,
  ...(o.privateStacks ? { privateStacks: o.privateStacks } : {}), ...(o.budgets ? { budgets: o.budgets } : {}), ...(o.maxSteps ? { maxSteps: o.maxSteps } : {}),
});

/** Coverage counts, added to run by run (exhaustive mode counts thousands of forks: it keeps no outcomes). */
function coverageCounter(img: Image): { add(o: RunOutcome): void; readonly coverage: Map<CoverageKey, number> } {
  const classify = pointClassifier(img);
  const coverage = new Map<CoverageKey, number>();
  const add = (k: CoverageKey, n: number) => { if (n > 0) coverage.set(k, (coverage.get(k) ?? 0) + n); };
  return {
    coverage,
    add(o) {
      for (const r of o.delivered) add(classify(r.ip), 1);
      const s = o.sched;
      add("tick", s.ticks); add("preempt/bpf", s.preemptedInBpf); add("preempt/kernel", s.preemptedInKernel); add("preempt/enable", s.preemptedAtEnable);
      add("sleep", s.sleeps); add("blocked-walk", s.blockedWalks); add("blocked-unreliable", s.blockedUnreliable);
    },
  };
}

function countPoints(img: Image, outcomes: readonly RunOutcome[]): Map<CoverageKey, number> {
  const c = coverageCounter(img);
  for (const o of outcomes) c.add(o);
  return c.coverage;
}

/** Random mode: one run with the scenario's own interrupt schedule. */
/** The image of a scenario under a strategy, by the backend the options name. */
export const imageFor = (sc: Scenario, strategy: Strategy, o: { readonly jit?: JitBackend }): Image => buildImage(sc.spec, strategy, undefined, undefined, o.jit);

export function checkRandom(sc: Scenario, strategy: Strategy, o: CheckOptions, image: Image = imageFor(sc, strategy, o)): Verdict {
  const outcome = runScenario(sc, strategy, runOpts(o, image, scheduleOf(sc)));
  const failure = firstFailure(outcome);
  return { ok: failure === undefined, outcome, failure, runs: 1, coverage: countPoints(image, [outcome]) };
}

/**
 * Exhaustive mode: a base run without interrupts counts the instruction boundaries; then, at
 * each boundary, the run is forked (machine snapshot plus every sample's and check's state) once
 * per kind, with that single interrupt injected there (an IRQ on the scenario's first vector, if
 * it has one, else with tasks the tick; an NMI always), and run to its end. Stops at the first failing fork. The same
 * verdicts as one run from the start per boundary (test/unit/harness/property.test.ts checks
 * that), at half the work: the prefix runs once.
 */
export function checkExhaustive(sc: Scenario, strategy: Strategy, o: CheckOptions & { readonly kinds?: readonly ("irq" | "nmi")[] }, image: Image = imageFor(sc, strategy, o)): Verdict {
  const base = runScenario(sc, strategy, runOpts(o, image, []));
  const baseFailure = firstFailure(base);
  if (baseFailure || base.result.kind !== "completed") return { ok: false, outcome: base, failure: baseFailure, runs: 1, coverage: new Map() };
  // the IRQ: the scenario's first vector, or with tasks and none attached, the tick
  const vector = sc.spec.irq?.[0]?.vector ?? (image.multitask ? LOCAL_TIMER_VECTOR : undefined);
  const kinds = (o.kinds ?? ["irq", "nmi"]).filter((k) => k === "nmi" || vector !== undefined);
  const budget = o.maxSteps ?? RUN_STEP_BUDGET;
  const run = startRun(sc, strategy, runOpts(o, image, []));
  const counted = coverageCounter(image);
  let runs = 0;
  const total = base.result.steps;
  for (let step = 0; step < total; step++) {
    if ((step & 255) === 0) o.onBoundary?.(step, total);
    const at = run.m.runUntil(step, { maxSteps: budget });
    if (at.kind !== "paused") throw new Error(`exhaustive mode: the base run did not reach step ${step} again (${at.kind}); runs must be deterministic`);
    const back = run.save();
    for (const kind of kinds) {
      const injection: Injection = { kind: kind === "irq" && vector === LOCAL_TIMER_VECTOR && image.multitask ? "tick" : kind, atStep: step, vector: kind === "nmi" ? 2 : vector! };
      run.m.raise(injection.vector);
      const outcome = run.finish(run.m.run({ maxSteps: budget }), [injection], [{ ...injection, ip: at.rip, symbol: run.sym(at.rip) }]);
      back();
      runs++;
      counted.add(outcome);
      const failure = firstFailure(outcome);
      if (failure) return { ok: false, outcome, failure, injection, runs: runs + 1, coverage: counted.coverage };
    }
  }
  o.onBoundary?.(total, total);
  return { ok: true, outcome: base, failure: undefined, runs: runs + 1, coverage: counted.coverage };
}

export type { StackClass };
