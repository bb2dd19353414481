// Shared by the split-stack family (kernel-model.md §8 and "Known hazards" (c)-(g)): the main
// program moves rsp onto one per-CPU private stack for the whole call tree, sized for every
// function's frame plus 8 KiB for helpers and kfuncs, with a guard word at both ends. R10 stays
// rbp; subprogs keep the standard prologue (their frames simply land on the private stack).
// None of these designs register the private stack with get_stack_info(): that is what the
// harness evaluates.
import { round8 } from "../prologue.ts";
import type { FuncJit, PrivateRequest } from "../strategy.ts";
import type { Emitter } from "../x86/emit.ts";
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "../percpu.ts";

/** Headroom for helpers, kfuncs and interrupt frames on the private stack ("+ 8 KiB"). */
export const SPLIT_HEADROOM = 8192;
/** Size of one per-level slot of design (g). */
export const RECURSION_SLOT = 0x4000;
export const RECURSION_LEVELS = 4;

/** One stack for the whole call tree: every frame (depth, return address, rbp, four saved registers) + headroom. */
export function splitStackRequest(depths: readonly number[], levels = 1): PrivateRequest {
  const perLevel = levels === 1
    ? Math.ceil((depths.reduce((s, d) => s + round8(d) + 48, 0) + SPLIT_HEADROOM) / 16) * 16
    : RECURSION_SLOT;
  const size = perLevel * levels + 2 * PRIV_STACK_GUARD_SZ;
  // The frame pointer offset is the top guard: the first push lands just below it.
  return { fi: 0, size, framePtrOffset: size - PRIV_STACK_GUARD_SZ, guards: [0, size - PRIV_STACK_GUARD_SZ] };
}

/** r11 = this CPU's private stack top; rsp = r11. */
export function switchToPrivate(e: Emitter, f: FuncJit): void {
  emitThisCpuPtr(e, f, "r11", f.priv!.framePtr);
  e.movRR("rsp", "r11");
}

/** Subprogs and calls are as upstream in every split design. */
export const subprogDefault = {
  frameRegister: () => "rbp" as const,
  call: (_e: Emitter, _f: FuncJit, emitCall: () => void) => emitCall(),
};
