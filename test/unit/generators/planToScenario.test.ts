// planToScenario(): hand-written and edge plans lower validly (wrapping, clamping, never
// rejecting), the lowering is pure and follows the plan's shapes, the step model it places
// interrupts with is exact for baseline, and corrupting any live stack slot changes the result.
// On the machine under baseline (design (a), the reference), every program invocation returns
// what the reference interpreter computes, with the plan's own interrupts, and the interrupt
// points are raised and land where the plan aims them: helpers, prologues, entry code, the
// interrupt's own program (whose re-entry the runner must refuse).
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { fixupsWithMap } from "../../../jit/bpf/fixups.ts";
import { parseScenario } from "../../../harness/scenario.ts";
import { runScenario, scheduleOf } from "../../../harness/run.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import type { Program } from "../../../jit/bpf/program.ts";
import { validate } from "../../../jit/bpf/validate.ts";
import { buildImage } from "../../../jit/image.ts";
import { baseline } from "../../../jit/strategies/baseline.ts";
import {
  IRQ_VECTORS, MAX_FUNCS, MAX_ITEMS, MAX_PROGRAMS, MAX_SLOTS, planArb, planToScenario,
  type Plan, type PlanCallItem, type PlanFunc, type PlanItem, type PlanProgram,
} from "../../../generators/index.ts";
import { lowerPlan } from "../../../generators/_internals/lower.ts";
import { IRQ_ENTER, IRQ_EXIT, NMI_ENTER, NMI_EXIT } from "../../../generators/_internals/steps.ts";
import { program } from "../../../jit/bpf/program.ts";
import { alu64, exit } from "../../../jit/bpf/insn.ts";
import { BPF_ALU64, BPF_ATOMIC, BPF_FETCH, BPF_K, BPF_MOV, BPF_STX, BPF_W, BPF_X, BPF_XOR, R0 } from "../../../jit/bpf/opcodes.ts";
import { endsWithCall, landings, nestedEdges, nestingHeight, scaled, startsWithCall, type Landing } from "./support.ts";
import { loadImage, startTask } from "../../../harness/load.ts";

const func = (over: Partial<PlanFunc> = {}): PlanFunc => ({ slots: [7], extra: 0, params: 0, atEntry: null, body: [], atExit: null, ...over });
const prog = (over: Partial<PlanProgram> = {}): PlanProgram => ({ type: "struct_ops", privStackRequested: false, seed: 1, funcs: [func()], ...over });
const plan = (over: Partial<Plan> = {}): Plan => ({ nestLimit: 4, programs: [prog()], irq: [], nmi: null, interrupts: [], ...over });
const parse = (p: Plan) => parseScenario(planToScenario(p), "hand-written");
/** The task's result as the reference interpreter computes it. */
const result = (p: Plan) => {
  const sc = parse(p);
  return runProgram(interpEnv(sc.programs, sc.spec.nested ?? [], 1), 0);
};

