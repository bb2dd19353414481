// planArb(): the fast-check arbitrary of Plans (design.md §7). Built only from fc.record,
// fc.tuple, fc.array, fc.option, fc.oneof, fc.integer, fc.nat, fc.boolean, fc.constant and
// fc.constantFrom — no `.map` — so every value, stored in a corpus and read back, can shrink
// without its context (`arb.canShrinkWithoutContext(plan)`), and every shrink is a Plan, which
// planToScenario() lowers validly whatever it holds.
//
// Biased toward the shapes that are rare in random programs and matter for stack discipline:
//   - calls right after the prologue and right before the epilogue (`atEntry`/`atExit`, each
//     present half the time; the lowering makes them the first/last instruction where it can);
//   - deep nesting: one plan in four is a chain of programs whose main functions start by
//     running the next program, reaching maxNestDepth kfunc-nested levels (sched_ext's 4);
//     references shrink to 0, which is "the next function / the next program";
//   - program types with their own prog->active (struct_ops, tracing, raw_tp) weighted above the
//     kprobe family, whose shared bpf_prog_active refuses every nested run;
//   - IRQ and NMI programs picked among the first programs, which the task runs itself or
//     reaches through the kfunc: the same program from task, kfunc and IRQ;
//   - interrupt points anchored at calls, function entries and epilogues, at the interrupt's own
//     program's runs (re-entry, refused), and follow-ups a few steps after an IRQ (an NMI in the
//     IRQ entry code) or later (inside the IRQ's program).
import fc from "fast-check";
import { MAX_TASKS } from "../jit/kernel/layout.ts";
import { MAX_FUNCS, MAX_INTERRUPTS, MAX_ITEMS, MAX_NEST_LIMIT, MAX_PROGRAMS, MAX_SLOTS, type Plan, type PlanCallItem, type PlanFunc, type PlanInterrupt, type PlanItem, type PlanProgram } from "./plan.ts";

export interface PlanConstraints {
  /** Programs per plan, 1..MAX_PROGRAMS (default 6). */
  readonly maxPrograms?: number;
  /** Functions per program, 1..MAX_FUNCS (default 4). */
  readonly maxFuncs?: number;
  /** Body items per function, 0..MAX_ITEMS (default 8). */
  readonly maxItems?: number;
  /** Stack slots per function, 1..MAX_SLOTS (default 4). */
  readonly maxSlots?: number;
  /** kfunc-nested levels, 0..MAX_NEST_LIMIT (default 4, hierarchical sched_ext). */
  readonly maxNestDepth?: number;
  /** Programs attached to IRQ vectors (default true). */
  readonly irq?: boolean;
  /** A program attached to the NMI (default true). */
  readonly nmi?: boolean;
  /** An interrupt schedule (default true). */
  readonly interrupts?: boolean;
  /** Interrupt points, 0..MAX_INTERRUPTS (default 4; each may bring a follow-up). */
  readonly maxInterrupts?: number;
  /**
   * A loop only may_goto bounds in the task's main function, sometimes (default false: each
   * runs about a million instructions, and exhaustive mode would fork at every one).
   */
  readonly spinLoops?: boolean;
  /**
   * Tasks on the CPU, 1..MAX_TASKS (default 2). With 2 or more, plans have tasks, ticks, sleeps
   * in sleepable programs and attach paths (and shrink to one task when the failure does not
   * need more); 1 turns all of that off, and the arbitrary is the one without tasks.
   */
  readonly tasks?: number;
  /** Attach paths without a recursion counter (uprobe, uprobe_multi) too (default true). */
  readonly counterlessPaths?: boolean;
  /**
   * Programs attached twice, through two paths of their type (PlanProgram.link; default true):
   * without them each program has one path, and so one recursion counter.
   */
  readonly links?: boolean;
  /**
   * Program types whose runner takes the global bpf_prog_active (kprobe, tracepoint,
   * perf_event) too (default true); without them every counted run takes its own prog->active,
   * the counter design (g) picks its level from.
   */
  readonly bpfProgActivePaths?: boolean;
}

const DEFAULTS: Required<PlanConstraints> = {
  maxPrograms: 6, maxFuncs: 4, maxItems: 8, maxSlots: 4, maxNestDepth: 4, irq: true, nmi: true, interrupts: true, maxInterrupts: 4, spinLoops: false, tasks: 2, counterlessPaths: true, links: true, bpfProgActivePaths: true,
};
const RANGES: Readonly<Record<string, readonly [number, number]>> = {
  maxPrograms: [1, MAX_PROGRAMS], maxFuncs: [1, MAX_FUNCS], maxItems: [0, MAX_ITEMS], maxSlots: [1, MAX_SLOTS],
  maxNestDepth: [0, MAX_NEST_LIMIT], maxInterrupts: [0, MAX_INTERRUPTS], tasks: [1, MAX_TASKS],
};

