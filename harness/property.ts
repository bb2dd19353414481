// The property runner (design.md §6-§8): one scenario × strategy × unwinder → a verdict, in
// random mode (the scenario's own interrupt schedule) or exhaustive mode (one run per
// instruction boundary, an IRQ or an NMI injected there), with a coverage count of the
// interrupt points hit: (function kind, prologue/body/epilogue window).
import { HELPERS, KFUNCS } from "../jit/bpf/abi.ts";
import { symbolTableOf } from "./machine/symbols.ts";
import { bpfProgs, buildImage, type Image } from "../jit/image.ts";
import type { JitBackend } from "../jit/backend.ts";
import type { Strategy } from "../jit/strategy.ts";
import type { Policy, StackClass } from "./oracles/classify.ts";
import type { RunFailure } from "./oracles/run.ts";
import { driveRun, runScenario, scheduleOf, startRun, stepBudget, type Injection, type RunOptions, type RunOutcome, type RunSession, type SavedRun, type SchedCounts, type UnwinderName } from "./run.ts";
import { kernelStacks, type KernelStack } from "../jit/private-stacks.ts";
import { deadSpans, stackSpans } from "./oracles/dead-stack.ts";
import { PT_REGS } from "../arch/ptrace.ts";
import type { Scenario } from "./scenario.ts";
import { LOCAL_TIMER_VECTOR } from "../jit/kernel/layout.ts";
import { toCanonical, type Machine, type MachineSnapshot } from "./machine/index.ts";


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
  if (o.ok) return undefined; // (completed, and no sample or check failed: its samples stay unworded)
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
  const symbols = symbolTableOf(img.symbols);
  const bpf = bpfProgs(img).flatMap((p) => p.jit.funcs.map((f) => ({ main: f.fi === 0, base: f.image.base, end: f.image.end, frame: f.frame })));
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
  /** Exhaustive mode: which interrupts to inject at each boundary (default both). */
  readonly kinds?: readonly ("irq" | "nmi")[];
  /**
   * Exhaustive mode: run each fork only until its interrupt has returned to a state the unforked
   * run was in at that boundary; false runs every fork to its end. Default: on for the built-in
   * designs, off for a strategy module (it rests on their keeping the no-red-zone rule).
   */
  readonly shortcut?: boolean;
  /** Exhaustive mode: walk NMIs without running their handler where that is the same (default: with the early end). */
  readonly virtualNmi?: boolean;
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
  /** Exhaustive mode: forks that ended when their interrupt returned (the rest ran to the end). */
  readonly earlyEnds?: number;
  /** Exhaustive mode: NMIs whose walk was made without running a fork (see virtualNmi()). */
  readonly virtualNmis?: number;
  /** Interrupt points hit, by class (delivered interrupts), and scheduling events. */
  readonly coverage: ReadonlyMap<CoverageKey, number>;
}

const runOpts = (o: CheckOptions, image: Image, injections: readonly Injection[]): RunOptions => ({
  unwinder: o.unwinder, policy: o.policy ?? "strict", image, injections,
  ...(o.privateStacks ? { privateStacks: o.privateStacks } : {}), ...(o.budgets ? { budgets: o.budgets } : {}), ...(o.maxSteps ? { maxSteps: o.maxSteps } : {}),
});