describe("hand-written and edge plans lower validly", () => {
  test("nothing at all: no programs, no functions, no slots", () => {
    expect(parse(plan({ programs: [] })).programs).toHaveLength(1);
    expect(parse(plan({ programs: [prog({ funcs: [] })] })).programs[0]!.funcs).toHaveLength(1);
    // a function that touches no slot has the verifier's depth, 0
    expect(parse(plan({ programs: [prog({ funcs: [func({ slots: [] })] })] })).programs[0]!.funcs[0]!.stackDepth).toBe(0);
    expect(parse(plan({ programs: [prog({ funcs: [func({ slots: [], body: [{ op: "store", slot: 0, value: 1, width: 8, how: "imm" }] })] })] })).programs[0]!.funcs[0]!.stackDepth).toBe(8);
  });

  test("every limit at once: 32 programs of 8 functions of 32 items over 8 slots, 512-byte frames, every call kind", () => {
    const items: PlanItem[] = Array.from({ length: MAX_ITEMS }, (_, k): PlanItem => {
      switch (k % 6) {
        case 0: return { op: "store", slot: k, value: -k, width: [8, 4, 2, 1][k % 4]!, how: (["imm", "reg64", "reg32"] as const)[k % 3]! };
        case 1: return { op: "rw", slot: k, value: k };
        case 2: return { op: "call", target: k, ptrs: [k, k + 1, k + 2] };
        case 3: return { op: "nested", target: k };
        case 4: return { op: "mix", value: k };
        default: return { op: "sample" };
      }
    });
    const f = func({ slots: Array.from({ length: MAX_SLOTS }, (_, k) => k), extra: 512, params: 3, atEntry: { op: "call", target: 0, ptrs: [] }, body: items, atExit: { op: "call", target: 0, ptrs: [9] } });
    const big = plan({
      nestLimit: 8, irq: [0, 1, 2, 3, 4], nmi: 0,
      programs: Array.from({ length: MAX_PROGRAMS + 3 }, (_, i) => prog({ type: i % 2 ? "kprobe" : "struct_ops", privStackRequested: i % 3 === 0, funcs: Array.from({ length: MAX_FUNCS + 2 }, () => f) })),
      interrupts: Array.from({ length: 20 }, (_, k) => ({ nmi: k % 2 === 0, vector: k, at: "call" as const, n: k, d: k, then: { nmi: true, vector: 0, delay: 5 } })),
    });
    const sc = parse(big);
    expect(sc.programs).toHaveLength(MAX_PROGRAMS);
    expect(sc.file.irq).toHaveLength(IRQ_VECTORS.length);
    expect(sc.file.interrupts!.length).toBeLessThanOrEqual(32);
    // the run stays within the step budget of a property run
    const t = lowerPlan(big).timeline.length;
    expect(t).toBeGreaterThan(1000);
    expect(t).toBeLessThan(200_000);
  });

  test("indices out of range, negative, fractional, NaN and infinite wrap or clamp", () => {
    const odd = [-1, 1e12, -7.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53];
    for (const v of odd) {
      const f = func({ slots: [v, v], extra: v, params: v, atEntry: { op: "call", target: v, ptrs: [v, v, v] }, body: [
        { op: "store", slot: v, value: v, width: v, how: "imm" }, { op: "rw", slot: v, value: v }, { op: "nested", target: v }, { op: "mix", value: v },
      ], atExit: { op: "nested", target: v } });
      const p = plan({ nestLimit: v, programs: [prog({ seed: v, funcs: [f, f, f] }), prog({ funcs: [f] })], irq: [v, v], nmi: v,
        interrupts: [{ nmi: false, vector: v, at: "own", n: v, d: v, then: { nmi: true, vector: v, delay: v } }] });
      expect(() => parse(p), `value ${v}`).not.toThrow();
    }
  });

  test("a plan without its programs list (missing, null) lowers to one trivial program", () => {
    for (const programs of [undefined, null]) {
      const p = { ...plan({}), programs } as unknown as Plan;
      expect(parse(p).programs, String(programs)).toHaveLength(1);
    }
  });

  test("plans that share one programs array (several schedules per plan) lower as each would alone, whatever else differs", () => {
    const shared = fc.sample(planArb(), { seed: 4, numRuns: 1 })[0]!.programs;
    const variants: Partial<Plan>[] = [{ nestLimit: Number.NaN }, { nestLimit: Number.POSITIVE_INFINITY }, { nestLimit: 0 }, { irq: [1] }, { irq: [] }, { nmi: null }, { nmi: 1 }, { tasks: [1] }, { tasks: [] }, { countedPaths: true }, { spinLoops: true }];
    for (const v of variants) {
      const alone = planToScenario(structuredClone(plan({ programs: shared, ...v }))); // a programs array of its own
      expect(planToScenario(plan({ programs: shared, ...v })), JSON.stringify(v)).toEqual(alone);
    }
  });

  test("an IRQ point with no IRQ program is dropped; an NMI point needs no NMI program", () => {
    const at = { vector: 0, at: "start" as const, n: 3, d: 0, then: null };
    expect(parse(plan({ interrupts: [{ nmi: false, ...at }] })).file.interrupts).toEqual([]);
    expect(parse(plan({ interrupts: [{ nmi: true, ...at }] })).file.interrupts).toEqual([{ kind: "nmi", atStep: 3 }]);
  });

  test("a plan read back from JSON lowers to the same scenario, and lowering leaves the plan untouched", () => {
    for (const p of fc.sample(planArb(), { seed: 9, numRuns: 20 })) {
      const json = JSON.stringify(p);
      const frozen = deepFreeze(JSON.parse(json) as Plan);
      expect(planToScenario(frozen)).toEqual(planToScenario(p));
      expect(JSON.stringify(p)).toBe(json);
    }
  });
});

