// The upstream prologue and epilogue as named units (arch/x86/net/bpf_jit_comp.c:
// emit_prologue(), push_callee_regs(), do_jit()'s first BPF_EXIT, emit_return()), with the
// labels the image records: `tail_call_offset` (X86_TAIL_CALL_OFFSET), `fp_start` and `fp_end`
// (v6.19 ksym.fp_start/fp_end: the window where rbp is this function's frame; kernel-model §5).
import type { FuncJit } from "./strategy.ts";
import type { Emitter, X86Reg } from "./x86/emit.ts";

export const round8 = (d: number) => Math.ceil(d / 8) * 8;

/**
 * endbr64 (IBT) | nop5 | nop3 | push rbp | mov rbp,rsp | endbr64 (IBT) | sub rsp,round8(depth)
 * when non-zero | [fp_start] | pushes of the used callee-saved registers.
 */
export function standardPrologue(e: Emitter, f: FuncJit, stackDepth: number): void {
  if (f.opts.ibt) e.endbr64();
  e.nop5(); // X86_PATCH_SIZE: the poke site for trampolines
  e.nop3(); // no tail calls: keeps the layout of `xor rax,rax`
  e.push("rbp");
  e.movRR("rbp", "rsp");
  e.label("tail_call_offset");
  if (f.opts.ibt) e.endbr64();
  if (stackDepth > 0) e.subRspImm32(round8(stackDepth));
  e.label("fp_start");
  pushCalleeRegs(e, f.calleeSaved);
}

export function pushCalleeRegs(e: Emitter, regs: readonly X86Reg[]): void {
  for (const r of regs) e.push(r);
}

/** Pops in reverse order, `leave`, [fp_end], `ret` (+ `int3` with SLS). */
export function standardEpilogue(e: Emitter, f: FuncJit): void {
  for (const r of [...f.calleeSaved].reverse()) e.pop(r);
  e.leave();
  e.label("fp_end");
  e.ret();
  if (f.opts.sls) e.int3();
}
