// README finding 6: under 7.2's private stacks (r9-private), may_goto's timed refill looks for
// its count and timestamp through rbp (arch_bpf_timed_may_goto, arch/x86/net/
// bpf_timed_may_goto.S: `leaq (%rbp, %r10, 1), %r10`) while the fix-up keeps them on the
// private stack (BPF_REG_10 is r9 there). bpf_check_timed_may_goto() then reads and writes a
// slot of the kernel stack: with the frame of these scenarios, arch_bpf_timed_may_goto's own
// saved rcx (BPF R4). Found from machine state: the program's result against the reference
// interpreter. The same scenarios pass without a private stack.
import { describe, expect, test } from "vitest";
import { loadScenario, parseScenario, type Scenario } from "../../../harness/scenario.ts";
import { RUN_STEP_BUDGET, runScenario, scheduleOf, stepBudget } from "../../../harness/run.ts";
import { firstFailure } from "../../../harness/property.ts";
import { MONO_CLOCK_START, MONO_CLOCK_STEP } from "../../../jit/kernel/layout.ts";
import { hostTimeout } from "../../helpers/runs.ts";
import { strategy } from "../../helpers/strategies.ts";

const scenario = (f: string) => loadScenario(new URL(`../../scenarios/${f}`, import.meta.url).pathname);
const run = (f: string, s: string) => runScenario(scenario(f), strategy(s), { unwinder: "frame", policy: "strict" });

describe("may_goto under a private stack (arch_bpf_timed_may_goto reads through rbp)", () => {
  test("baseline: the loop runs its 2 × BPF_MAX_TIMED_LOOPS passes, as the interpreter says", () => {
    const o = run("may-goto-private-stack.json", "baseline");
    expect(o.result).toMatchObject({ kind: "completed", rax: 2n * 0xffffn });
    expect(firstFailure(o)).toBeUndefined();
  }, hostTimeout(30_000));

  test("r9-private: the first refill finds a nonzero 'timestamp' (the saved rcx) and ends the loop after one budget", () => {
    const o = run("may-goto-private-stack.json", "r9-private");
    expect(o.result).toMatchObject({ kind: "completed", rax: 0xffffn });
    expect(firstFailure(o)).toMatchObject({ kind: "check", what: "semantics" });
    expect(firstFailure(o)!.message).toBe("loop returned 000000000000ffff; the reference interpreter gives 000000000001fffe");
  }, hostTimeout(30_000));

  test("r9-private with r4 = 0: the 'timestamp' write lands on the saved rcx, so BPF R4 comes back as the clock", () => {
    expect(firstFailure(run("may-goto-clobber.json", "baseline"))).toBeUndefined();
    const o = run("may-goto-clobber.json", "r9-private");
    const clock = MONO_CLOCK_START + BigInt(MONO_CLOCK_STEP); // the first read of ktime_get_mono_fast_ns()
    expect(o.result).toMatchObject({ kind: "completed", rax: clock });
    expect(firstFailure(o)!.message).toBe(`loop returned ${clock.toString(16).padStart(16, "0")}; the reference interpreter gives 0000000000000000`);
  }, hostTimeout(30_000));
});

describe("the step budget of loops only may_goto bounds", () => {
  // A harness bug a campaign found: one budget per scenario (RUN_STEP_BUDGET, room for about
  // three such loops) made a sound scenario whose program runs the loop four times (two tasks,
  // an IRQ twice) a hang. The budget now grows with every start of a run.
  test("four runs of the loop complete under baseline, past the one-run budget", () => {
    const sc = scenario("spin-loops-four-runs.json");
    const o = runScenario(sc, strategy("baseline"), { unwinder: "frame", policy: "strict", injections: scheduleOf(sc) });
    expect(o.result.kind).toBe("completed");
    expect(firstFailure(o)).toBeUndefined();
    // (so the one-run budget would have ended it as a hang)
    expect(o.result.kind === "completed" && o.result.steps).toBeGreaterThan(RUN_STEP_BUDGET);
  }, hostTimeout(30_000));
});

describe("stepBudget(): which programs have a loop with a may_goto in it", () => {
  /** One task running `insns` (raw [code, dst, src, off, imm]), with `interrupts` ticks. */
  const withBody = (insns: number[][], interrupts = 0) => parseScenario({
    version: 2, name: "t", programs: [{ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth: 0, insns }] }], tasks: ["p"],
    interrupts: Array.from({ length: interrupts }, (_, i) => ({ kind: "tick", atStep: 10 + i })),
  }, "t");
  const MAY_GOTO = [229, 0, 0, 2, 0], ADD = [7, 6, 0, 0, 1], END = [[191, 0, 6, 0, 0], [149, 0, 0, 0, 0]];
  test("none: the one-run budget", () => {
    expect(stepBudget(scenario("nested.json"), 3)).toBe(RUN_STEP_BUDGET);
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], ADD, ...END]), 0)).toBe(RUN_STEP_BUDGET);
  });
  test("a goto back to the may_goto, a label before it, a gotol: one budget more per task and interrupt", () => {
    expect(stepBudget(scenario("may-goto-private-stack.json"), 0)).toBe(2 * RUN_STEP_BUDGET);
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], MAY_GOTO, ADD, [5, 0, 0, -3, 0], ...END]), 2)).toBe(4 * RUN_STEP_BUDGET);
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], ADD, [229, 0, 0, 1, 0], [5, 0, 0, -3, 0], ...END]), 0)).toBe(2 * RUN_STEP_BUDGET);
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], MAY_GOTO, ADD, [6, 0, 0, 0, -3], ...END]), 0)).toBe(2 * RUN_STEP_BUDGET);
  });
  test("a counted loop with a may_goto in it counts too (may_goto may be what ends it)", () => {
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], MAY_GOTO, ADD, [165, 6, 0, -3, 3], ...END]), 1)).toBe(3 * RUN_STEP_BUDGET);
  });
  test("a may_goto outside any loop does not count, nor one right before a loop's first instruction; the budget stops at 32 runs", () => {
    expect(stepBudget(withBody([[183, 6, 0, 0, 0], [229, 0, 0, 1, 0], ADD, ...END]), 0)).toBe(RUN_STEP_BUDGET);
    // (not a program the verifier takes: a loop nothing bounds, with the may_goto just before it)
    const insns = [[183, 6, 0, 0, 0], [229, 0, 0, 2, 0], ADD, [5, 0, 0, -2, 0], ...END].map(([code, dst, src, off, imm]) => ({ code, dst, src, off, imm }));
    const outside = { programs: [{ insns, funcs: [{ name: "main", start: 0, end: insns.length, stackDepth: 0 }] }], spec: {} } as unknown as Scenario;
    expect(stepBudget(outside, 0)).toBe(RUN_STEP_BUDGET);
    const many = withBody([[183, 6, 0, 0, 0], MAY_GOTO, ADD, [5, 0, 0, -3, 0], ...END], 40);
    expect(stepBudget(many, scheduleOf(many).length)).toBe(32 * RUN_STEP_BUDGET);
  });
});