function deepFreeze<T>(x: T): T {
  if (x && typeof x === "object") { for (const v of Object.values(x)) deepFreeze(v); Object.freeze(x); }
  return x;
}

describe("the lowering follows the plan", () => {
  test("calls go forward, to the function the target names modulo the later functions; unreached functions are dropped", () => {
    const calls = (target: number): PlanItem => ({ op: "call", target, ptrs: [] });
    const sc = parse(plan({ programs: [prog({ funcs: [func({ body: [calls(1)] }), func({ body: [calls(0)] }), func(), func({ body: [calls(5)] })] })] }));
    // main → f2 (1 mod 3 later = the second later function), f1 and f3 reach nothing from main: dropped
    expect(sc.programs[0]!.funcs.map((f) => f.name)).toEqual(["main", "f2"]);
    expect(validate(sc.programs[0]!).callDepth).toBe(2);
  });

  test("a call in atEntry is the first instruction, one in atExit the last before exit (when nothing must be set up)", () => {
    const sample: PlanCallItem = { op: "sample" };
    const sub = func({ atEntry: { op: "call", target: 0, ptrs: [] }, atExit: { op: "mix", value: 3 } });
    const f = planToScenario(plan({ programs: [prog({ funcs: [func({ atEntry: sample, body: [{ op: "call", target: 0, ptrs: [] }], atExit: sample }), sub, func()] })] }));
    const [main, f1] = f.programs[0]!.funcs;
    expect(startsWithCall(main!)).toBe(true);
    expect(startsWithCall(f1!)).toBe(true); // a subprog passes the accumulator it received in R1 straight on
    expect(endsWithCall(f1!)).toBe(true);
  });

  test("nested runs go to later programs, at most nestLimit deep; the last program runs itself and is refused", () => {
    const chain = (n: number, nestLimit: number, type: PlanProgram["type"] = "struct_ops") => plan({ nestLimit, programs: Array.from({ length: n }, () => prog({ type, funcs: [func({ atEntry: { op: "nested", target: 0 } })] })) });
    expect(nestingHeight(nestedEdges(planToScenario(chain(6, 4))), 0)).toBe(4);
    expect(nestingHeight(nestedEdges(planToScenario(chain(6, 8))), 0)).toBe(5);
    expect(nestingHeight(nestedEdges(planToScenario(chain(3, 0))), 0)).toBe(0); // the kfunc gets an index it rejects
    expect(planToScenario(chain(3, 0)).programs[0]!.funcs[0]!.insns[0]).toEqual([0xb7, 1, 0, 0, 3]);
    const one = parse(chain(1, 4, "tracing"));
    const env = interpEnv(one.programs, one.spec.nested ?? [], 1);
    runProgram(env, 0);
    expect(env.misses[0]).toBe(1);
    // struct_ops: prog->active only with a private stack (program.ts counterOf()), which the
    // generator cannot know: the last one never runs itself (the kfunc gets an index it rejects)
    expect(planToScenario(chain(1, 4)).programs[0]!.funcs[0]!.insns[0]).toEqual([0xb7, 1, 0, 0, 1]);
  });

  test("the NMI's program nests at most NMI_NEST_LIMIT levels (its stack is 4 KiB)", () => {
    const p = plan({ nmi: 0, programs: Array.from({ length: 5 }, () => prog({ funcs: [func({ atEntry: { op: "nested", target: 0 } })] })) });
    expect(planToScenario(p).nmi).toBe("p2");
  });

  test("frames use what the verifier allows: private-stack frames alone within 512, the others summed per chain", () => {
    const deep = (type: PlanProgram["type"], privStackRequested: boolean) =>
      prog({ type, privStackRequested, funcs: Array.from({ length: 4 }, () => func({ extra: 448, body: [{ op: "store", slot: 0, value: 1, width: 8, how: "imm" }, { op: "call", target: 0, ptrs: [] }] })) });
    const shared = parse(plan({ programs: [deep("struct_ops", false)] })).programs[0]!;
    const priv = parse(plan({ programs: [deep("struct_ops", true)] })).programs[0]!;
    expect(validate(shared).combinedDepth).toBeLessThanOrEqual(512);
    expect(validate(priv).privStack.every(Boolean)).toBe(true);
    expect(priv.funcs.reduce((s, f) => s + f.stackDepth, 0)).toBeGreaterThan(512); // only thanks to private stacks
  });

  test("every stored value reaches the program's result, through helpers and pointers too; a value never stored does not", () => {
    // main: slots [5, 6]; a 2-byte store into slot 0; bpf_sc_rw on slot 1; f1(&slot 1), which
    // stores through its pointer parameter into main's slot 1.
    const base = plan({ programs: [prog({ funcs: [func({ slots: [5, 6], body: [
      { op: "store", slot: 0, value: 11, width: 2, how: "reg32" }, { op: "rw", slot: 1, value: 12 }, { op: "call", target: 0, ptrs: [1] },
    ] }), func({ params: 1, slots: [3], body: [{ op: "store", slot: 1, value: 13, width: 8, how: "imm" }] })] })] });
    const r = result(base);
    const edited = (edit: (main: PlanFunc, sub: PlanFunc) => void) => {
      const p = structuredClone(base) as { programs: { funcs: PlanFunc[] }[] } & Plan;
      edit(p.programs[0]!.funcs[0]!, p.programs[0]!.funcs[1]!);
      return result(p);
    };
    const set = <T>(o: T, k: keyof T, v: unknown) => { (o as Record<keyof T, unknown>)[k] = v; };
    expect(edited((m) => set(m.slots, 1, 50))).not.toBe(r); // the initial value bpf_sc_rw reads
    expect(edited((m) => set(m.body[0]!, "value" as never, 0x1011))).not.toBe(r); // its low two bytes, four times
    expect(edited((m) => set(m.body[1]!, "value" as never, 99))).not.toBe(r); // bpf_sc_rw's argument and the refill
    expect(edited((_, f) => set(f.body[0]!, "value" as never, 14))).not.toBe(r); // stored by f1 into main's slot
    expect(edited((m) => set(m.slots, 0, 50))).toBe(r); // slot 0 is stored before it is ever read: 5 is never stored
    expect(edited((_, f) => set(f.slots, 0, 4))).toBe(r); // f1 never touches its own slot
  });
});