/** Check the constraints as esbuild checks options: unknown keys and bad values are errors that name them. */
function mustBeConstraints(c: PlanConstraints): Required<PlanConstraints> {
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, v] of Object.entries(c)) {
    if (!(key in DEFAULTS)) throw new RangeError(`planArb: unknown constraint "${key}" (known: ${Object.keys(DEFAULTS).join(", ")})`);
    if (v === undefined) continue;
    const range = RANGES[key];
    if (range) {
      if (!Number.isInteger(v) || (v as number) < range[0] || (v as number) > range[1]) throw new RangeError(`planArb: ${key} must be an integer in ${range[0]}..${range[1]}, got ${String(v)}`);
    } else if (typeof v !== "boolean") throw new RangeError(`planArb: ${key} must be a boolean, got ${String(v)}`);
    out[key] = v;
  }
  return out as Required<PlanConstraints>;
}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

/** Immediates: any s32 (fc.integer already favours 0, ±1 and the bounds). */
const s32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
/** References (slots, callees, programs): mostly the first few, shrinking to 0. */
const ref = fc.oneof(w(3, fc.nat({ max: 2 })), w(1, fc.nat({ max: 63 })));

const callItem: fc.Arbitrary<PlanCallItem> = fc.oneof(
  w(2, fc.record({ op: fc.constant("sample") })),
  w(3, fc.record({ op: fc.constant("call"), target: ref, ptrs: fc.array(ref, { maxLength: 3 }) })),
  w(2, fc.record({ op: fc.constant("nested"), target: ref })),
  w(1, fc.record({ op: fc.constant("mix"), value: s32 })),
);
/** The instruction set's computations, atomics and loops (generators/_internals/emit.ts MATH_KINDS, ATOMIC_KINDS). */
const mathItem = fc.record({ op: fc.constant("math"), kind: fc.nat({ max: 63 }), a: s32, b: fc.oneof(s32, fc.constantFrom(0, -1, 1)) });
const atomicItem = fc.record({ op: fc.constant("atomic"), slot: ref, kind: fc.nat({ max: 15 }), value: s32 });
const loopItem = (spin: boolean) => fc.record({ op: fc.constant("loop"), passes: spin ? fc.oneof(w(1, fc.integer({ min: 1, max: 8 })), w(2, fc.constant(0))) : fc.integer({ min: 1, max: 8 }) });
const itemArb = (spin: boolean, tasks: boolean): fc.Arbitrary<PlanItem> => fc.oneof(
  ...(tasks ? [w(2, fc.record({ op: fc.constant("sleep") }))] : []),
  w(4, fc.record({ op: fc.constant("store"), slot: ref, value: s32, width: fc.constantFrom(8, 4, 2, 1), how: fc.constantFrom("imm", "reg64", "reg32") })),
  w(2, fc.record({ op: fc.constant("rw"), slot: ref, value: s32 })),
  w(1, mathItem),
  w(1, atomicItem),
  w(spin ? 3 : 1, loopItem(spin)),
  w(1, fc.record({ op: fc.constant("ctx"), off: fc.nat({ max: 255 }), width: fc.constantFrom(8, 4, 2, 1) })),
  // calls weigh as much as before the instruction set's items came: interrupts aim at them
  w(4, callItem),
);
/** Extra stack: none, sizes at the edges that matter (56/64: private-stack eligibility after rounding to 16; 128: disp8 → disp32; 448+: near 512), or any. */
const extra = fc.oneof(w(3, fc.constant(0)), w(2, fc.constantFrom(8, 48, 56, 64, 120, 128, 192, 256, 448, 504)), w(1, fc.nat({ max: 512 })));
const countedTypes = [w(3, fc.constant("struct_ops" as const)), w(2, fc.constant("tracing" as const)), w(2, fc.constant("raw_tp" as const))];
const progType = fc.oneof(...countedTypes, w(1, fc.constantFrom("kprobe" as const, "tracepoint" as const, "perf_event" as const)));
/** Without the bpf_prog_active types. */
const progTypeOwnCounter = fc.oneof(...countedTypes);
/** The next program, run right after the prologue: a link of a nesting chain. */
const runNext = fc.constant({ op: "nested", target: 0 } as const);

/**
 * An interrupt schedule, as plans have it (`interrupts`): points at anchors that lowering
 * resolves against the plan (planToScenario.ts), so one schedule fits any plan. Campaigns run
 * several per plan (harness/campaign.ts).
 */