/** Coverage counts, added to run by run (exhaustive mode counts thousands of forks: it keeps no outcomes). */
function coverageCounter(img: Image): { add(o: Pick<RunOutcome, "delivered" | "sched">): void; addVirtual(ip: bigint, sched: SchedCounts): void; readonly coverage: Map<CoverageKey, number> } {
  const classify = pointClassifier(img);
  const coverage = new Map<CoverageKey, number>();
  const add = (k: CoverageKey, n: number) => { if (n > 0) coverage.set(k, (coverage.get(k) ?? 0) + n); };
  const addSched = (s: SchedCounts) => {
    add("tick", s.ticks); add("preempt/bpf", s.preemptedInBpf); add("preempt/kernel", s.preemptedInKernel); add("preempt/enable", s.preemptedAtEnable);
    add("sleep", s.sleeps); add("blocked-walk", s.blockedWalks); add("blocked-unreliable", s.blockedUnreliable);
  };
  return {
    coverage,
    add(o) {
      for (const r of o.delivered) add(classify(r.ip), 1);
      addSched(o.sched);
    },
    /** A fork not run (a virtual NMI at `ip`): its interrupt point, and the unforked run's scheduling. */
    addVirtual(ip, sched) {
      add(classify(ip), 1);
      addSched(sched);
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
 * it has one, else with tasks the tick; an NMI always), and run to its end. Stops at the first
 * failing fork. The same verdicts as one run from the start per boundary
 * (test/unit/harness/property.test.ts checks that), at half the work: the prefix runs once.
 *
 * A fork also ends early when its interrupt has returned to the interrupted instruction and the
 * machine is in the state the unforked run was in at that boundary: registers, flags, interrupt
 * state, the ground truth, the running and parked tasks, and memory (per-CPU counters included)
 * but for what nothing reads (the stack below rsp, the IRQ and NMI stacks when no context is on
 * them, prog->misses). The rest of that fork is the rest of the unforked run, which passed: its
 * verdict is what the fork saw up to there (checks, samples). That assumes the kernel's rule
 * that no code reads below rsp (x86-64 kernel code has no red zone), which every built-in
 * design keeps; the verdicts equal those of forks run to their end (property.test.ts), and
 * `shortcut: false` runs them all to the end.
 */
export function checkExhaustive(sc: Scenario, strategy: Strategy, o: CheckOptions, image: Image = imageFor(sc, strategy, o)): Verdict {
  // The unforked run, on the session the forks will use: kept as it starts, run to its end,
  // then put back to its start (one set-up, not two).
  const unforked = runOpts(o, image, []);
  const run = startRun(sc, strategy, unforked);
  try {
    return forkEveryBoundary(run, sc, strategy, o, image, unforked);
  } finally {
    run.end();
  }
}

/** checkExhaustive() on its started session. */
function forkEveryBoundary(run: RunSession, sc: Scenario, strategy: Strategy, o: CheckOptions, image: Image, unforked: RunOptions): Verdict {
  const start = run.save();
  const base = driveRun(run, sc, unforked);
  const baseFailure = firstFailure(base);
  if (baseFailure || base.result.kind !== "completed") return { ok: false, outcome: base, failure: baseFailure, runs: 1, coverage: new Map() };
  start.restore();
  // the IRQ: the scenario's first vector, or with tasks and none attached, the tick
  const vector = sc.spec.irq?.[0]?.vector ?? (image.multitask ? LOCAL_TIMER_VECTOR : undefined);
  const kinds = (o.kinds ?? ["irq", "nmi"]).filter((k) => k === "nmi" || vector !== undefined);
  const budget = o.maxSteps ?? stepBudget(sc, 1); // the fork's interrupt
  const counted = coverageCounter(image);
  const kernel = kernelStacks(image), spans = stackSpans(image);
  /** What nothing reads before writing at a boundary (the dead-stack check holds every run to it). */
  const dead = (rsp: number): [bigint, bigint][] => deadSpans(spans, rsp).map(([b, e]) => [toCanonical(b), toCanonical(e)]);
  // the early end (see above): by default for the built-in designs, whose verdicts it keeps
  // (property.test.ts); a strategy module may break the no-red-zone rule it rests on
  // (and not for a kernel tree's JIT, which may be a user's own patch: --early-end asks for it)
  const early = o.shortcut ?? (strategy.origin === undefined && (o.jit === undefined || o.jit.name === "ts"));
  // prog->misses: statistics no code reads (the runner only counts into them, as
  // bpf_prog_inc_misses_counter() does); the semantics check compares them with the refusals it
  // saw, which the stopped fork reports as it counted them
  const stats: [bigint, bigint][] = bpfProgs(image).map((p) => [image.thisCpu(p.misses), image.thisCpu(p.misses) + 8n]);
  let runs = 0, earlyEnds = 0, virtualNmis = 0;
  // (not with stack budgets: a real NMI notes the interrupted rsp in the stack's high-water mark)
  const nmi = virtualNmi(sc, image, kernel, early && o.virtualNmi !== false && Object.keys(o.budgets ?? {}).length === 0);
  const total = base.result.steps;
  for (let step = 0; step < total; step++) {
    if ((step & 255) === 0) o.onBoundary?.(step, total);
    const at = run.m.runUntil(step, { maxSteps: budget });
    if (at.kind !== "paused") throw new Error(`exhaustive mode: the base run did not reach step ${step} again (${at.kind}); runs must be deterministic`);
    // the boundary's state, kept at the first real fork (a virtual NMI needs none)
    let saved: SavedRun | undefined;
    // A fork may end early unless it has failed (its report is then the whole run), or its extra
    // steps would take the rest of the unforked run past the step budget (a hang).
    const mayEnd = (m: Machine) => !run.failing() && total + (m.steps - step) <= budget;
    // (made at the first real fork of this boundary: its snapshot is the boundary's state)
    let returned: ReturnType<typeof returnedAlike> | undefined;
    for (const kind of kinds) {
      const injection: Injection = { kind: kind === "irq" && vector === LOCAL_TIMER_VECTOR && image.multitask ? "tick" : kind, atStep: step, vector: kind === "nmi" ? 2 : vector! };
      // an NMI with no program to run: its walk alone, without running its handler (a fork only
      // when that walk fails, for the report; or to learn where the NMI saves its pt_regs)
      // (and only where a real one would not take the run past its step budget: a hang)
      if (kind === "nmi" && nmi.layout !== undefined && total + nmi.layout.steps <= budget && nmi.onKernelStack(run.m.reg("rsp"))) {
        if (!run.nmiWalkFails(nmi.layout.regs, nmi.layout.words)) {
          runs++;
          virtualNmis++;
          counted.addVirtual(at.rip, base.sched);
          continue;
        }
      }
      const learn = kind === "nmi" && nmi.eligible && nmi.layout === undefined && !nmi.tried ? nmi.learn(run) : undefined;
      saved ??= run.save();
      if (early) returned ??= returnedAlike(run.m, saved.machine, at.rip, [...dead(run.m.rspAt), ...stats], mayEnd);
      run.m.raise(injection.vector);
      const disarm = returned?.arm();
      let result = run.m.run({ maxSteps: budget });
      disarm?.();
      // back where it was interrupted, in the state the unforked run was in there: the rest of
      // the fork is the rest of that run, which passed (its result stands for the fork's)
      const ended = result.kind === "stopped" && returned?.stopped() === true;
      if (ended) { result = base.result; earlyEnds++; }
      learn?.(run.m.steps - step);
      // a fork that passed (its outcome's firstFailure() would be undefined: it completed, or
      // ended as the unforked run, and no sample or check failed): its coverage only, with no
      // outcome built (a report of every check, copies of the samples)
      if (result.kind === "completed" && !run.failing()) {
        const now = run.coverageNow();
        counted.add(ended ? { delivered: now.delivered, sched: addSched(now.sched, base.sched, saved.sched) } : now);
        saved.restore();
        runs++;
        continue;
      }
      let outcome = run.finish(result, [injection], [{ ...injection, ip: at.rip, symbol: run.sym(at.rip) }]);
      // and what the scheduler did in the rest of the unforked run (the coverage counts it)
      if (ended) outcome = { ...outcome, sched: addSched(outcome.sched, base.sched, saved.sched) };
      saved.restore();
      runs++;
      counted.add(outcome);
      const failure = firstFailure(outcome);
      if (failure) return { ok: false, outcome, failure, injection, runs: runs + 1, earlyEnds, virtualNmis, coverage: counted.coverage };
    }
  }
  o.onBoundary?.(total, total);
  return { ok: true, outcome: base, failure: undefined, runs: runs + 1, earlyEnds, virtualNmis, coverage: counted.coverage };
}

/**
 * Exhaustive mode's NMIs without a fork, for a scenario whose NMI runs no program: the NMI's
 * only effects are its perf sample and its return to a state the unforked run was in (the
 * early end's argument), so a boundary's fork is its walk, made from the pt_regs the NMI would
 * save (RunSession.nmiWalkFails()). Where asm_exc_nmi saves them, and the words of them that
 * are not registers, are learnt from the first real NMI, and only if every other word is the
 * register it should be; the walk is made only with rsp on a kernel stack (else the
 * unknown-stack check has its say in a real fork), and not with stack budgets (a real NMI's
 * interrupted rsp counts in the high-water mark). A walk that fails is run as a real fork, for
 * the report.
 */
function virtualNmi(sc: Scenario, img: Image, kernel: readonly KernelStack[], enabled: boolean) {
  const self = {
    eligible: enabled && sc.spec.nmi === undefined,
    tried: false,
    /**
     * Where it saves its pt_regs, the words of them that are not registers, and the steps its
     * fork took from the boundary (with the rest of the run when that fork ran to its end: more
     * than an NMI's own, so fewer walks made alone near the step budget, never a hang missed).
     */
    layout: undefined as { regs: bigint; words: Record<"orig_ax" | "cs" | "ss", bigint>; steps: number } | undefined,
    // as the unknown-stack check has it: a task's stack (begin, end], get_stack_info()'s [begin, end)
    onKernelStack: (rsp: bigint) => kernel.some((k) => (k.task ? rsp > k.begin && rsp <= k.end : rsp >= k.begin && rsp < k.end)),
    /** Arm a hook that reads the NMI's pt_regs; the function returned checks them once the fork ran, given the steps it added. */
    learn(run: RunSession): (steps: number) => void {
      self.tried = true;
      let seen: { regs: bigint; frame: bigint; words: ReturnType<RunSession["ptRegsAt"]> } | undefined;
      const expectNow = run.ptRegsNow({ orig_ax: 0n, cs: 0n, ss: 0n });
      const remove = run.m.addHook(img.kernel.addr("nmi_sample"), (mm) => {
        const regs = mm.reg("rdi"), frame = mm.truth().find((t) => t.kind === "interrupt");
        if (!seen && frame?.kind === "interrupt") seen = { regs, frame: frame.frame, words: run.ptRegsAt(regs) };
      });
      return (steps) => {
        remove();
        if (!seen || seen.frame !== seen.regs + BigInt(PT_REGS.ip)) return;
        const w = seen.words;
        for (const f of Object.keys(w) as (keyof typeof w)[]) if (f !== "orig_ax" && f !== "cs" && f !== "ss" && w[f] !== expectNow[f]) return;
        self.layout = { regs: seen.regs, words: { orig_ax: w.orig_ax, cs: w.cs, ss: w.ss }, steps };
      };
    },
  };
  return self;
}

/** A fork's scheduler counts, and the unforked run's from `at` (its counts then) to its end. */
function addSched(fork: SchedCounts, end: SchedCounts, at: SchedCounts): SchedCounts {
  const out = { ...fork };
  for (const k of Object.keys(out) as (keyof SchedCounts)[]) out[k] += end[k] - at[k];
  return out;
}

/**
 * The early end of a fork: a hook at the interrupted instruction, at the interrupted depth, that
 * stops the fork when the interrupt has returned there in the state the machine was in at the
 * boundary (`before`, but for `dead` memory). Asked once per fork: the first time the instruction comes
 * back with the interrupt delivered (with IF clear it runs first, the interrupt pending: then
 * never, and so does a fork whose interrupt changed anything); `stopped` says it stopped.
 */
function returnedAlike(m: Machine, before: MachineSnapshot, ip: bigint, dead: readonly [bigint, bigint][], mayEnd: (m: Machine) => boolean): { arm(): () => void; stopped(): boolean } {
  const depth = m.depth;
  let asked = false, stopped = false;
  return {
    arm() {
      asked = false;
      stopped = false;
      // first: at its stop the address's own hooks (samples, the scheduler's counts) have not run,
      // as in the unforked run at that boundary
      return m.addHook(ip, (mm) => {
        if (asked || mm.depth !== depth) return;
        asked = true;
        const p = mm.pending;
        if (mm.steps === before.steps || p.nmi || p.irqs.length !== 0 || !mayEnd(mm) || !mm.sameStateAs(before, dead)) return;
        stopped = true;
        return "stop";
      }, { first: true });
    },
    stopped: () => stopped,
  };
}

export type { StackClass };