describe("the step model (interrupt placement)", () => {
  // The synthetic kernel's interrupt paths, counted on the machine: delivery to the runner's
  // first instruction, and the runner's return to the interrupted code's next instruction.
  test.each(["irq", "nmi"] as const)("the %s path takes the steps steps.ts says", (kind) => {
    const p = program({ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 1), exit()] }] });
    const spec = kind === "irq" ? { programs: [p, p], task: 0, irq: [{ vector: 236, program: 1 }] } : { programs: [p, p], task: 0, nmi: 1 };
    const img = buildImage(spec, baseline);
    const count = (raise: boolean) => {
      const m = loadImage(img);
      const at: { gate?: number; run?: number; back?: number } = {};
      m.addHook(img.kernel.addr(kind === "irq" ? "irq_entry_236" : "asm_exc_nmi"), (mm) => { at.gate ??= mm.steps; });
      m.addHook(img.kernel.addr("bpf_sc_run"), (mm) => { if (at.gate !== undefined) at.run ??= mm.steps; });
      m.addHook(img.kernel.addr(kind === "irq" ? "irq_no_prog" : "nmi_no_prog"), (mm) => { at.back ??= mm.steps; });
      startTask(img, m);
      m.runUntil(3);
      if (raise) m.raise(kind === "irq" ? 236 : 2);
      const r = m.run();
      m.dispose();
      return { steps: r.kind === "completed" ? r.steps : -1, gate: at.gate ?? NaN, run: at.run ?? NaN, back: at.back ?? NaN };
    };
    const clean = count(false), hit = count(true);
    expect(hit.run - hit.gate).toBe(kind === "irq" ? IRQ_ENTER : NMI_ENTER);
    expect(hit.steps - clean.steps - (hit.back - hit.gate)).toBe(kind === "irq" ? IRQ_EXIT : NMI_EXIT);
  });

  // the step model follows one task: with tasks, a tick that preempts runs another for as long as it runs
  test("is exact for baseline: the task's run takes the steps the timeline says, and its anchors are where it says", () => {
    fc.assert(fc.property(planArb({ interrupts: false, maxPrograms: 4, tasks: 1 }), (p) => {
      const low = lowerPlan(p);
      const sc = parseScenario(low.file);
      const img = buildImage(sc.spec, baseline);
      const m = loadImage(img);
      startTask(img, m);
      const tl = low.timeline;
      // Visit the anchors in step order: each entry is a BPF function's first byte, each call a
      // call instruction, each exit the first instruction of an epilogue (pop or leave).
      const anchors = [
        ...tl.entries.slice(0, 8).map((s) => [s, "entry"] as const), ...tl.calls.slice(0, 8).map((s) => [s, "call"] as const),
        ...tl.exits.slice(0, 8).map((s) => [s, "exit"] as const),
      ].sort((a, b) => a[0] - b[0]);
      const starts = new Set(img.symbols.filter((s) => s.kind === "bpf").map((s) => s.start));
      for (const [s, kind] of anchors) {
        expect(m.runUntil(s).kind).toBe("paused");
        const text = m.disassembleAt(m.rip);
        if (kind === "entry") expect(starts.has(m.rip), `${kind} at ${s}: ${text}`).toBe(true);
        else if (kind === "call") expect(text, `call at ${s}`).toMatch(/\bcall\b/);
        else expect(text, `exit at ${s}`).toMatch(/\b(pop|leave)\b/);
      }
      const r = m.run();
      m.dispose();
      expect(r.kind === "completed" && r.steps).toBe(tl.length);
    }), { numRuns: scaled(10) });
  });
});

