// planArb(): the contract every generator keeps (style.md habit 13) — valid by construction,
// valid after shrinking (with and without context: plans are raw values), deterministic for a
// seed, constraints checked and honoured — and the rare shapes it is biased toward do occur.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { parseScenario, type ScenarioFile } from "../../../harness/scenario.ts";
import { planArb, planToScenario, type Plan } from "../../../generators/index.ts";
import { endsWithCall, funcsOf, nestedEdges, nestingHeight, reachedByTask, scaled, startsWithCall } from "./support.ts";

const valid = (plan: Plan) => { parseScenario(planToScenario(plan), "generated"); };

describe("validity", () => {
  test("every generated plan lowers to a scenario that parseScenario (schema and verifier) accepts", () => {
    fc.assert(fc.property(planArb(), (plan) => { valid(plan); }), { numRuns: scaled(200) });
  });

  test("so do plans from the largest constraints", () => {
    const big = planArb({ maxPrograms: 32, maxFuncs: 8, maxItems: 32, maxSlots: 8, maxNestDepth: 8, maxInterrupts: 16 });
    fc.assert(fc.property(big, (plan) => { valid(plan); }), { numRuns: scaled(15) });
  });

  test("every shrink of a generated plan is a plan that lowers validly, with and without fast-check's context", () => {
    const arb = new Capture(planArb());
    let checked = 0;
    fc.assert(fc.property(arb, fc.infiniteStream(fc.nat()), (_plan, picks) => {
      // Walk one random path down the shrink tree from the generated value (with its context),
      // and check the first shrinks of each step, with and without the context.
      let value = arb.last!;
      const pick = picks[Symbol.iterator]();
      for (let depth = 0; depth < 8; depth++) {
        expect(arb.canShrinkWithoutContext(value.value), "a plan is a raw value: it shrinks without context").toBe(true);
        const withContext = [...arb.shrink(value.value, value.context).take(6)];
        const without = [...arb.shrink(value.value, undefined).take(3)];
        for (const s of [...withContext, ...without]) { valid(s.value); checked++; }
        if (withContext.length === 0) break;
        value = withContext[pick.next().value! % withContext.length]!;
      }
    }), { numRuns: scaled(8) });
    expect(checked).toBeGreaterThan(40);
  });

  // Campaigns shrink the plan they found with a new planArb() (campaign.ts shrinkPlan()), and
  // corpus files hold plans as JSON: neither is the object fast-check generated.
  test.each([{}, { irq: false }, { interrupts: false }, { nmi: false }, { irq: false, nmi: false, interrupts: false }])(
    "a plan read back from JSON is one a new planArb(%o) shrinks without context",
    (c) => {
      const other = planArb(c);
      for (const plan of fc.sample(planArb(c), { numRuns: 30, seed: 5 })) {
        const again = JSON.parse(JSON.stringify(plan)) as unknown;
        expect(other.canShrinkWithoutContext(again)).toBe(true);
        if (!isSmallest(plan)) expect([...other.shrink(again as Plan, undefined).take(1)]).toHaveLength(1);
      }
    },
  );

  test("a failing property shrinks to a small counterexample that still lowers validly", () => {
    // "No plan makes two kfunc-nested runs" is false; the shrunk plan must be valid and minimal-ish.
    const details = fc.check(fc.property(planArb({ interrupts: false }), (plan) => {
      const f = planToScenario(plan);
      return nestedEdges(f).reduce((n, e) => n + e.size, 0) < 2;
    }), { numRuns: 200, seed: 7 });
    expect(details.failed).toBe(true);
    const [plan] = details.counterexample!;
    valid(plan);
    expect(plan.programs.length).toBeLessThanOrEqual(3);
    expect(plan.programs.flatMap((p) => p.funcs.flatMap((f) => f.body)).length).toBeLessThanOrEqual(2);
  });
});

/** A plan with nothing left to shrink: one program of one empty function, nothing attached. */
const isSmallest = (p: Plan) =>
  p.programs.length === 1 && p.programs[0]!.funcs.length === 1 && p.programs[0]!.funcs[0]!.body.length === 0 && p.irq.length === 0 && p.nmi === null && p.interrupts.length === 0;

/** An arbitrary that keeps the last Value it generated, context included, for the shrink walk. */
class Capture<T> extends fc.Arbitrary<T> {
  last: fc.Value<T> | undefined;
  constructor(private readonly inner: fc.Arbitrary<T>) { super(); }
  generate(mrng: fc.Random, biasFactor: number | undefined): fc.Value<T> {
    this.last = this.inner.generate(mrng, biasFactor);
    return this.last;
  }
  canShrinkWithoutContext(value: unknown): value is T { return this.inner.canShrinkWithoutContext(value); }
  shrink(value: T, context: unknown): fc.Stream<fc.Value<T>> { return this.inner.shrink(value, context); }
}

describe("determinism", () => {
  test("the same seed gives the same plans, and the same plan the same scenario", () => {
    const a = fc.sample(planArb(), { seed: 42, numRuns: 30 });
    const b = fc.sample(planArb(), { seed: 42, numRuns: 30 });
    expect(b).toEqual(a);
    expect(a.map((p) => JSON.stringify(planToScenario(p)))).toEqual(b.map((p) => JSON.stringify(planToScenario(p))));
    expect(fc.sample(planArb(), { seed: 43, numRuns: 30 })).not.toEqual(a);
  });
});

