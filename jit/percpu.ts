// Per-CPU memory as the JIT uses it (arch/x86/net/bpf_jit_comp.c, 7.2): the private-stack guard
// words priv_stack_init_guard() writes and bpf_jit_free() checks, and the `this CPU's copy of a
// __percpu pointer` idiom emit_priv_frame_ptr() emits. Shared by every design that keeps memory
// per CPU (r9-private and the split-stack family), by the image and by the oracles.
import type { FuncJit } from "./strategy.ts";
import type { Emitter, X86Reg } from "./x86/emit.ts";

/** PRIV_STACK_GUARD_SZ (x86). */
export const PRIV_STACK_GUARD_SZ = 8;
/** PRIV_STACK_GUARD_VAL: written at both ends of each private stack, every possible CPU. */
export const PRIV_STACK_GUARD_VAL = 0xeb9f12345678eb9fn;

/** `reg` = this CPU's copy of a __percpu pointer: mov reg,ptr (shortest form); add reg,gs:[this_cpu_off]. */
export function emitThisCpuPtr(e: Emitter, f: FuncJit, reg: X86Reg, percpuPtr: bigint): void {
  e.movImm64(reg, percpuPtr);
  e.addFromGs(reg, f.thisCpuOff);
}
