// The upstream prologue and epilogue as named units (arch/x86/net/bpf_jit_comp.c:
// emit_prologue(), push_callee_regs(), do_jit()'s first BPF_EXIT, emit_return()), with the
// frame window every strategy declares: frameReady() where do_jit() records ksym.fp_start (right
// after emit_prologue()) and frameGone() where it records ksym.fp_end (right after the first
// exit's `leave`); kernel-model §5. The `tail_call_offset` label marks X86_TAIL_CALL_OFFSET.
import type { FuncJit } from "./strategy.ts";
import type { Emitter, X86Reg } from "./x86/emit.ts";

export const round8 = (d: number) => Math.ceil(d / 8) * 8;

/**
 * endbr64 (IBT) | nop5 | nop3 | push rbp | mov rbp,rsp | endbr64 (IBT) | sub rsp,round8(depth)
 * when non-zero | frameReady() | pushes of the used callee-saved registers.
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
  e.frameReady();
  pushCalleeRegs(e, f.calleeSaved);
}

export function pushCalleeRegs(e: Emitter, regs: readonly X86Reg[]): void {
  for (const r of regs) e.push(r);
}

/** Pops in reverse order, `leave`, frameGone(), `ret` (+ `int3` with SLS). */
export function standardEpilogue(e: Emitter, f: FuncJit): void {
  for (const r of [...f.calleeSaved].reverse()) e.pop(r);
  e.leave();
  e.frameGone();
  e.ret();
  if (f.opts.sls) e.int3();
}
