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
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "../iced.ts";
import { Assembler, type Assembled } from "../asm.ts";
import { PT_REGS } from "../../arch/ptrace.ts";
import {
  HARDIRQ_OFFSET, KD, LOCAL_TIMER_VECTOR, MONO_CLOCK_STEP, NESTED_EINVAL, NMI_OFFSET, PCPU_CURRENT_TASK, PCPU_HARDIRQ_STACK_INUSE, PCPU_HARDIRQ_STACK_PTR,
  PCPU_PREEMPT_COUNT, PCPU_STACK_CHK_GUARD, PCPU_THIS_CPU_OFF, RUN_REFUSED, SM_NONE, SM_PREEMPT, TASK, TASK_DEAD, TASK_INTERRUPTIBLE, TASK_RUNNING,
  TASK_STRUCT_SIZE, TIF_NEED_RESCHED, type Layout,
} from "./layout.ts";

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

/**
 * The scheduler's functions, after the others, in a kernel built for several tasks
 * (buildKernel(…, tasks = true)): the timer tick, preemption at interrupt return and at
 * preempt_enable(), schedule(), the switch, a new task's first return, task exit, and the
 * sleeping helper.
 */
export const TASK_FUNCTIONS = [
  ["irqentry_exit", "kernel"], ["preempt_schedule_irq", "kernel"], ["preempt_schedule_notrace_thunk", "kernel"], ["preempt_schedule_notrace", "kernel"], ["schedule", "kernel"],
  ["__schedule", "kernel"], ["__switch_to_asm", "kernel"], ["__switch_to", "kernel"], ["sched_tick", "kernel"], ["bpf_sc_sleep", "kernel"],
  ["do_task_dead", "kernel"], ["ret_from_fork_asm", "kernel"],
] as const;

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
  /** Built for several tasks (TASK_FUNCTIONS, preemption points). */
  readonly tasks: boolean;
}

