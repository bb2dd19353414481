// Campaigns (design.md §7-§8): the sound designs pass a budget of generated scenarios, in random
// and exhaustive mode, under the frame unwinder and the strict policy; every broken design is
// caught and shrinks to a minimal counterexample; a printed seed and path replays it. Verdicts
// come from the machine and the unwinder model, never from a strategy's name: the expectations
// below are what the model showed, and a change in them is a finding to look at.
// FC_SEED pins the seed and FC_NUM_RUNS scales the budget (test/setup.ts does the same for fc).
import { describe, expect, test } from "vitest";
import { HarnessError, runCampaign, shardOf, type CampaignResult } from "../../../harness/campaign.ts";
import { planToScenario, type Plan } from "../../../generators/index.ts";
import { pointClassifier } from "../../../harness/property.ts";
import { formatCounterexample } from "../../../harness/report.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { strategy } from "../../helpers/strategies.ts";

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : 20261124;
const RUNS = process.env.FC_NUM_RUNS ? Number(process.env.FC_NUM_RUNS) : 90;
const where = (r: CampaignResult) => `seed ${r.seed}, path ${r.path}`;
const functions = (r: CampaignResult) => r.counterexample!.scenario.programs.reduce((n, p) => n + p.funcs.length, 0);

describe("the sound designs pass", () => {
  // r9-private only where one recursion counter guards the program: on the uprobe paths it is not
  // sound, nor for a program attached through two paths (campaign-tasks.test.ts); with one task
  // every path is counted or cannot nest
  test.each([
    ["baseline", {}], ["r9-private", { counterlessPaths: false, links: false }], ["r9-private", { tasks: 1 }],
  ] as const)("%s %o: random scenarios with random interrupts, frame unwinder, strict", (name, constraints) => {
    const r = runCampaign({ strategy: strategy(name), unwinder: "frame", policy: "strict", runs: RUNS, seed: SEED, constraints });
    expect(r.ok, r.counterexample ? formatCounterexample(r.counterexample.scenario, r.counterexample.image, r.counterexample.verdict, { strategy: name, unwinder: "frame", policy: "strict", replay: where(r) }) : "").toBe(true);
    expect(r.runs).toBe(RUNS);
    // the schedules reach the rare points: helpers, prologues, IRQ entry code
    for (const k of ["helper", "main/prologue", "entry"] as const) expect(r.coverage.get(k) ?? 0, k).toBeGreaterThan(0);
    // with tasks: ticks, preemption inside BPF code, sleeps and walks of blocked tasks happen
    if (!("tasks" in constraints)) for (const k of ["tick", "preempt/bpf", "sleep", "blocked-walk"] as const) expect(r.coverage.get(k) ?? 0, k).toBeGreaterThan(0);
  });

  test.each(["baseline", "r9-private"])("%s: exhaustive mode (an IRQ and an NMI at every boundary) on small generated scenarios", (name) => {
    const r = runCampaign({
      strategy: strategy(name), unwinder: "frame", policy: "strict", exhaustive: true, runs: Math.max(2, Math.round(RUNS / 40)), seed: SEED,
      constraints: { maxPrograms: 2, maxFuncs: 2, maxItems: 3, interrupts: false, tasks: 1 },
    });
    expect(r.ok, where(r)).toBe(true);
    expect(r.coverage.get("main/body") ?? 0).toBeGreaterThan(10);
  });

  test("baseline: exhaustive mode with two tasks (the IRQ at every boundary is the tick: a preemption wherever one can happen)", () => {
    const r = runCampaign({
      strategy: strategy("baseline"), unwinder: "frame", policy: "strict", exhaustive: true, runs: 3, seed: SEED,
      constraints: { maxPrograms: 1, maxFuncs: 1, maxItems: 2, interrupts: false, irq: false, nmi: false },
    });
    expect(r.ok, where(r)).toBe(true);
    expect(r.coverage.get("preempt/bpf") ?? 0).toBeGreaterThan(5);
  });
});