describe("constraints", () => {
  test("are checked: an unknown key or a value out of range is an error naming it", () => {
    expect(() => planArb({ maxProgram: 3 } as never)).toThrow(/planArb: unknown constraint "maxProgram"/);
    expect(() => planArb({ maxPrograms: 0 })).toThrow(/planArb: maxPrograms must be an integer in 1\.\.32, got 0/);
    expect(() => planArb({ maxNestDepth: 9 })).toThrow(/maxNestDepth must be an integer in 0\.\.8/);
    expect(() => planArb({ maxItems: 2.5 })).toThrow(/maxItems must be an integer/);
    expect(() => planArb({ irq: "yes" as never })).toThrow(/planArb: irq must be a boolean/);
  });

  test("are honoured", () => {
    const sample = (c: Parameters<typeof planArb>[0]) => fc.sample(planArb(c), { seed: 5, numRuns: 60 });
    for (const p of sample({ maxPrograms: 2, maxFuncs: 1, maxItems: 1, maxSlots: 1, maxInterrupts: 1 })) {
      expect(p.programs.length).toBeLessThanOrEqual(2);
      for (const q of p.programs) {
        expect(q.funcs.length).toBe(1);
        expect(q.funcs[0]!.body.length).toBeLessThanOrEqual(1);
        expect(q.funcs[0]!.slots.length).toBe(1);
      }
      expect(p.interrupts.length).toBeLessThanOrEqual(1);
    }
    for (const p of sample({ irq: false, nmi: false })) {
      expect(p.irq).toEqual([]);
      expect(p.nmi).toBeNull();
      expect(p.interrupts.every((x) => x.nmi && (x.then === null || x.then.nmi))).toBe(true);
    }
    expect(sample({ interrupts: false }).every((p) => p.interrupts.length === 0)).toBe(true);
    for (const p of sample({ maxNestDepth: 1 })) expect(nestingHeight(nestedEdges(planToScenario(p)), 0)).toBeLessThanOrEqual(1);
    // bpf_prog_active's program types (kprobe, tracepoint, perf_event) only when allowed
    const globalTypes = (c: Parameters<typeof planArb>[0]) => sample(c).flatMap((p) => planToScenario(p).programs.map((q) => q.type)).filter((t) => ["kprobe", "tracepoint", "perf_event"].includes(t));
    expect(globalTypes({}).length).toBeGreaterThan(0);
    expect(globalTypes({ bpfProgActivePaths: false })).toEqual([]);
  });
});

describe("bias: the rare shapes occur (a fixed sample of 400 plans)", () => {
  const N = 400;
  let files: ScenarioFile[] | undefined;
  /** The share of the sample's scenarios with a property (the sample is lowered on first use). */
  const share = (pred: (f: ScenarioFile) => boolean) => {
    files ??= fc.sample(planArb(), { seed: 20240601, numRuns: N }).map((p) => planToScenario(p));
    return files.filter(pred).length / N;
  };

  test("a call is the first instruction after a prologue, or the last before an epilogue", () => {
    expect(share((f) => funcsOf(f).some(startsWithCall))).toBeGreaterThan(0.3); // measured 0.44
    expect(share((f) => funcsOf(f).some(endsWithCall))).toBeGreaterThan(0.3); // measured 0.40
  });

  test("kfunc-nested runs reach 4 levels below the task's program (sched_ext's hierarchy)", () => {
    expect(share((f) => nestingHeight(nestedEdges(f), 0) >= 4)).toBeGreaterThan(0.2); // measured 0.27
    expect(share((f) => nestedEdges(f).some((e, i) => e.has(i)))).toBeGreaterThan(0.2); // a program runs itself: refused
  });

  test("a program attached to an IRQ is also the task's, or one the task runs through the kfunc", () => {
    const attached = (f: ScenarioFile) => (f.irq ?? []).map((a) => f.programs.findIndex((p) => p.name === a.program));
    expect(share((f) => attached(f).includes(0))).toBeGreaterThan(0.3);
    expect(share((f) => attached(f).some((i) => i > 0 && reachedByTask(nestedEdges(f)).has(i)))).toBeGreaterThan(0.2); // measured 0.33
  });

  test("an NMI program, and an NMI raised within an IRQ's entry code", () => {
    expect(share((f) => f.nmi !== undefined)).toBeGreaterThan(0.5);
    const nmiSoonAfterIrq = (f: ScenarioFile) => {
      const xs = f.interrupts ?? [];
      return xs.some((a) => a.kind === "irq" && xs.some((b) => b.kind === "nmi" && b.atStep > a.atStep && b.atStep - a.atStep <= 34));
    };
    expect(share(nmiSoonAfterIrq)).toBeGreaterThan(0.05); // measured 0.10
  });

  test("frames beyond disp8 reach (> 128 bytes), bpf_sc_rw through stack pointers", () => {
    expect(share((f) => funcsOf(f).some((fn) => fn.stackDepth > 128))).toBeGreaterThan(0.5);
    expect(share((f) => funcsOf(f).some((fn) => fn.insns.some((x) => x[0] === 0x85 && x[2] === 0 && x[4] === 2)))).toBeGreaterThan(0.5);
  });
});
