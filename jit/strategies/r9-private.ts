// r9-private — design (b), the private stack merged for v6.13 (kernel-model.md §1.3-§1.7):
// for every subprog the verifier made eligible, a per-CPU allocation of
// round8(depth) + 2 guard words (0xEB9F12345678eb9f at both ends, 8-byte aligned);
// stack_depth is forced to 0 (no `sub rsp`); after the callee-saved pushes
// `movabs r9,<priv_frame_ptr>; add r9,gs:[this_cpu_off]` (emit_priv_frame_ptr()), so r9 is the
// address of the top guard; every R10 access goes through r9; `push r9`/`pop r9` around calls
// because r9 is caller-saved in the C ABI. A subprog recomputes its own r9.
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "../percpu.ts";
import { round8, standardEpilogue, standardPrologue } from "../prologue.ts";
import { jitStackDepths, type FuncJit, type PrivateRequest, type Strategy } from "../strategy.ts";
import type { Emitter } from "../x86/emit.ts";

/** priv_stack_init_guard(): a guard word at u64 index 0 and at the last u64 of the allocation. */
export function privateStackRequests(privStack: readonly boolean[], depths: readonly number[]): PrivateRequest[] {
  const out: PrivateRequest[] = [];
  privStack.forEach((p, fi) => {
    if (!p) return;
    const rd = round8(depths[fi]!);
    const size = rd + 2 * PRIV_STACK_GUARD_SZ;
    out.push({ fi, size, framePtrOffset: PRIV_STACK_GUARD_SZ + rd, guards: [0, size - PRIV_STACK_GUARD_SZ] });
  });
  return out;
}

/** emit_priv_frame_ptr(): r9 = this CPU's copy of priv_frame_ptr. */
export function emitPrivFramePtr(e: Emitter, f: FuncJit): void {
  emitThisCpuPtr(e, f, "r9", f.priv!.framePtr);
}

export function r9Strategy(name: string, summary: string, saveAroundCalls: boolean): Strategy {
  return {
    name,
    summary,
    privateMemory: (_prog, v) => privateStackRequests(v.privStack, jitStackDepths(v)),
    frameRegister: (f) => (f.priv ? "r9" : "rbp"),
    prologue: (e, f) => {
      standardPrologue(e, f, f.priv ? 0 : f.stackDepth); // with a private stack, stack_depth is 0
      if (f.priv) emitPrivFramePtr(e, f);
    },
    epilogue: (e, f) => standardEpilogue(e, f),
    call: (e, f, emitCall) => {
      if (f.priv && saveAroundCalls) e.push("r9");
      emitCall();
      if (f.priv && saveAroundCalls) e.pop("r9");
    },
    recursionLimit: 1,
  };
}

export const r9Private = r9Strategy("r9-private", "(b) r9 private frame pointer, push r9/pop r9 around calls — merged v6.13 (kernel-model §1.3-§1.7)", true);