// Each broken design is caught within a few scenarios, and shrinks to one program (at most two
// functions: the generator's forward-only call graph may keep a callee) whose failing check is
// the one the report names. No interrupt is needed for the stack-switching designs: the helper's
// bpf_get_stack-style walk from inside the program already fails.
describe("every broken design is caught and shrinks to a minimal counterexample", () => {
  test.each([
    ["split-stack", ["TRUNCATED"]], ["full-private", ["TRUNCATED"]], ["split-double-frame", ["TRUNCATED"]],
    // rbp pointing at the private stack: the walk flags a bad frame pointer, or (an NMI's perf
    // walk whose first_frame is never reached) ends empty
    ["limited-recursion", ["TRUNCATED"]], ["rbp-private", ["FLAGGED", "TRUNCATED"]],
    // a helper clobbers r9: the program's stack accesses go astray (a fault) or its result changes
    ["r9-no-save", ["fault", "semantics"]],
  ] as const)("%s: %s", (name, classes) => {
    const r = runCampaign({ strategy: strategy(name), unwinder: "frame", policy: "strict", runs: 100, seed: SEED });
    expect(r.ok).toBe(false);
    const cx = r.counterexample!;
    const what = cx.verdict.failure!.what;
    expect(classes, where(r)).toContain(what);
    expect(r.runs, where(r)).toBeLessThanOrEqual(20);
    expect(cx.scenario.programs.length, where(r)).toBeLessThanOrEqual(2);
    expect(functions(r), where(r)).toBeLessThanOrEqual(2);
    if (what !== "fault" && what !== "semantics") {
      const sample = cx.verdict.outcome.samples[cx.verdict.failure!.sample!]!;
      expect(sample.class).toBe(what);
      expect(sample.unwound.length).toBeLessThan(sample.truth.length);
      // where the report says it failed: a helper's walk with no interrupt needed, or one
      // interrupt whose interrupted point is BPF code or a helper it called (not entry code)
      const delivered = cx.verdict.outcome.delivered;
      if (sample.kind === "bpf_get_stack (helper)") expect(delivered, where(r)).toEqual([]);
      else {
        expect(delivered.length, where(r)).toBeLessThanOrEqual(2);
        const point = pointClassifier(cx.image);
        expect(["main", "subprog", "helper"].includes(point(delivered[0]!.ip).split("/")[0]!), `${point(delivered[0]!.ip)}, ${where(r)}`).toBe(true);
      }
      // the walk says why it stopped
      expect(sample.stopped, where(r)).toMatch(/get_stack_info\(\)|first_frame|not kernel text|only goes up/);
    }
    // the mail-ready report: 80 columns, why the walk stopped, the failing function with the strategy's prologue and epilogue marked
    const mail = formatCounterexample(cx.scenario, cx.image, cx.verdict, { strategy: name, unwinder: "frame", policy: "strict", replay: `npx stackcheck replay --strategy ${name} --seed ${r.seed} --path ${r.path}` }, "email");
    const lines = mail.trimEnd().split("\n");
    expect(lines.filter((l) => l.length > 80), mail).toEqual([]);
    if (what !== "fault" && what !== "semantics") expect(mail).toContain("the walk stopped: ");
    const listing = lines.filter((l) => /^(P |E |=>|  ) \+0x[0-9a-f]{3} /.test(l));
    expect(listing.some((l) => l.startsWith("P ")), mail).toBe(true);
    expect(listing.some((l) => l.startsWith("E ")), mail).toBe(true);
    expect(listing.filter((l) => l.startsWith("=>")).length, mail).toBe(1);
  });
});

describe("a harness bug", () => {
  test("a plan the harness throws on is a HarnessError with the seed, the path and the plan shrunk", () => {
    const base = strategy("baseline");
    const planted: Strategy = {
      ...base, name: "throws-on-three",
      prologue: (e, f) => {
        if (f.prog.funcs.length >= 3) throw new Error("planted: a program of 3 functions");
        base.prologue(e, f);
      },
    };
    let error: unknown;
    try {
      runCampaign({ strategy: planted, unwinder: "frame", policy: "strict", runs: 200, seed: SEED });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HarnessError);
    const h = error as HarnessError;
    expect(h.seed).toBe(SEED);
    expect(h.path).toMatch(/^\d+$/);
    expect(h.message).toContain(`seed ${SEED}, path ${h.path}`);
    expect(h.message).toContain("planted: a program of 3 functions");
    // shrunk like any failure: its scenario is one program of the three functions it takes (the
    // plan may hold a fourth that no call reaches, which lowering drops)
    const plan = JSON.parse(h.message.slice(h.message.indexOf("plan: ") + "plan: ".length)) as Plan;
    expect(planToScenario(plan).programs.map((p) => p.funcs.length)).toEqual([3]);
  });
});

describe("several interrupt schedules per plan", () => {
  test("each schedule is a scenario of its own on the plan's one image: runs counts scenarios; a failure shrinks as the plan with the schedule that failed, and replays", () => {
    const pass = runCampaign({ strategy: strategy("baseline"), unwinder: "frame", policy: "strict", runs: 30, seed: SEED, schedulesPerPlan: 4, constraints: { maxPrograms: 2, maxFuncs: 2 } });
    expect(pass.ok, where(pass)).toBe(true);
    expect(pass.runs).toBe(30); // 7 plans of 4 schedules and one of 2
    expect(pass.coverage.get("entry") ?? 0).toBeGreaterThan(0);
    // a design whose failure needs an interrupt in the right place: ORC's unknown stack
    const o = { strategy: strategy("split-stack"), unwinder: "orc-6.19", policy: "reliable", schedulesPerPlan: 4 } as const;
    const found = runCampaign({ ...o, runs: 200, seed: SEED });
    expect(found.ok).toBe(false);
    expect(found.counterexample!.verdict.failure!.what, where(found)).toBe("unknown-stack");
    expect(found.counterexample!.plan.interrupts.length, where(found)).toBeGreaterThan(0);
    const again = runCampaign({ ...o, runs: 1, seed: found.seed, path: found.path! });
    expect(again.counterexample!.plan, where(found)).toEqual(found.counterexample!.plan);
  });
});

describe("replay", () => {
  test("a printed seed and path reproduce the same shrunk counterexample", () => {
    const s = strategy("split-double-frame");
    const first = runCampaign({ strategy: s, unwinder: "frame", policy: "strict", runs: 100, seed: SEED });
    expect(first.ok).toBe(false);
    const again = runCampaign({ strategy: s, unwinder: "frame", policy: "strict", runs: 1, seed: first.seed, path: first.path! });
    expect(again.ok).toBe(false);
    expect(again.counterexample!.plan).toEqual(first.counterexample!.plan);
    expect(again.counterexample!.verdict.failure).toEqual(first.counterexample!.verdict.failure);
  });

  test("shards split the runs and give each its own seed", () => {
    expect([1, 2, 3].map((i) => shardOf(10, 7, { index: i, count: 3 }))).toEqual([{ runs: 4, seed: 7 }, { runs: 3, seed: 8 }, { runs: 3, seed: 9 }]);
  });
});