/** The kernel's text at `layout.ktext`, addressing its tables at `layout.kdata`. */
export function buildKernel(layout: Layout, irqVectors: readonly number[], tasks = false): Kernel {
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
  /** r = current (get_current(): this_cpu_read(current_task)). */
  const current = (r: number) => load(r, () => gs(PCPU_CURRENT_TASK));
  /** need_resched(): test_tsk_thread_flag(current, TIF_NEED_RESCHED); ZF clear when set. Clobbers r. */
  const needResched = (r: number) => {
    current(r);
    e(() => I.createMemI32(Code.Test_rm64_imm32, at(r, TASK.flags), TIF_NEED_RESCHED), "need_resched()?");
  };
  const preemptCount = (code: Code, v: number, note: string) => e(() => I.createMemI32(code, gs(PCPU_PREEMPT_COUNT), v), note);

  // entry_SYSCALL_64: the syscall entry; only its return point after `call do_syscall_64` runs (it is the stop).
  a.label("entry_SYSCALL_64");
  e(() => I.create(Code.Endbr64));
  a.call({ label: "do_syscall_64" });
  a.label("entry_return");
  e(() => I.create(Code.Ud2), "the run stops here: the return to user mode is not modelled");
  if (tasks) {
    // With several tasks the run ends when every task has ended: do_syscall_64 returns here,
    // the task exits (do_task_dead() never returns), and the last __schedule() that finds no
    // task left jumps to all_tasks_done, the stop.
    a.label("syscall_exit_tasks");
    a.call({ label: "do_task_dead" });
    a.label("all_tasks_done");
    e(() => I.create(Code.Ud2), "the run stops here: every task has ended");
  }

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
  if (tasks) {
    // The attach path's preempt_disable() (kprobe handlers, perf tracepoints' guard(preempt_notrace)):
    // the table's preempt word is 1 for a path that does not run programs preemptibly, else 0.
    load(R.RAX, () => at(R.RBX, 40));
    e(() => I.createMemReg(Code.Add_rm64_r64, gs(PCPU_PREEMPT_COUNT), R.RAX), "preempt_disable() if the path does");
  }
  // __bpf_prog_enter_recur(): this_cpu_inc_return(*prog->active)
  load(R.RAX, () => at(R.RBX, 8)); thisCpu(R.RAX);
  if (tasks) {
    // one read-modify-write instruction, as the kernel's this_cpu_inc_return() is (xadd): with
    // tasks a tick may preempt the runner, and a load, add, store would lose the increment
    // another task makes in between (the same number of instructions as the form below)
    e(() => I.createRegU32(Code.Mov_r32_imm32, R.ECX, 1));
    e(() => I.createMemReg(Code.Xadd_rm64_r64, at(R.RAX), R.RCX), "this_cpu_inc_return(): xadd");
    e(() => I.createRegI32(Code.Add_rm64_imm8, R.RCX, 1));
  } else {
    // load, add, store: an interrupt in between restores the counter before it returns, so with
    // one task nothing is lost (kept as it was: every one-task scenario's steps depend on it)
    load(R.RCX, () => at(R.RAX));
    e(() => I.createRegI32(Code.Add_rm64_imm8, R.RCX, 1));
    e(() => I.createMemReg(Code.Mov_rm64_r64, at(R.RAX), R.RCX));
  }
  e(() => I.createRegMem(Code.Cmp_r64_rm64, R.RCX, at(R.RBX, 24)), "cmp active, limit");
  a.branch(Code.Ja_rel32_64, { label: "run_refused" });
  load(R.RDI, () => at(R.RBX, 32)); // the program's context (R1)
  a.label("run_call"); // (a point, not a symbol: where the runner enters the program, with its table index in r12)
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
  if (tasks) {
    // preempt_enable_notrace() (include/linux/preempt.h; the paths' ftrace_test_recursion_unlock(),
    // guard(preempt_notrace)): back to 0 with a reschedule pending → __preempt_schedule_notrace()
    // (arch/x86/include/asm/preempt.h: with PREEMPT_DYNAMIC the static call's target,
    // preempt_schedule_notrace_thunk)
    load(R.RCX, () => at(R.RBX, 40));
    e(() => I.createMemReg(Code.Sub_rm64_r64, gs(PCPU_PREEMPT_COUNT), R.RCX), "preempt_enable() if the path disabled it");
    a.branch(Code.Jne_rel32_64, { label: "run_done" });
    e(() => I.createRegReg(Code.Test_rm64_r64, R.RCX, R.RCX), "did this path disable preemption?");
    a.branch(Code.Je_rel32_64, { label: "run_done" });
    needResched(R.RAX);
    a.branch(Code.Je_rel32_64, { label: "run_done" });
    a.call({ label: "preempt_schedule_notrace_thunk" });
    a.label("run_done");
  }
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
  if (tasks) {
    // irqentry_exit(regs, state) (kernel/entry/common.c:162), on the interrupted stack, after the IRQ-stack switch back
    mov(R.RDI, R.RBX);
    a.call({ label: "irqentry_exit" });
  }
  pop(R.RBX); pop(R.RBP); ret();

  // handle_irq(regs): sample, then run the program attached to this vector, if any.
  a.label("handle_irq");
  frame(); push(R.RBX);
  if (tasks) {
    push(R.R12);
    mov(R.R12, R.RDI);
    preemptCount(Code.Add_rm64_imm32, HARDIRQ_OFFSET, "irq_enter_rcu(): preempt_count_add(HARDIRQ_OFFSET)");
  }
  a.label("irq_sample");
  if (tasks) {
    // sysvec_apic_timer_interrupt → local_apic_timer_interrupt → … → sched_tick()
    e(() => I.createMemI32(Code.Cmp_rm64_imm32, at(R.R12, PT_REGS.orig_ax), LOCAL_TIMER_VECTOR), "the tick?");
    a.branch(Code.Jne_rel32_64, { label: "irq_not_tick" });
    a.call({ label: "sched_tick" });
    a.label("irq_not_tick");
    mov(R.RDI, R.R12);
  }
  load(R.RAX, () => at(R.RDI, PT_REGS.orig_ax));
  movabs(R.RBX, kdata + BigInt(KD.irqTable));
  e(() => I.createRegMem(Code.Mov_r64_rm64, R.RDI, M.createBaseIndexScale(R.RBX, R.RAX, 8)));
  e(() => I.createRegReg(Code.Test_rm64_r64, R.RDI, R.RDI));
  a.branch(Code.Js_rel32_64, { label: "irq_no_prog" });
  a.call({ label: "bpf_sc_run" });
  a.label("irq_no_prog");
  if (tasks) {
    preemptCount(Code.Sub_rm64_imm32, HARDIRQ_OFFSET, "irq_exit_rcu(): preempt_count_sub(HARDIRQ_OFFSET)");
    pop(R.R12);
  }
  pop(R.RBX); pop(R.RBP); ret();

  // asm_exc_nmi (IST): orig_ax = -1, pt_regs, encoded frame pointer (paranoid_entry), exc_nmi.
  a.label("asm_exc_nmi");
  e(() => I.createI32(Code.Pushq_imm8, -1));
  idtentryBody("exc_nmi");

  // exc_nmi(regs): the perf sample point, then the NMI-attached program, if any.
  a.label("exc_nmi");
  frame();
  if (tasks) preemptCount(Code.Add_rm64_imm32, NMI_OFFSET + HARDIRQ_OFFSET, "irqentry_nmi_enter(): __nmi_enter()");
  a.label("nmi_sample");
  movabs(R.RAX, kdata + BigInt(KD.nmiProg));
  load(R.RDI, () => at(R.RAX));
  e(() => I.createRegReg(Code.Test_rm64_r64, R.RDI, R.RDI));
  a.branch(Code.Js_rel32_64, { label: "nmi_no_prog" });
  a.call({ label: "bpf_sc_run" });
  a.label("nmi_no_prog");
  if (tasks) preemptCount(Code.Sub_rm64_imm32, NMI_OFFSET + HARDIRQ_OFFSET, "irqentry_nmi_exit(): __nmi_exit()");
  pop(R.RBP); ret();

  if (tasks) emitScheduler(a, e, { frame, push, pop, mov, load, ret, movabs, current, needResched, preemptCount }, kdata);

  const text = a.assemble(layout.ktext);
  const addr = (name: string) => {
    const v = text.labels.get(name);
    if (v === undefined) throw new Error(`kernel: no symbol or point '${name}'`);
    return v;
  };
  const functions: readonly (readonly [string, "kernel" | "entry"])[] = tasks ? [...KERNEL_FUNCTIONS, ...TASK_FUNCTIONS] : KERNEL_FUNCTIONS;
  const starts = functions.map(([name, kind]) => ({ name, kind, start: addr(name) }));
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
  return { text, symbols: fixed, addr, tasks };
}