describe("corruption of a live stack slot changes the result", () => {
  // On the machine (baseline, R10 = rbp): stop at an instruction boundary of any BPF function
  // where the lowering says some own slot holds a value still to be read, flip bits of one of its
  // bytes, run on. The result is the reference interpreter's with the same flip before the same
  // execution of the same BPF instruction (a planted off-by-one byte fails it at once). And it
  // differs from the clean run's (which the interpreter gives), unless the program's folds can
  // cancel the flip:
  //   - a value read twice and folded as `acc += v; acc ^= c; acc += v` (an atomic fetch, or a
  //     callee's read through a pointer, then a nested run's result, then the read-back) gives
  //     the same acc for v and v ^ 0x100 when c has bit 8 set (seed -628377465: slot 0 byte 1 ^ 1
  //     before a fetch_add, c the refused run's value). The xor can be in a callee or in
  //     bpf_sc_rw's check, the second read in a callee: allowed in any program with a 64-bit
  //     register xor (about 7 in 10 sampled corruptions; a review found seeds -2041548975,
  //     -1942718180 and -771342608 failing when only the flipped function's own xor or fetch
  //     counted). Narrowing it needs the data flow from the slot to the accumulator;
  //   - a 32-bit fetch_xor of v: `acc += old` and later the read-back `acc += old ^ v` cancel a
  //     flip of bits that v has, in the low word (seed -2099505400: slot 0 byte 2 ^ 1 before a
  //     fetch_xor of 0x01a70000): allowed when some fetch_xor of the program has every bit flipped;
  //   - bit 63 alone, in a value summed twice (a fetch and its read-back): 2 * 2^63 is 0 mod 2^64.
  test("one flip anywhere, at any time, in any program of the task's run", () => {
    fc.assert(fc.property(planArb({ interrupts: false, maxPrograms: 4, tasks: 1 }), fc.nat(), fc.nat(7), fc.integer({ min: 1, max: 255 }), (p, pick, byte, mask) => {
      const low = lowerPlan(p);
      const sc = parseScenario(low.file);
      const img = buildImage(sc.spec, baseline);
      const where = new Map<bigint, { live: number; depth: number; pi: number; pc: number }>();
      img.programs.forEach((q, pi) => {
        // the lowering's instructions as written; the JIT's after the verifier's fix-ups
        const { at } = fixupsWithMap(q.program, q.validated);
        q.jit.funcs.forEach((f, fi) => {
          const frame = low.frames[pi]![fi]!, start = q.program.funcs[fi]!.start, xstart = q.xlated.funcs[fi]!.start;
          // (an ld_imm64's second half shares its first's address: the first, which runs, keeps
          // it. Not a function's first instruction: with a may_goto, the fix-ups put two stores
          // before it that jumps back to it skip (fixups.ts), so its address is reached on entry
          // only, and no slot is live there anyway)
          frame.live.forEach((live, k) => {
            const a = f.insnAddrs[at[start + k]! - xstart]!;
            if (live && k > 0 && !where.has(a)) where.set(a, { live, depth: frame.slot0, pi, pc: start + k });
          });
        });
      });
      // The clean run, noting the boundaries with live slots (a hook on each such instruction
      // fires once per execution, at the step before it runs).
      const clean = loadImage(img);
      startTask(img, clean);
      const candidates: { step: number; addr: bigint }[] = [];
      for (const a of where.keys()) clean.addHook(a, (mm) => { candidates.push({ step: mm.steps, addr: a }); });
      const r = clean.run();
      clean.dispose();
      candidates.sort((x, y) => x.step - y.step);
      expect(r.kind).toBe("completed");
      const expected = runProgram(interpEnv(sc.programs, sc.spec.nested ?? [], 1), 0);
      expect(r.kind === "completed" && r.rax).toBe(expected);
      fc.pre(candidates.length > 0);
      // The corrupted run.
      const m = loadImage(img);
      startTask(img, m);
      const { step: at, addr: site0 } = candidates[pick % candidates.length]!;
      expect(m.runUntil(at).kind).toBe("paused");
      const { live, depth, pi, pc } = where.get(m.rip)!;
      // which execution of that instruction this is (nested runs may run it more than once)
      const nth = candidates.filter((c) => c.addr === site0 && c.step < at).length;
      const slots = [...Array(8).keys()].filter((k) => live & (1 << k));
      const slot = slots[pick % slots.length]!;
      const addr = m.reg("rbp") - BigInt(depth) + BigInt(8 * slot + byte);
      const old = Number(m.peek64(addr)! & 0xffn);
      m.load(addr, Uint8Array.of(old ^ mask));
      const site = m.symbols.describe(m.rip);
      const bad = m.run();
      m.dispose();
      expect(bad.kind).toBe("completed");
      const what = `slot ${slot} byte ${byte} ^ ${mask} at step ${at} (${site})`;
      // The reference interpreter with the same flip, before the same execution of the same
      // instruction: the machine's corrupted result is its result (the JIT's slot is the BPF
      // slot, and the code after it computes what the BPF code does).
      let seen = 0, done = false;
      const env = { ...interpEnv(sc.programs, sc.spec.nested ?? [], 1), beforeInsn: (prog: Program, k: number, bytes: Uint8Array) => {
        if (prog !== sc.programs[pi] || k !== pc || seen++ !== nth) return;
        bytes[bytes.length - depth + 8 * slot + byte]! ^= mask;
        done = true;
      } };
      const interpreted = runProgram(env, 0);
      expect(done, `${what}: the interpreter never reached that execution`).toBe(true);
      expect(bad.kind === "completed" && bad.rax, `${what}: the machine against the interpreter, both corrupted`).toBe(interpreted);
      // an unchanged result only where one of the folds above can cancel the flip
      const fn = img.programs[pi]!.xlated;
      const flipped = byte < 4 ? (mask << (8 * byte)) >>> 0 : 0;
      const fetchXorOf = (k: number) => { // v of the fetch_xor at k: the `r1 = v` just before it
        const x = fn.insns[k]!, prev = fn.insns[k - 1];
        return x.code === (BPF_STX | BPF_ATOMIC | BPF_W) && x.imm === (BPF_XOR | BPF_FETCH) && prev?.code === (BPF_ALU64 | BPF_MOV | BPF_K) && prev.dst === 1 ? prev.imm >>> 0 : undefined;
      };
      const xorFold = fn.insns.some((x) => x.code === (BPF_ALU64 | BPF_XOR | BPF_X))
        || fn.insns.some((_, k) => { const v = fetchXorOf(k); return v !== undefined && flipped !== 0 && ((flipped & ~v) >>> 0) === 0; })
        || (byte === 7 && mask === 0x80);
      if (bad.kind === "completed" && bad.rax === expected) expect(xorFold, `${what}: the result did not change`).toBe(true);
    }), { numRuns: scaled(15) });
  });
});

