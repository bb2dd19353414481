// The property runner on the example scenario: exhaustive verdicts, coverage of interrupt points,
// and the counterexample report's parts.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { LOCAL_TIMER_VECTOR } from "../../../jit/kernel/layout.ts";
import fc from "fast-check";
import { planArb, planToScenario, type Plan } from "../../../generators/index.ts";
import { checkExhaustive, checkRandom, firstFailure, type CheckOptions } from "../../../harness/property.ts";
import { formatCounterexample } from "../../../harness/report.ts";
import { runScenario, scheduleOf, type RunOutcome } from "../../../harness/run.ts";
import { loadScenario, parseScenario, type Scenario } from "../../../harness/scenario.ts";
import { buildImage } from "../../../jit/image.ts";
import { TS_JIT } from "../../../jit/backend.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { strategy } from "../../helpers/strategies.ts";

const sc = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));
/** The first `n` of `xs` that pass `ok` (testing no more than needed). */
function firstOf<T>(xs: readonly T[], ok: (x: T) => boolean, n: number): T[] {
  const out: T[] = [];
  for (const x of xs) if (out.length < n && ok(x)) out.push(x);
  return out;
}
const scaled = (n: number) => Math.max(1, Math.round((n * Number(process.env.FC_NUM_RUNS ?? 100)) / 100));