type Emit = (make: () => I, note?: string) => Assembler;
interface Ops {
  frame(): void; push(r: number): void; pop(r: number): void; mov(d: number, s: number): void; load(d: number, m: () => M): void; ret(): void;
  movabs(r: number, v: bigint): void; current(r: number): void; needResched(r: number): void; preemptCount(code: Code, v: number, note: string): void;
}

/**
 * The scheduler of a kernel with several tasks on one CPU (kernel-model-7.2.md A.1-A.2):
 *   - irqentry_exit() (kernel/entry/common.c:162, irq-entry-common.h:461, :137): back to kernel
 *     mode with IF set in the interrupted regs, preempt_count() 0 and TIF_NEED_RESCHED →
 *     preempt_schedule_irq() (PREEMPT_LAZY's dynamic mode: the static call is
 *     raw_irqentry_exit_cond_resched);
 *   - preempt_schedule_irq() (kernel/sched/core.c:7590) and preempt_schedule_notrace() (the
 *     preempt_enable_notrace() point, through its thunk): preempt_disable(); local_irq_enable(); __schedule(SM_PREEMPT);
 *     local_irq_disable(); preempt_enable_no_resched(), while need_resched();
 *   - schedule(): the same loop with SM_NONE (sched_submit_work() has nothing to do here);
 *   - __schedule() (core.c:7107): IRQs off (rq_lock_irq), clear_tsk_need_resched(prev),
 *     pick_next_task() (round robin over TASK_RUNNING tasks, prev last; a preempted prev stays
 *     runnable whatever its __state, SM_PREEMPT), context_switch() → __switch_to_asm(prev, next),
 *     then IRQs on (finish_task_switch()'s raw_spin_rq_unlock_irq()). With no task runnable the
 *     CPU would idle until a timer woke a sleeper: here the sleepers are woken at once; with none
 *     left at all, the run is over (all_tasks_done);
 *   - __switch_to_asm (arch/x86/entry/entry_64.S:177-217) instruction for instruction, except
 *     FILL_RETURN_BUFFER (X86_FEATURE_RSB_CTXSW, off here); __switch_to() (process_64.c) sets
 *     current_task and returns prev;
 *   - sched_tick(): wakes every sleeping task (their schedule_timeout() timers) and sets
 *     TIF_NEED_RESCHED on current when another task can run (resched_curr());
 *   - bpf_sc_sleep(): set_current_state(TASK_INTERRUPTIBLE); schedule(): what a sleepable helper
 *     does when the user page it copies faults (bpf_copy_from_user() → #PF → schedule);
 *   - do_task_dead() (core.c): TASK_DEAD, __schedule(SM_NONE), never returns;
 *   - ret_from_fork_asm (entry_64.S:228): where a new task's first switch lands (its
 *     inactive_task_frame's ret_addr; UNWIND_HINT_END_OF_STACK), schedule_tail()'s
 *     preempt_enable() and IRQs on, then the task's syscall (the return to user mode and the
 *     syscall back in are not modelled).
 */
