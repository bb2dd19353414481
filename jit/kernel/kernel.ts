// The synthetic kernel (design.md §3.2): small kernel functions emitted as x86 code "with frame
// pointers", placed in kernel text. Each mirrors the shape of the kernel code it stands for:
//   - do_syscall_64: the task's outermost frame; its rbp is task_pt_regs - 16, the last frame
//     the FP unwinder expects (unwind_frame.c is_last_task_frame()); its return address is
//     entry text (entry_SYSCALL_64), where the run stops. The syscall entry runs with IRQs off
//     until syscall_enter_from_user_mode() does local_irq_enable(), after do_syscall_64's frame
//     is set up, and again from syscall_exit_to_user_mode()'s local_irq_disable() on
//     (kernel/entry/common.c), so no IRQ can hit its prologue or epilogue (an NMI can);
//   - bpf_sc_run: a trampoline-like runner with __bpf_prog_enter_recur()/__bpf_prog_exit_recur()
//     semantics (kernel/bpf/trampoline.c): the program's per-CPU recursion counter incremented
//     (its own prog->active, or for kprobe/tracepoint/perf_event the global bpf_prog_active of
//     trace_call_bpf(); the image's table says which), the run allowed only while it is within
//     the strategy's limit (exactly 1 upstream), otherwise misses++ and the program is skipped;
//     the exit always decrements;
//   - helpers (bpf_sc_mix, bpf_sc_rw, bpf_sc_get_stack) and the kfunc scx_sc_run_nested (the
//     scx_bpf_sub_dispatch shape: run another program from inside a program). Like C code they
//     may clobber caller-saved registers, r9 included (kernel-model.md §1.1);
//   - the IRQ path (arch/x86/entry/entry_64.S, asm/irq_stack.h): a per-vector stub pushes the
//     vector as orig_ax; asm_common_interrupt builds pt_regs in kernel order and clears the
//     registers (PUSH_AND_CLEAR_REGS), ENCODE_FRAME_POINTER (lea rbp,[rsp+1]), calls common_interrupt, which does call_on_irqstack_cond(): unless from
//     user mode or hardirq_stack_inuse, store the old rsp at the top of the IRQ stack, *then*
//     switch, call handle_irq, pop rsp;
//   - the NMI path on its IST stack: asm_exc_nmi (pt_regs, encoded frame pointer) -> exc_nmi.
// Sample points (`*_sample` labels) are where the harness's address hooks take stack samples.
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler, type Assembled } from "../asm.ts";
import { PT_REGS } from "../../arch/ptrace.ts";
import { KD, MONO_CLOCK_STEP, NESTED_EINVAL, PCPU_HARDIRQ_STACK_INUSE, PCPU_HARDIRQ_STACK_PTR, PCPU_THIS_CPU_OFF, RUN_REFUSED, type Layout } from "./layout.ts";

const gs = (disp: number) => M.new64(R.None, R.None, 1, BigInt(disp), 8, false, R.GS);
const at = (base: number, disp = 0) => M.createBaseDisplSize(base, BigInt(disp), disp === 0 && base !== R.RBP && base !== R.R13 ? 0 : 1);

/** pt_regs push order (PUSH_REGS): di first (highest address), r15 last (lowest). */
const PUSH_REGS = [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11, R.RBX, R.RBP, R.R12, R.R13, R.R14, R.R15];
/** CLEAR_REGS (arch/x86/entry/calling.h, 7.2): `xorl` of each in this order; rbp among them. */
const CLEAR_REGS = [R.ESI, R.EDX, R.ECX, R.R8D, R.R9D, R.R10D, R.R11D, R.EBX, R.EBP, R.R12D, R.R13D, R.R14D, R.R15D];

/** The functions, in text order, and the kind their symbol gets. */
export const KERNEL_FUNCTIONS = [
  ["entry_SYSCALL_64", "entry"], ["do_syscall_64", "kernel"], ["bpf_sc_run", "kernel"],
  ["bpf_sc_mix", "kernel"], ["bpf_sc_rw", "kernel"], ["bpf_sc_get_stack", "kernel"], ["scx_sc_run_nested", "kernel"],
  ["arch_bpf_timed_may_goto", "kernel"], ["bpf_check_timed_may_goto", "kernel"],
  ["asm_common_interrupt", "entry"], ["common_interrupt", "kernel"], ["handle_irq", "kernel"],
  ["asm_exc_nmi", "entry"], ["exc_nmi", "kernel"],
] as const;
export type KernelFunction = (typeof KERNEL_FUNCTIONS)[number][0];