describe("exhaustive mode", () => {
  test.each(["baseline", "r9-private"])("%s: an IRQ and an NMI at every boundary of the example, each run passes (frame, strict)", (name) => {
    const told: [number, number][] = [];
    const v = checkExhaustive(sc, strategy(name), { unwinder: "frame", onBoundary: (done, total) => told.push([done, total]) });
    expect(v.failure).toBeUndefined();
    expect(v.ok).toBe(true);
    const steps = v.outcome.result.kind === "completed" ? v.outcome.result.steps : 0;
    expect(v.runs).toBe(1 + 2 * steps); // the base run, then one IRQ run and one NMI run per boundary
    // progress (replay/run --exhaustive): every 256 boundaries, then the end
    expect(told).toEqual([...Array.from({ length: Math.ceil(steps / 256) }, (_, i) => [i * 256, steps]), [steps, steps]]);
    // every window of both function kinds, helpers and the kfunc were interrupted
    for (const k of ["main/prologue", "main/body", "main/epilogue", "subprog/prologue", "subprog/body", "subprog/epilogue", "helper", "kfunc", "kernel"]) {
      expect(v.coverage.get(k as never) ?? 0).toBeGreaterThan(0);
    }
  });

  test("an IRQ raised while the syscall entry keeps IRQs off is delivered when do_syscall_64 enables them", () => {
    const o = runScenario(sc, strategy("baseline"), { unwinder: "frame", injections: [{ kind: "irq", atStep: 0, vector: 236 }] });
    expect(o.raised.map((r) => r.symbol)).toEqual(["do_syscall_64"]);
    expect(o.delivered.map((r) => r.symbol)).toEqual(["do_syscall_64+0xa"]); // after push 0x202; popfq
    expect(o.ok).toBe(true);
  });

  test("an unwinder name that is not one of UNWINDERS is an error naming it, not some ORC version", () => {
    expect(() => runScenario(sc, strategy("baseline"), { unwinder: "orc" as never })).toThrow("unknown unwinder 'orc' (one of frame, orc-6.13, orc-6.19)");
  });

  // Forks against the obvious definition: one run from the start per boundary and kind. Every
  // outcome must be the same, samples, checks and all, on generated plans and on the example,
  // under designs that pass and designs that fail in a fork (not in the base run).
  // The early end of a fork (an interrupt that returned to the state the unforked run was in):
  // the same verdicts as forks run to their end, under every design and two unwinders, with one
  // task and with two (where a tick's preemption keeps the fork running).
  test("forks that end when their interrupt has returned alike give the verdicts of forks run to their end", () => {
    // with two tasks, a plan whose programs sleep: the scheduler's counts after an early end are
    // the fork's and the rest of the unforked run's
    const sleeps = (p: Plan) => {
      const scenario = parseScenario(planToScenario(p), "plan");
      return runScenario(scenario, strategy("baseline"), { unwinder: "frame" }).sched.sleeps > 0;
    };
    const plans = [
      ...fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 3, interrupts: false, tasks: 1 }), { numRuns: scaled(1), seed: 42 }),
      ...firstOf(fc.sample(planArb({ maxPrograms: 2, maxFuncs: 1, maxItems: 3, interrupts: false, links: false }), { numRuns: 60, seed: 43 }), sleeps, scaled(1)),
      // two tasks and no IRQ program: the IRQ injected is the tick, whose fork sets
      // TIF_NEED_RESCHED (memory the comparison must see)
      ...fc.sample(planArb({ maxPrograms: 2, maxFuncs: 1, maxItems: 3, interrupts: false, links: false, irq: false, tasks: 2 }), { numRuns: scaled(1), seed: 44 }),
    ].map((p) => parseScenario(planToScenario(p), "plan"));
    expect(plans.length).toBe(3 * scaled(1));

    let early = 0, forks = 0, failing = 0, sleptIn = 0, virtual = 0;
    for (const scenario of plans) {
      for (const [i, s] of BUILTIN_STRATEGIES.entries()) {
        for (const unwinder of [i % 2 ? "orc-6.19" : "frame"] as const) {
          const image = buildImage(scenario.spec, s);
          const fast = checkExhaustive(scenario, s, { unwinder, shortcut: true }, image);
          const full = checkExhaustive(scenario, s, { unwinder, shortcut: false }, image);
          const verdict = (v: typeof fast) => ({ ok: v.ok, failure: v.failure, injection: v.injection, runs: v.runs, coverage: v.coverage });
          if (i === 0) sleptIn += full.coverage.get("sleep") ?? 0;
          expect(verdict(fast), `${s.name} ${unwinder}`).toEqual(verdict(full));
          early += fast.earlyEnds ?? 0;
          virtual += fast.virtualNmis ?? 0;
          forks += fast.runs - 1;
          if (!fast.ok) failing++;
        }
      }
    }
    // and, under the baseline, a scenario whose ticks preempt a task in a sleeping program (a
    // fork's TIF_NEED_RESCHED, were it not compared, would be lost: fewer blocked-task walks)
    const preempted = loadScenario(fileURLToPath(new URL("../../scenarios/uprobe-sleep-two-tasks.json", import.meta.url)));
    const pb = strategy("baseline"), pi = buildImage(preempted.spec, pb);
    const [pFast, pFull] = [true, false].map((shortcut) => checkExhaustive(preempted, pb, { unwinder: "frame", shortcut }, pi));
    expect({ ...pFast!, outcome: undefined, earlyEnds: undefined, virtualNmis: undefined }).toEqual({ ...pFull!, outcome: undefined, earlyEnds: undefined, virtualNmis: undefined });
    expect(pFull!.coverage.get("blocked-walk")).toBeGreaterThan(0);
    // with a task-stack budget at the unforked run's own high-water mark: an NMI's interrupted
    // rsp (lower than at any call) goes over it, in a real fork as in the shortcut's (a scenario
    // with NMIs alone: no IRQ, whose forks would find it first, and no NMI program)
    const one = parseScenario(planToScenario(fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 3, interrupts: false, tasks: 1, nmi: false, irq: false }), { numRuns: 1, seed: 42 })[0]!), "plan");
    const s0 = strategy("baseline");
    const mark = runScenario(one, s0, { unwinder: "frame" }).checks.highWater.find((h) => h.stack === "TASK")!.bytes;
    const budgeted = (shortcut: boolean) => checkExhaustive(one, s0, { unwinder: "frame", budgets: { task: mark }, shortcut }, buildImage(one.spec, s0));
    const [withShortcut, without] = [budgeted(true), budgeted(false)];
    expect(without.ok).toBe(false);
    expect({ ok: withShortcut.ok, failure: withShortcut.failure, injection: withShortcut.injection }).toEqual({ ok: without.ok, failure: without.failure, injection: without.injection });
    expect(failing).toBeGreaterThan(0);
    expect(sleptIn).toBeGreaterThan(0); // the coverage compared counts sleeps
    expect(early + virtual).toBeGreaterThan(forks / 3); // many forks end early, or are not run
    expect(virtual).toBeGreaterThan(0); // NMIs with no program: their walks alone
  });

  test("a kernel tree's JIT (which may be a user's patch) gets the early end and NMIs without a fork only when asked", () => {
    const s = strategy("baseline");
    const image = buildImage(sc.spec, s);
    const kernel = { ...TS_JIT, name: "kernel" as const };
    const byDefault = checkExhaustive(sc, s, { unwinder: "frame", jit: kernel }, image);
    expect(byDefault.ok).toBe(true);
    expect([byDefault.earlyEnds, byDefault.virtualNmis]).toEqual([0, 0]);
    const asked = checkExhaustive(sc, s, { unwinder: "frame", jit: kernel, shortcut: true }, image);
    expect(asked.earlyEnds).toBeGreaterThan(0);
    expect(checkExhaustive(sc, s, { unwinder: "frame" }, image).earlyEnds).toBe(asked.earlyEnds); // the TS JIT's default
  });

  test("under a sound design every NMI with no program is its walk alone, but the one that learns where pt_regs are", () => {
    // a virtual NMI whose pt_regs were wrong would fail its walk and be run as a real fork: the
    // verdict would stand, the count of walks made alone would not
    const s = strategy("baseline");
    for (const p of fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 3, interrupts: false, tasks: 1, nmi: false }), { numRuns: 3, seed: 9 })) {
      const scenario = parseScenario(planToScenario(p), "plan");
      const v = checkExhaustive(scenario, s, { unwinder: "frame", kinds: ["nmi"] }, buildImage(scenario.spec, s));
      expect(v.ok).toBe(true);
      expect(v.virtualNmis).toBe(v.runs - 2); // runs: the base run, then one per boundary
    }
  });

  test("forked runs give exactly what one run from the start per boundary gives", () => {
    const byReruns = (scenario: Scenario, s: Strategy, o: CheckOptions) => {
      const image = buildImage(scenario.spec, s);
      // the IRQ exhaustive mode injects: the first attached vector, or with tasks the tick
      const vector = scenario.spec.irq?.[0]?.vector ?? (image.multitask ? LOCAL_TIMER_VECTOR : undefined);
      const irqKind = image.multitask && vector === LOCAL_TIMER_VECTOR ? "tick" : "irq";
      const base = runScenario(scenario, s, { ...o, image });
      const out: RunOutcome[] = [base];
      if (firstFailure(base) || base.result.kind !== "completed") return out;
      for (let step = 0; step < base.result.steps; step++) {
        for (const kind of ["irq", "nmi"] as const) {
          if (kind === "irq" && vector === undefined) continue;
          const r = runScenario(scenario, s, { ...o, image, injections: [{ kind: kind === "irq" ? irqKind : kind, atStep: step, vector: kind === "nmi" ? 2 : vector! }] });
          out.push(r);
          if (firstFailure(r)) return out;
        }
      }
      return out;
    };
    // one-task plans, and small plans with tasks (forks then carry parked tasks and per-task checks)
    const plans = [
      ...fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 2, interrupts: false, tasks: 1 }), { numRuns: 3, seed: 4 }),
      ...fc.sample(planArb({ maxPrograms: 1, maxFuncs: 1, maxItems: 2, interrupts: false, irq: false, nmi: false }), { numRuns: 2, seed: 5 }),
    ];
    const cases = [sc, ...plans.map((p) => parseScenario(planToScenario(p), "plan"))];
    expect(cases.some((c) => (c.spec.tasks?.length ?? 0) >= 2)).toBe(true);
    let forkFailures = 0;
    for (const scenario of cases) {
      for (const name of ["baseline", "r9-no-save", "rbp-private"]) {
        const o: CheckOptions = { unwinder: "frame" };
        const v = checkExhaustive(scenario, strategy(name), o);
        const runs = byReruns(scenario, strategy(name), o);
        const last = runs[runs.length - 1]!;
        expect(v.runs, name).toBe(runs.length);
        expect(v.outcome, name).toEqual(v.ok ? runs[0] : last);
        if (!v.ok && runs.length > 1) forkFailures++;
      }
    }
    expect(forkFailures).toBeGreaterThan(0);
  });

  test("split-stack: the base run already fails, at the helper's stack sample", () => {
    const v = checkExhaustive(sc, strategy("split-stack"), { unwinder: "frame" });
    expect(v.ok).toBe(false);
    expect(v.runs).toBe(1);
    expect(v.failure).toMatchObject({ kind: "sample", what: "TRUNCATED" });
    expect(v.outcome.samples[v.failure!.sample!]!.kind).toBe("bpf_get_stack (helper)");
  });
});