function emitScheduler(a: Assembler, e: Emit, o: Ops, kdata: bigint): void {
  const { frame, push, pop, mov, load, ret, movabs, current, needResched, preemptCount } = o;
  const field = (r: number, off: number) => at(r, off);
  const setState = (r: number, state: number, note: string) => e(() => I.createMemI32(Code.Mov_rm64_imm32, field(r, TASK.state), state), note);

  a.label("irqentry_exit");
  frame();
  e(() => I.createMemI32(Code.Test_rm8_imm8, at(R.RDI, PT_REGS.cs), 3), "user_mode(regs)? (irqentry_exit_to_user_mode, not modelled)");
  a.branch(Code.Jne_rel32_64, { label: "irqentry_exit_out" });
  e(() => I.createMemI32(Code.Test_rm64_imm32, at(R.RDI, PT_REGS.flags), 0x200), "regs_irqs_disabled(regs)?");
  a.branch(Code.Je_rel32_64, { label: "irqentry_exit_out" });
  e(() => I.createMemI32(Code.Cmp_rm64_imm8, gs(PCPU_PREEMPT_COUNT), 0), "preempt_count() == 0?");
  a.branch(Code.Jne_rel32_64, { label: "irqentry_exit_out" });
  needResched(R.RAX);
  a.branch(Code.Je_rel32_64, { label: "irqentry_exit_out" });
  a.call({ label: "preempt_schedule_irq" });
  a.label("irqentry_exit_out");
  pop(R.RBP); ret();

  // The loops around __schedule(): preempt_disable(); [local_irq_enable();] __schedule(mode);
  // [local_irq_disable();] preempt_enable_no_resched(), while need_resched(). preempt_schedule_irq()
  // toggles IRQs (it is entered with them off); preempt_schedule_notrace() and schedule()'s
  // __schedule_loop() run with them on.
  const scheduleLoop = (name: string, mode: number, irqs: boolean) => {
    a.label(name);
    frame();
    a.label(`${name}_again`);
    preemptCount(Code.Add_rm64_imm8, 1, "preempt_disable()");
    if (irqs) e(() => I.create(Code.Sti), "local_irq_enable()");
    e(() => I.createRegU32(Code.Mov_r32_imm32, R.EDI, mode));
    a.call({ label: "__schedule" });
    if (irqs) e(() => I.create(Code.Cli), "local_irq_disable()");
    preemptCount(Code.Sub_rm64_imm8, 1, "preempt_enable_no_resched()");
    needResched(R.RAX);
    a.branch(Code.Jne_rel32_64, { label: `${name}_again` });
    pop(R.RBP); ret();
  };
  scheduleLoop("preempt_schedule_irq", SM_PREEMPT, true);
  // preempt_schedule_notrace_thunk (arch/x86/entry/thunk.S, the THUNK macro of
  // arch/x86/entry/calling.h, 7.2): a frame, the caller-saved registers (80 bytes with the frame),
  // preempt_schedule_notrace(), and back
  const THUNK_SAVED = [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11];
  a.label("preempt_schedule_notrace_thunk");
  frame();
  for (const r of THUNK_SAVED) push(r);
  a.call({ label: "preempt_schedule_notrace" });
  for (const r of [...THUNK_SAVED].reverse()) pop(r);
  pop(R.RBP); ret();
  scheduleLoop("preempt_schedule_notrace", SM_PREEMPT, false);
  scheduleLoop("schedule", SM_NONE, false);

  // __schedule(mode): r12 = prev, rbx = the candidate, r13 = &tasks[nr] (the table's end), r14 = mode, rcx = tasks left to look at
  a.label("__schedule");
  frame(); push(R.RBX); push(R.R12); push(R.R13); push(R.R14);
  e(() => I.create(Code.Cli), "local_irq_disable() (rq_lock_irq)");
  mov(R.R14, R.RDI);
  current(R.R12);
  e(() => I.createMemI32(Code.And_rm64_imm8, field(R.R12, TASK.flags), ~TIF_NEED_RESCHED), "clear_tsk_need_resched(prev)");
  movabs(R.R13, kdata + BigInt(KD.nrTasks));
  load(R.RCX, () => at(R.R13));
  e(() => I.createRegI32(Code.Shl_rm64_imm8, R.RCX, Math.log2(TASK_STRUCT_SIZE)), "nr_tasks * sizeof(task_struct)");
  movabs(R.R13, kdata + BigInt(KD.tasks));
  e(() => I.createRegReg(Code.Add_rm64_r64, R.R13, R.RCX), "the end of the task table");
  // pick_next_task(): the first runnable task after prev, round robin, prev itself last
  a.label("pick_start");
  mov(R.RBX, R.R12);
  movabs(R.RAX, kdata + BigInt(KD.nrTasks));
  load(R.RCX, () => at(R.RAX));
  a.label("pick_next");
  e(() => I.createRegI32(Code.Add_rm64_imm8, R.RBX, TASK_STRUCT_SIZE));
  e(() => I.createRegReg(Code.Cmp_r64_rm64, R.RBX, R.R13));
  a.branch(Code.Jb_rel32_64, { label: "pick_in_table" });
  movabs(R.RBX, kdata + BigInt(KD.tasks));
  a.label("pick_in_table");
  e(() => I.createMemI32(Code.Cmp_rm64_imm8, field(R.RBX, TASK.state), TASK_RUNNING), "TASK_RUNNING?");
  a.branch(Code.Je_rel32_64, { label: "picked" });
  // SM_PREEMPT: a preempted prev stays on the runqueue whatever its __state
  e(() => I.createRegReg(Code.Cmp_r64_rm64, R.RBX, R.R12));
  a.branch(Code.Jne_rel32_64, { label: "pick_not_prev" });
  e(() => I.createRegI32(Code.Cmp_rm64_imm8, R.R14, SM_PREEMPT), "preempted?");
  a.branch(Code.Je_rel32_64, { label: "picked" });
  a.label("pick_not_prev");
  e(() => I.createRegI32(Code.Sub_rm64_imm8, R.RCX, 1));
  a.branch(Code.Jne_rel32_64, { label: "pick_next" });
  // Nothing runnable: the idle CPU's next timer would wake the sleepers; wake them now. None: every task has ended.
  movabs(R.RBX, kdata + BigInt(KD.tasks));
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.EDX, R.EDX));
  a.label("wake_next");
  e(() => I.createMemI32(Code.Cmp_rm64_imm8, field(R.RBX, TASK.state), TASK_INTERRUPTIBLE));
  a.branch(Code.Jne_rel32_64, { label: "wake_skip" });
  setState(R.RBX, TASK_RUNNING, "wake_up_process()");
  e(() => I.createRegU32(Code.Mov_r32_imm32, R.EDX, 1));
  a.label("wake_skip");
  e(() => I.createRegI32(Code.Add_rm64_imm8, R.RBX, TASK_STRUCT_SIZE));
  e(() => I.createRegReg(Code.Cmp_r64_rm64, R.RBX, R.R13));
  a.branch(Code.Jb_rel32_64, { label: "wake_next" });
  e(() => I.createRegReg(Code.Test_rm32_r32, R.EDX, R.EDX));
  a.branch(Code.Jne_rel32_64, { label: "pick_start" });
  a.jmp({ label: "all_tasks_done" });
  a.label("picked");
  e(() => I.createRegReg(Code.Cmp_r64_rm64, R.RBX, R.R12));
  a.branch(Code.Je_rel32_64, { label: "schedule_out" });
  // context_switch() → switch_to(prev, next, prev)
  mov(R.RDI, R.R12);
  mov(R.RSI, R.RBX);
  a.call({ label: "__switch_to_asm" });
  a.label("schedule_out");
  e(() => I.create(Code.Sti), "finish_task_switch(): raw_spin_rq_unlock_irq()");
  pop(R.R14); pop(R.R13); pop(R.R12); pop(R.RBX); pop(R.RBP); ret();

  // __switch_to_asm(prev = rdi, next = rsi), entry_64.S:177-217
  a.label("__switch_to_asm");
  for (const r of [R.RBP, R.RBX, R.R12, R.R13, R.R14, R.R15]) push(r);
  e(() => I.createMemReg(Code.Mov_rm64_r64, field(R.RDI, TASK.threadSp), R.RSP), "movq %rsp, TASK_threadsp(%rdi)");
  load(R.RSP, () => field(R.RSI, TASK.threadSp));
  a.label("switch_rsp_loaded"); // from here to switch_current rsp is on next's stack and current is prev
  load(R.RBX, () => field(R.RSI, TASK.canary));
  e(() => I.createMemReg(Code.Mov_rm64_r64, gs(PCPU_STACK_CHK_GUARD), R.RBX), "__stack_chk_guard");
  for (const r of [R.R15, R.R14, R.R13, R.R12, R.RBX, R.RBP]) pop(r);
  a.jmp({ label: "__switch_to" });

  // __switch_to(prev, next): this_cpu_write(current_task, next); return prev
  a.label("__switch_to");
  frame();
  a.label("switch_current");
  e(() => I.createMemReg(Code.Mov_rm64_r64, gs(PCPU_CURRENT_TASK), R.RSI), "raw_cpu_write(current_task, next_p)");
  mov(R.RAX, R.RDI);
  pop(R.RBP); ret();

  // sched_tick(): wake the sleepers; resched_curr() if another task can run
  a.label("sched_tick");
  frame();
  movabs(R.R11, kdata + BigInt(KD.nrTasks));
  load(R.RCX, () => at(R.R11));
  movabs(R.RDX, kdata + BigInt(KD.tasks));
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.R8D, R.R8D));
  current(R.R9);
  a.label("tick_next");
  e(() => I.createMemI32(Code.Cmp_rm64_imm8, field(R.RDX, TASK.state), TASK_INTERRUPTIBLE));
  a.branch(Code.Jne_rel32_64, { label: "tick_awake" });
  setState(R.RDX, TASK_RUNNING, "the sleeper's timer: wake_up_process()");
  a.label("tick_awake");
  e(() => I.createRegReg(Code.Cmp_r64_rm64, R.RDX, R.R9));
  a.branch(Code.Je_rel32_64, { label: "tick_skip" });
  e(() => I.createMemI32(Code.Cmp_rm64_imm8, field(R.RDX, TASK.state), TASK_RUNNING));
  a.branch(Code.Jne_rel32_64, { label: "tick_skip" });
  e(() => I.createRegU32(Code.Mov_r32_imm32, R.R8D, 1), "another task can run");
  a.label("tick_skip");
  e(() => I.createRegI32(Code.Add_rm64_imm8, R.RDX, TASK_STRUCT_SIZE));
  e(() => I.createRegI32(Code.Sub_rm64_imm8, R.RCX, 1));
  a.branch(Code.Jne_rel32_64, { label: "tick_next" });
  e(() => I.createRegReg(Code.Test_rm32_r32, R.R8D, R.R8D));
  a.branch(Code.Je_rel32_64, { label: "tick_out" });
  e(() => I.createMemI32(Code.Or_rm64_imm8, field(R.R9, TASK.flags), TIF_NEED_RESCHED), "resched_curr()");
  a.label("tick_out");
  pop(R.RBP); ret();

  // bpf_sc_sleep(): set_current_state(TASK_INTERRUPTIBLE); schedule(); return 0
  a.label("bpf_sc_sleep");
  frame();
  current(R.RAX);
  setState(R.RAX, TASK_INTERRUPTIBLE, "set_current_state(TASK_INTERRUPTIBLE)");
  a.call({ label: "schedule" });
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.EAX, R.EAX));
  pop(R.RBP); ret();

  // do_task_dead(): never returns
  a.label("do_task_dead");
  frame();
  current(R.RAX);
  setState(R.RAX, TASK_DEAD, "set_special_state(TASK_DEAD)");
  preemptCount(Code.Add_rm64_imm8, 1, "preempt_disable()");
  e(() => I.createRegReg(Code.Xor_rm32_r32, R.EDI, R.EDI));
  a.call({ label: "__schedule" });
  e(() => I.create(Code.Ud2), "BUG(): a dead task ran again");

  // ret_from_fork_asm: a new task's first return from __switch_to
  a.label("ret_from_fork_asm");
  preemptCount(Code.Sub_rm64_imm8, 1, "schedule_tail(): finish_task_switch(), preempt_enable()");
  e(() => I.create(Code.Sti));
  current(R.RAX);
  load(R.RDI, () => field(R.RAX, TASK.prog));
  a.call({ label: "do_syscall_64" });
  a.call({ label: "do_task_dead" });
  e(() => I.create(Code.Ud2));
}