/** A kernel function's symbol, [start, end): C code, or entry text (in_entry_code()). */
export interface KernelSymbol {
  readonly name: string;
  readonly start: bigint;
  readonly end: bigint;
  readonly kind: "kernel" | "entry";
}

export interface Kernel {
  readonly text: Assembled;
  readonly symbols: KernelSymbol[];
  /** Function entries and named points: `entry_return` (the stop address), `*_sample`, `irq_entry_<vector>`. */
  readonly addr: (name: string) => bigint;
}

/** The kernel's text at `layout.ktext`, addressing its tables at `layout.kdata`. */
export function buildKernel(layout: Layout, irqVectors: readonly number[]): Kernel {
  const kdata = layout.kdata;
  const scratch = kdata + BigInt(KD.scratch);
  if (BigInt.asIntN(32, scratch) !== BigInt.asIntN(64, scratch)) {
    throw new RangeError(`kernel: kernel data at 0x${kdata.toString(16)} is not reachable as a sign-extended imm32 (the layout must keep it in the top or bottom 2 GiB)`);
  }
  const a = new Assembler("kernel");
  const e = (make: () => I, note?: string) => a.emit(make, note);
  const push = (r: number) => e(() => I.createReg(Code.Push_r64, r));
  const pop = (r: number) => e(() => I.createReg(Code.Pop_r64, r));
  const mov = (d: number, s: number) => e(() => I.createRegReg(Code.Mov_rm64_r64, d, s));
  const load = (d: number, m: () => M) => e(() => I.createRegMem(Code.Mov_r64_rm64, d, m()));
  const frame = () => { push(R.RBP); mov(R.RBP, R.RSP); };
  const ret = () => e(() => I.create(Code.Retnq));
  const thisCpu = (r: number) => e(() => I.createRegMem(Code.Add_r64_rm64, r, gs(PCPU_THIS_CPU_OFF)), "add r,gs:[this_cpu_off]");
  const movabs = (r: number, v: bigint) => e(() => I.createRegU64(Code.Mov_r64_imm64, r, BigInt.asUintN(64, v)));

  // entry_SYSCALL_64: the syscall entry; only its return point after `call do_syscall_64` runs (it is the stop).
  a.label("entry_SYSCALL_64");
  e(() => I.create(Code.Endbr64));
  a.call({ label: "do_syscall_64" });
  a.label("entry_return");
  e(() => I.create(Code.Ud2), "the run stops here: the return to user mode is not modelled");

  // do_syscall_64(prog): run the task's program through the runner.
  a.label("do_syscall_64");
  frame();
  // local_irq_enable() in syscall_enter_from_user_mode(). Emitted as `push 0x202; popfq`, the
  // native_restore_fl() form of setting IF, rather than `sti`: the same effect here, and
  // unprivileged, so this path also runs natively in the differential tests.
  e(() => I.createI32(Code.Pushq_imm32, 0x202));
  e(() => I.create(Code.Popfq), "local_irq_enable()");
  a.call({ label: "bpf_sc_run" });
  // local_irq_disable() in syscall_exit_to_user_mode(): the way out runs with IRQs off too.
  e(() => I.createI32(Code.Pushq_imm32, 0x2));
  e(() => I.create(Code.Popfq), "local_irq_disable()");
  pop(R.RBP); ret();

  // bpf_sc_run(prog): rbx = &prog_table[prog], r12 = prog, r13 = the result; the program gets its context (the table's) in rdi.
  a.label("bpf_sc_run");
  frame(); push(R.RBX); push(R.R12); push(R.R13);
  mov(R.R12, R.RDI);
  movabs(R.RBX, kdata + BigInt(KD.progTable));
  e(() => I.createRegI32(Code.Shl_rm64_imm8, R.RDI, 6));
  e(() => I.createRegReg(Code.Add_rm64_r64, R.RBX, R.RDI));
  // __bpf_prog_enter_recur(): this_cpu_inc_return(*prog->active)
  load(R.RAX, () => at(R.RBX, 8)); thisCpu(R.RAX);
  load(R.RCX, () => at(R.RAX));
  e(() => I.createRegI32(Code.Add_rm64_imm8, R.RCX, 1));
  e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.RAX), R.RCX));
  e(() => I.createRegMem(Code.Cmp_r64_rm64, R.RCX, at(R.RBX, 24)), "cmp active, limit");
  a.branch(Code.Ja_rel32_64, { label: "run_refused" });
  load(R.RDI, () => at(R.RBX, 32)); // the program's context (R1)
  e(() => I.createMem(Code.Call_rm64, at(R.RBX)), "call *prog->bpf_func");
  mov(R.R13, R.RAX);
  a.jmp({ label: "run_exit" });
  a.label("run_refused"); // bpf_prog_inc_misses_counter(); the program is skipped
  load(R.RAX, () => at(R.RBX, 16)); thisCpu(R.RAX);
  e(() => I.createMemI32(Code.Add_rm64_imm8, at(R.RAX), 1));
  e(() => I.createRegI32(Code.Mov_rm64_imm32, R.R13, Number(RUN_REFUSED)));
  a.label("run_exit"); // __bpf_prog_exit_recur(): this_cpu_dec(*prog->active), always
  load(R.RAX, () => at(R.RBX, 8)); thisCpu(R.RAX);
  e(() => I.createMemI32(Code.Sub_rm64_imm8, at(R.RAX), 1));
  mov(R.RAX, R.R13);
  pop(R.R13); pop(R.R12); pop(R.RBX); pop(R.RBP); ret();

  // bpf_sc_mix(a, b, c, d, e) = ((a * 31 + b) ^ c) + 2 * d - e; uses r9 as a scratch register.
  a.label("bpf_sc_mix");
  frame();
  e(() => I.createRegRegI32(Code.Imul_r64_rm64_imm8, R.RAX, R.RDI, 31));
  e(() => I.createRegReg(Code.Add_rm64_r64, R.RAX, R.RSI));
  e(() => I.createRegReg(Code.Xor_rm64_r64, R.RAX, R.RDX));
  e(() => I.createRegMem(Code.Lea_r64_m, R.R9, M.createBaseIndex(R.RCX, R.RCX)));
  e(() => I.createRegReg(Code.Add_rm64_r64, R.RAX, R.R9));
  e(() => I.createRegReg(Code.Sub_rm64_r64, R.RAX, R.R8));
  pop(R.RBP); ret();

  // bpf_sc_rw(p, x): old = *p; *p = 3 * old + x; return old. Uses r9 as a scratch register.
  a.label("bpf_sc_rw");
  frame();
  load(R.RAX, () => at(R.RDI));
  e(() => I.createRegMem(Code.Lea_r64_m, R.R9, M.createBaseIndexScale(R.RAX, R.RAX, 2)));
  e(() => I.createRegReg(Code.Add_rm64_r64, R.R9, R.RSI));
  e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.RDI), R.R9));
  pop(R.RBP); ret();

  // bpf_sc_get_stack(): the harness samples the stack here (as bpf_get_stack() would); returns 0.
  a.label("bpf_sc_get_stack");
  frame();
  a.label("bpf_sc_get_stack_sample");
  // Leave a kernel pointer in r9, as C code may (r9 is caller-saved): BPF code that relied on
  // r9 surviving the call now reads and writes kernel data silently (kernel-model "hazards (b)").
  e(() => I.createRegI32(Code.Mov_rm64_imm32, R.R9, Number(BigInt.asIntN(32, scratch))), "clobber r9 as C code may");
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.EAX, R.EAX));
  pop(R.RBP); ret();

  // scx_sc_run_nested(i): run nested program i through the runner; -EINVAL for a bad index.
  a.label("scx_sc_run_nested");
  frame();
  movabs(R.R11, kdata);
  e(() => I.createRegMem(Code.Cmp_r64_rm64, R.RDI, at(R.R11, KD.nestedCount)));
  a.branch(Code.Jae_rel32_64, { label: "nested_einval" });
  e(() => I.createRegMem(Code.Mov_r64_rm64, R.RDI, M.createBaseIndexScaleDisplSize(R.R11, R.RDI, 8, BigInt(KD.nested), 8)));
  a.call({ label: "bpf_sc_run" });
  pop(R.RBP); ret();
  a.label("nested_einval");
  e(() => I.createRegI32(Code.Mov_rm64_imm32, R.RAX, Number(NESTED_EINVAL)));
  pop(R.RBP); ret();

  // arch_bpf_timed_may_goto (arch/x86/net/bpf_timed_may_goto.S, 7.2), instruction for
  // instruction: the call the verifier's may_goto fix-up emits once a frame's count runs out
  // (jit/bpf/fixups.ts). BPF_REG_AX (r10) holds the count's offset from the BPF frame pointer,
  // which it adds to rbp; it saves BPF R0-R5, calls bpf_check_timed_may_goto(&count) and
  // returns the new count in r10. No endbr64 (ANNOTATE_NOENDBR), no call-depth accounting.
  a.label("arch_bpf_timed_may_goto");
  e(() => I.createRegMem(Code.Lea_r64_m, R.R10, M.createBaseIndex(R.RBP, R.R10)), "lea r10,[rbp+r10]: the count, from rbp");
  frame();
  for (const r of [R.RAX, R.RDI, R.RSI, R.RDX, R.RCX, R.R8]) push(r);
  mov(R.RDI, R.R10);
  a.call({ label: "bpf_check_timed_may_goto" });
  mov(R.R10, R.RAX);
  for (const r of [R.R8, R.RCX, R.RDX, R.RSI, R.RDI, R.RAX]) pop(r);
  e(() => I.create(Code.Leaveq));
  ret();

  // bpf_check_timed_may_goto(p) (kernel/bpf/core.c, 7.2), p = { count, timestamp }: the first
  // call records the time and refills (BPF_MAX_TIMED_LOOPS); later ones refill until a quarter
  // second has passed, then return 0. ktime_get_mono_fast_ns() is a clock in kernel data that
  // moves MONO_CLOCK_STEP per read.
  a.label("bpf_check_timed_may_goto");
  frame();
  movabs(R.RAX, kdata + BigInt(KD.monoClock));
  load(R.RCX, () => at(R.RAX));
  e(() => I.createRegI32(Code.Add_rm64_imm32, R.RCX, MONO_CLOCK_STEP));
  e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.RAX), R.RCX), "time = ktime_get_mono_fast_ns()");
  load(R.RAX, () => at(R.RDI, 8));
  e(() => I.createRegReg(Code.Test_rm64_r64, R.RAX, R.RAX), "p->timestamp?");
  a.branch(Code.Jne_rel32_64, { label: "may_goto_started" });
  e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.RDI, 8), R.RCX), "p->timestamp = time");
  e(() => I.createRegU32(Code.Mov_r32_imm32, R.EAX, 0xffff), "BPF_MAX_TIMED_LOOPS");
  pop(R.RBP); ret();
  a.label("may_goto_started");
  e(() => I.createRegReg(Code.Sub_rm64_r64, R.RCX, R.RAX));
  e(() => I.createRegI32(Code.Cmp_rm64_imm32, R.RCX, MONO_CLOCK_STEP), "time - p->timestamp >= NSEC_PER_SEC / 4?");
  a.branch(Code.Jae_rel32_64, { label: "may_goto_spent" });
  e(() => I.createRegU32(Code.Mov_r32_imm32, R.EAX, 0xffff), "BPF_MAX_TIMED_LOOPS");
  pop(R.RBP); ret();
  a.label("may_goto_spent");
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.EAX, R.EAX), "the slice is spent (bpf_prog_report_may_goto_violation())");
  pop(R.RBP); ret();

  // Per-vector stubs (irq_entries_start): push the vector as orig_ax, then the common entry.
  for (const v of irqVectors) {
    a.label(`irq_entry_${v}`);
    e(() => I.createI32(Code.Pushq_imm32, v));
    a.jmp({ label: "asm_common_interrupt" });
  }
  // idtentry_body (entry_64.S, 7.2): with orig_ax pushed, PUSH_AND_CLEAR_REGS builds pt_regs
  // and clears the registers (rbp too: from `xor ebp,ebp` until ENCODE_FRAME_POINTER, rbp is
  // 0), ENCODE_FRAME_POINTER, call the C handler with regs, POP_REGS, drop orig_ax, iretq.
  const idtentryBody = (handler: string) => {
    for (const r of PUSH_REGS) push(r);
    for (const r of CLEAR_REGS) e(() => I.createRegReg(Code.Xor_rm32_r32, r, r), "CLEAR_REGS");
    e(() => I.createRegMem(Code.Lea_r64_m, R.RBP, M.createBaseDispl(R.RSP, 1n)), "ENCODE_FRAME_POINTER");
    mov(R.RDI, R.RSP);
    a.call({ label: handler });
    for (const r of [...PUSH_REGS].reverse()) pop(r);
    e(() => I.createRegI32(Code.Add_rm64_imm8, R.RSP, 8), "drop orig_ax");
    e(() => I.create(Code.Iretq));
  };
  a.label("asm_common_interrupt");
  idtentryBody("common_interrupt");

  // common_interrupt(regs): call_on_irqstack_cond(handle_irq, regs).
  a.label("common_interrupt");
  frame(); push(R.RBX);
  mov(R.RBX, R.RDI);
  e(() => I.createMemI32(Code.Test_rm8_imm8, at(R.RBX, PT_REGS.cs), 3), "user_mode(regs)?");
  a.branch(Code.Jne_rel32_64, { label: "irq_on_current" });
  e(() => I.createMemI32(Code.Cmp_rm8_imm8, gs(PCPU_HARDIRQ_STACK_INUSE), 0), "hardirq_stack_inuse?");
  a.branch(Code.Jne_rel32_64, { label: "irq_on_current" });
  e(() => I.createMemI32(Code.Mov_rm8_imm8, gs(PCPU_HARDIRQ_STACK_INUSE), 1));
  load(R.R11, () => gs(PCPU_HARDIRQ_STACK_PTR));
  e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.R11), R.RSP), "store the old rsp at the top-most slot first");
  mov(R.RSP, R.R11);
  mov(R.RDI, R.RBX);
  a.call({ label: "handle_irq" });
  pop(R.RSP);
  e(() => I.createMemI32(Code.Mov_rm8_imm8, gs(PCPU_HARDIRQ_STACK_INUSE), 0));
  a.jmp({ label: "irq_done" });
  a.label("irq_on_current");
  mov(R.RDI, R.RBX);
  a.call({ label: "handle_irq" });
  a.label("irq_done");
  pop(R.RBX); pop(R.RBP); ret();

  // handle_irq(regs): sample, then run the program attached to this vector, if any.
  a.label("handle_irq");
  frame(); push(R.RBX);
  a.label("irq_sample");
  load(R.RAX, () => at(R.RDI, PT_REGS.orig_ax));
  movabs(R.RBX, kdata + BigInt(KD.irqTable));
  e(() => I.createRegMem(Code.Mov_r64_rm64, R.RDI, M.createBaseIndexScale(R.RBX, R.RAX, 8)));
  e(() => I.createRegReg(Code.Test_rm64_r64, R.RDI, R.RDI));
  a.branch(Code.Js_rel32_64, { label: "irq_no_prog" });
  a.call({ label: "bpf_sc_run" });
  a.label("irq_no_prog");
  pop(R.RBX); pop(R.RBP); ret();

  // asm_exc_nmi (IST): orig_ax = -1, pt_regs, encoded frame pointer (paranoid_entry), exc_nmi.
  a.label("asm_exc_nmi");
  e(() => I.createI32(Code.Pushq_imm8, -1));
  idtentryBody("exc_nmi");

  // exc_nmi(regs): the perf sample point, then the NMI-attached program, if any.
  a.label("exc_nmi");
  frame();
  a.label("nmi_sample");
  movabs(R.RAX, kdata + BigInt(KD.nmiProg));
  load(R.RDI, () => at(R.RAX));
  e(() => I.createRegReg(Code.Test_rm64_r64, R.RDI, R.RDI));
  a.branch(Code.Js_rel32_64, { label: "nmi_no_prog" });
  a.call({ label: "bpf_sc_run" });
  a.label("nmi_no_prog");
  pop(R.RBP); ret();

  const text = a.assemble(layout.ktext);
  const addr = (name: string) => {
    const v = text.labels.get(name);
    if (v === undefined) throw new Error(`kernel: no symbol or point '${name}'`);
    return v;
  };
  const starts = KERNEL_FUNCTIONS.map(([name, kind]) => ({ name, kind, start: addr(name) }));
  const symbols: KernelSymbol[] = starts.map((s, i) => ({
    name: s.name, kind: s.kind, start: s.start,
    end: s.name === "asm_common_interrupt" || i + 1 === starts.length ? nextAfter(s.start) : starts[i + 1]!.start,
  }));
  // The vector stubs sit between bpf_check_timed_may_goto and asm_common_interrupt.
  const stubs = irqVectors.map((v) => ({ name: `irq_entry_${v}`, kind: "entry" as const, start: addr(`irq_entry_${v}`) }));
  function nextAfter(start: bigint): bigint {
    const later = [...starts.map((s) => s.start), text.end].filter((x) => x > start).sort((x, y) => (x < y ? -1 : 1));
    return later[0]!;
  }
  const fixed = symbols.map((s) => (s.name === "bpf_check_timed_may_goto" && stubs.length ? { ...s, end: stubs[0]!.start } : s));
  stubs.forEach((s, i) => fixed.push({ ...s, end: i + 1 < stubs.length ? stubs[i + 1]!.start : addr("asm_common_interrupt") }));
  return { text, symbols: fixed, addr };
}