describe("windows the kernel's unwinder expects to lose", () => {
  // An NMI on do_syscall_64's first instruction: regs->bp is the user's, so the frame unwinder
  // hits bad_address after the NMI's pt_regs, quietly (regs->sp is at the task's pt_regs), and
  // misses entry_SYSCALL_64. The kernel expects that loss: WINDOW, not FLAGGED.
  const file = {
    version: 1, task: "p0", nmi: "p1", interrupts: [{ kind: "nmi", atStep: 0 }],
    programs: [
      { name: "p0", type: "tracing", funcs: [{ name: "main", stackDepth: 8, insns: [[183, 0, 0, 0, 0], [149, 0, 0, 0, 0]] }] },
      { name: "p1", type: "struct_ops", funcs: [{ name: "main", stackDepth: 8, insns: [[133, 0, 0, 0, 3], [183, 0, 0, 0, 0], [149, 0, 0, 0, 0]] }] },
    ],
  };
  test.each(["baseline", "r9-private"])("%s: an NMI at do_syscall_64's entry, its program's bpf_get_stack: WINDOW, with the unwinder's error", (name) => {
    const scenario = parseScenario(file, "inline");
    const out = runScenario(scenario, strategy(name), { unwinder: "frame", injections: scheduleOf(scenario) });
    const helper = out.samples.find((x) => x.kind === "bpf_get_stack (helper)")!;
    expect(helper).toMatchObject({ class: "WINDOW", failed: false, error: true, warnings: [] });
    expect(helper.truth.length - helper.unwound.length).toBe(1);
    expect(out.ok).toBe(true);
  });
});