describe("semantics under baseline", () => {
  test("every runner invocation, interrupts included, returns the reference interpreter's result", () => {
    fc.assert(fc.property(planArb(), (plan) => {
      const sc = parseScenario(planToScenario(plan));
      const o = runScenario(sc, baseline, { unwinder: "frame", injections: scheduleOf(sc) });
      expect(o.result.kind).toBe("completed");
      expect(o.checks.failures.filter((f) => f.check === "semantics")).toEqual([]);
      expect(o.checks.invocations).toBeGreaterThanOrEqual(1);
    }), { numRuns: scaled(20) });
  });
});

describe("interrupt points (a fixed sample of 30 plans, baseline)", () => {
  type Run = ReturnType<typeof landings> & { refusedInInterrupt: number };
  let sample: { runs: Run[]; raised: Landing[]; all: Landing[] } | undefined;
  /** The sample's runs, run on first use: where each interrupt landed, and refusals inside interrupts. */
  const get = () => sample ??= (() => {
    const runs = fc.sample(planArb({ tasks: 1 }), { seed: 11, numRuns: 30 }).map((plan): Run => {
      const sc = parseScenario(planToScenario(plan));
      let refusedInInterrupt = 0;
      const r = landings(sc, baseline, (m, img) => {
        m.addHook(img.kernel.addr("run_refused"), (mm) => { if (mm.truth().some((t) => t.kind === "interrupt")) refusedInInterrupt++; });
      });
      return { ...r, refusedInInterrupt };
    });
    const all = runs.flatMap((r) => r.landings);
    return { runs, all, raised: all.filter((l) => l.raised) };
  })();
  const share = (pred: (l: Landing) => boolean) => get().raised.filter(pred).length / get().raised.length;

  test("almost all are raised before the run ends (measured 98-99%)", () => {
    const { runs, all, raised } = get();
    expect(runs.every((r) => r.completed)).toBe(true);
    expect(all.length).toBeGreaterThan(60);
    expect(raised.length / all.length).toBeGreaterThan(0.9);
  });

  test("they land in helpers, in BPF prologues and epilogues, and in the IRQ entry code", () => {
    expect(share((l) => ["bpf_sc_mix", "bpf_sc_rw", "bpf_sc_get_stack"].includes(l.symbol))).toBeGreaterThan(0.05);
    expect(share((l) => l.bpf === "prologue" || l.bpf === "epilogue")).toBeGreaterThan(0.1);
    const inIrqEntry = (l: Landing) => l.kind === "nmi" && l.nested && ["asm_common_interrupt", "common_interrupt"].includes(l.symbol);
    expect(get().raised.filter(inIrqEntry).length).toBeGreaterThanOrEqual(3);
  });

  test("an interrupt's program is often already running, and the runner refuses it", () => {
    const { runs } = get();
    expect(runs.filter((r) => r.refusedInInterrupt > 0).length / runs.length).toBeGreaterThan(0.25);
  });
});