export function scheduleArb(constraints: PlanConstraints = {}): fc.Arbitrary<readonly PlanInterrupt[]> {
  const c = mustBeConstraints(constraints);
  const tasks = c.tasks >= 2;
  const isNmi = c.irq ? fc.boolean() : fc.constant(true);
  const at = fc.oneof(w(4, fc.constant("call")), w(2, fc.constant("entry")), w(2, fc.constant("exit")), w(2, fc.constant("own")), w(1, fc.constant("start")), w(1, fc.constant("anywhere")));
  // A follow-up is an NMI two times in three: the one that can nest inside an IRQ's entry code.
  const followUp = fc.record({
    nmi: c.irq ? fc.oneof(w(2, fc.constant(true)), w(1, fc.constant(false))) : fc.constant(true), vector: fc.nat({ max: 3 }),
    delay: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 240 })), // entry code, or the handler's program
  });
  const interrupt = fc.record({
    nmi: isNmi, vector: fc.nat({ max: 3 }), at, n: fc.nat({ max: 1023 }),
    // with tasks, half the points are ticks: preemption at their return, at the same anchors
    // (function entries: between a nested run's counter increment and its prologue's slot choice)
    ...(tasks ? { tick: fc.boolean() } : {}),
    // 0..8 steps past the anchor: a helper's body, a prologue, an epilogue; sometimes further.
    d: fc.oneof(w(4, fc.integer({ min: 0, max: 8 })), w(1, fc.integer({ min: -16, max: 64 }))),
    then: fc.option(followUp, { freq: 2 }),
  });
  return fc.array(interrupt, { maxLength: c.interrupts ? c.maxInterrupts : 0 });
}

export function planArb(constraints: PlanConstraints = {}): fc.Arbitrary<Plan> {
  const c = mustBeConstraints(constraints);
  const tasks = c.tasks >= 2;
  const item = itemArb(c.spinLoops, tasks);
  // with tasks: each program's attach path (an index into its type's paths), sleepability, and
  // half the time a second attachment through another path (used by types with several: kprobe,
  // tracepoint); none is what a shrink tries first
  const run: { attach?: fc.Arbitrary<number>; sleepable?: fc.Arbitrary<boolean>; link?: fc.Arbitrary<number | null> } = tasks ? { attach: fc.nat({ max: 3 }), sleepable: fc.boolean(), ...(c.links ? { link: fc.option(fc.nat({ max: 2 }), { freq: 2 }) } : {}) } : {};
  const func = (atEntry: fc.Arbitrary<PlanCallItem | null>): fc.Arbitrary<PlanFunc> => fc.record({
    slots: fc.array(s32, { minLength: 1, maxLength: c.maxSlots }),
    extra,
    params: fc.nat({ max: 3 }),
    atEntry,
    body: fc.array(item, { maxLength: c.maxItems }),
    atExit: fc.option(callItem, { freq: 2 }),
  });
  const anyFunc = func(fc.option(callItem, { freq: 2 }));
  const program: fc.Arbitrary<PlanProgram> = fc.record({ type: c.bpfProgActivePaths ? progType : progTypeOwnCounter, privStackRequested: fc.boolean(), seed: s32, funcs: fc.array(anyFunc, { minLength: 1, maxLength: c.maxFuncs }), ...run });
  const chainMain = func(runNext);
  const chainFuncs: fc.Arbitrary<readonly PlanFunc[]> = c.maxFuncs === 1 ? fc.tuple(chainMain) : fc.oneof(fc.tuple(chainMain), fc.tuple(chainMain, anyFunc));
  const chainProgram: fc.Arbitrary<PlanProgram> = fc.record({ type: fc.constantFrom("struct_ops", "tracing", "raw_tp"), privStackRequested: fc.boolean(), seed: s32, funcs: chainFuncs, ...run });
  const general = fc.array(program, { minLength: 1, maxLength: c.maxPrograms });
  const chainLength = Math.min(c.maxPrograms, c.maxNestDepth + 1);
  // fc.oneof shrinks within the arm it drew, and a chain has a fixed length: withCrossShrink
  // first tries the general arm's value, so a failing chain can shrink to a single program.
  const programs = chainLength >= 2 ? fc.oneof({ withCrossShrink: true }, w(3, general), w(1, fc.array(chainProgram, { minLength: chainLength, maxLength: chainLength }))) : general;

  return fc.record({
    nestLimit: fc.constant(c.maxNestDepth),
    programs,
    // Empty arrays as arrays of length 0, not fc.constant([]): a constant recognises only its own
    // array object, so a plan from another planArb() or from JSON could not be shrunk without
    // fast-check's context (campaigns shrink that way: campaign.ts shrinkPlan()).
    irq: fc.array(ref, { maxLength: c.irq ? 4 : 0 }),
    nmi: c.nmi ? fc.option(ref, { freq: 3 }) : fc.constant(null),
    interrupts: scheduleArb(constraints),
    spinLoops: fc.constant(c.spinLoops),
    // the programs of tasks 1..: all of them mostly; none (one task) is what a shrink tries first
    ...(tasks && !c.counterlessPaths ? { countedPaths: fc.constant(true) } : {}),
    ...(tasks ? { tasks: fc.oneof({ withCrossShrink: true }, w(1, fc.array(ref, { maxLength: 0 })), w(6, fc.array(ref, { minLength: c.tasks - 1, maxLength: c.tasks - 1 }))) } : {}),
  });
}