describe("runs on an image's reused machine", () => {
  test("are independent of the run before: the same outcome as on a fresh machine, twice, with no hook or watcher left over", () => {
    const s = strategy("r9-private");
    const image = buildImage(sc.spec, s);
    const strip = (o: ReturnType<typeof runScenario>) => JSON.stringify(o, (_, v) => (typeof v === "bigint" ? v.toString(16) : v));
    const fresh = strip(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) }));
    const first = runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc) });
    expect(first.samples).toHaveLength(3);
    expect(strip(first)).toBe(fresh);
    // a run with other injections in between, then the same run again
    runScenario(sc, s, { unwinder: "orc-6.19", image, injections: [{ kind: "nmi", atStep: 5, vector: 2 }] });
    expect(strip(runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc) }))).toBe(fresh);
  });
});

describe("counterexample report", () => {
  test("split-stack on the example: scenario, interrupts with a marked disassembly window, chains, stacks, checks, replay", () => {
    const s = strategy("split-stack");
    const image = buildImage(sc.spec, s);
    const v0 = checkRandom(sc, s, { unwinder: "frame" }, image);
    const outcome = runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc), picture: v0.failure!.sample! });
    const text = formatCounterexample(sc, image, { ...v0, outcome }, { strategy: s.name, unwinder: "frame", policy: "strict", replay: "npx stackcheck replay --strategy split-stack --seed 1 --path 0" });
    expect(text).toMatch(/^counterexample: strategy split-stack, unwinder frame, policy strict\nfailure: class TRUNCATED: NMI \(perf, from regs\) at common_interrupt\+0x36 \(step \d+\): TRUNCATED\nscenario: 2 program\(s\), 3 function\(s\)\n/);
    expect(text).toContain("   6: call bpf_sc_rw#2");
    expect(text).toMatch(/IRQ 236 delivered at step \d+, interrupting bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(main\/body\):\n/);
    expect(text).toMatch(/^=> ffffffff81000[0-9a-f]{3} <common_interrupt\+0x36>/m);
    expect(text).toMatch(/^! 1  ffffffff81000[0-9a-f]{3} asm_common_interrupt\+0x46/m); // its call of common_interrupt, past PUSH_REGS and CLEAR_REGS
    expect(text).toContain("stacks at the sample:");
    expect(text).toMatch(/private outer\/main stack \[ffff88807fc[0-9a-f]{5}, ffff88807fc[0-9a-f]{5}\):/);
    expect(text).toMatch(/rbp chain: ffff88807fc[0-9a-f]{5} -> /);
    expect(text).toContain("FAIL unknown-stack: vector 236 taken at");
    expect(text.trimEnd().split("\n").at(-1)).toBe("replay: npx stackcheck replay --strategy split-stack --seed 1 --path 0");
  });
});
