// A design (g) variant for the tests of preemption: r9-private (design (b): rsp stays on the
// kernel stack, so every unwinder walks it as it walks the baseline) with one private frame per
// recursion level, picked from prog->active as limited-recursion picks its slot, and up to
// RECURSION_LEVELS activations per CPU. While nesting on a CPU is last-in-first-out, level k's
// frame belongs to the k-th activation; with tasks it need not (kernel-model.md "Known hazards
// (g)"): it passes every campaign with one task and is caught only when tasks preempt or sleep.
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "../../jit/percpu.ts";
import { round8, standardEpilogue, standardPrologue } from "../../jit/prologue.ts";
import { RECURSION_LEVELS } from "../../jit/strategies/split-common.ts";
import { jitStackDepths, type PrivateRequest, type Strategy } from "../../jit/strategy.ts";

/** Bytes per level: a power of two that holds the frame and its two guard words. */
const levelSize = (depth: number) => 2 ** Math.ceil(Math.log2(round8(depth) + 2 * PRIV_STACK_GUARD_SZ));

export const r9Levels: Strategy = {
  name: "r9-levels",
  summary: "test design: r9-private with one private frame per recursion level, picked from prog->active (design (g) on (b))",
  privateMemory: (_prog, v) => {
    const depths = jitStackDepths(v);
    const out: PrivateRequest[] = [];
    v.privStack.forEach((p, fi) => {
      if (!p) return;
      const slot = levelSize(depths[fi]!);
      const levels = Array.from({ length: RECURSION_LEVELS }, (_, k) => k * slot);
      out.push({
        fi, size: slot * RECURSION_LEVELS, framePtrOffset: slot - PRIV_STACK_GUARD_SZ,
        guards: levels.flatMap((b) => [b, b + slot - PRIV_STACK_GUARD_SZ]),
        stacks: levels.map((b) => ({ begin: b + PRIV_STACK_GUARD_SZ, end: b + slot - PRIV_STACK_GUARD_SZ })),
      });
    });
    return out;
  },
  frameRegister: (f) => (f.priv ? "r9" : "rbp"),
  prologue: (e, f) => {
    standardPrologue(e, f, f.priv ? 0 : f.stackDepth);
    if (!f.priv) return;
    // r9 = level 0's frame + (prog->active - 1) * slot
    emitThisCpuPtr(e, f, "r9", f.priv.framePtr);
    emitThisCpuPtr(e, f, "r10", f.activePtr);
    e.ldx(8, "r10", "r10", 0);
    e.aluRI("sub", true, "r10", 1);
    e.shiftRI("shl", true, "r10", Math.log2(levelSize(f.stackDepth)));
    e.aluRR("add", true, "r9", "r10");
  },
  epilogue: (e, f) => standardEpilogue(e, f),
  call: (e, f, emitCall) => {
    if (f.priv) e.push("r9");
    emitCall();
    if (f.priv) e.pop("r9");
  },
  recursionLimit: RECURSION_LEVELS,
};
export { r9Levels as strategy };
