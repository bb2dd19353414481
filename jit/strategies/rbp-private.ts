// rbp-private — design (e) (kernel-model.md §8, "Known hazards (e)"): rbp pointed at the private
// stack in the main program while rsp stays on the kernel stack: after the upstream prologue
// (no sub rsp) and the pushes, `movabs rbp,<frame>; add rbp,gs:[this_cpu_off]`; R10 is rbp.
// The epilogue pops, then `pop rbp; ret` (a `leave` would move rsp to the private stack).
import { round8, standardEpilogue, standardPrologue } from "../prologue.ts";
import { jitStackDepths, type Strategy } from "../strategy.ts";
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "../percpu.ts";
import { splitStackRequest, subprogDefault } from "./split-common.ts";

/**
 * (e) rbp pointed at the private stack in the main program, rsp left on the kernel stack:
 * after the pushes, rbp = this CPU's private frame; R10 is rbp. `leave` would move rsp to the
 * private stack, so the epilogue pops, then `pop rbp; ret` (no sub rsp: the saved rbp is right
 * above the pushes).
 */
export const rbpPrivate: Strategy = {
  name: "rbp-private",
  summary: "(e) rbp pointed at the private stack in the main prog, rsp on the kernel stack (kernel-model hazards (e))",
  privateMemory: (_p, v) => {
    const depth = jitStackDepths(v)[0]!;
    return [{ ...splitStackRequest([depth]), framePtrOffset: PRIV_STACK_GUARD_SZ + round8(depth) }];
  },
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.stackDepth);
    standardPrologue(e, f, 0);
    emitThisCpuPtr(e, f, "rbp", f.priv!.framePtr);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.pop("rbp");
    e.frameGone();
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};
