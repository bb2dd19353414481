// Stack knowledge: get_stack_info() and the visit mask (arch/x86/kernel/dumpstack_64.c,
// dumpstack.c; kernel-model.md §4). A stack is a typed address range with a link to the next
// stack (next_sp): none for the task stack, the word at the top of the IRQ stack, the saved
// regs->sp of the top pt_regs of an exception (IST) stack. Anything else is UNKNOWN — unless
// the caller registers private stacks, to evaluate designs that would need that unwinder change.
import { PT_REGS, PT_REGS_SIZE as PTREGS_SIZE } from "../arch/ptrace.ts";

/** enum stack_type (asm/stacktrace.h): UNKNOWN, TASK, IRQ, SOFTIRQ, ENTRY, then the exception stacks. */
export const STACK_TYPE_UNKNOWN = 0, STACK_TYPE_TASK = 1, STACK_TYPE_IRQ = 2, STACK_TYPE_SOFTIRQ = 3, STACK_TYPE_ENTRY = 4;
export const STACK_TYPE_EXCEPTION = 5;
/** Exception stacks in order (ESTACK_DF, NMI, DB, MCE, VC, VC2): NMI is EXCEPTION + 1. */
export const STACK_TYPE_NMI = STACK_TYPE_EXCEPTION + 1;
/** Extra types for registered private stacks start after EXCEPTION_LAST (EXCEPTION + 5). */
export const STACK_TYPE_PRIVATE = STACK_TYPE_EXCEPTION + 6;

export const STACK_TYPE_NAMES: Record<number, string> = {
  0: "UNKNOWN", 1: "TASK", 2: "IRQ", 3: "SOFTIRQ", 4: "ENTRY", 5: "#DF", 6: "NMI", 7: "#DB", 8: "#MC", 9: "#VC", 10: "#VC2",
};
export const stackTypeName = (t: number): string => STACK_TYPE_NAMES[t] ?? `PRIVATE${t - STACK_TYPE_PRIVATE}`;

export interface StackInfo {
  type: number;
  begin: bigint;
  end: bigint;
  /** Where the next stack continues (0n: nowhere). */
  nextSp: bigint;
}

/** Read-only memory as the unwinders see it: undefined for an address that cannot be read. */
export interface MemoryView {
  read64(addr: bigint): bigint | undefined;
}

/** A private stack registered as a known stack type (an unwinder change a design would need). */
export interface PrivateStackDef {
  readonly begin: bigint;
  readonly end: bigint;
  /** Per type: all private stacks share one type (so visit_mask allows one); per instance: one type each. */
  readonly type: number;
  /** Where the back-link to the previous stack is stored (like the IRQ stack's top word), if any. */
  readonly backLink?: bigint;
}

/** The stacks of one CPU and task. */
export interface StackLayout {
  readonly task: { readonly begin: bigint; readonly end: bigint };
  /** hardirq_stack_ptr: the IRQ stack's "actual TOS" (end - 8). */
  readonly hardirqStackPtr: bigint;
  readonly irqStackSize: number;
  readonly exception: readonly { readonly type: number; readonly begin: bigint; readonly end: bigint }[];
  readonly entry?: { readonly begin: bigint; readonly end: bigint };
  readonly privateStacks?: readonly PrivateStackDef[];
}

const PT_REGS_SIZE = BigInt(PTREGS_SIZE), PT_REGS_SP = BigInt(PT_REGS.sp);

/**
 * A task that is not running (blocked or preempted): its task stack, where its switch frame is
 * (task->thread.sp: struct inactive_task_frame, arch/x86/include/asm/switch_to.h) and its
 * task_pt_regs(). For such a task get_stack_info() knows only its task stack.
 */
export interface TaskView {
  readonly stack: { readonly begin: bigint; readonly end: bigint };
  readonly threadSp: bigint;
  readonly ptRegs: bigint;
}

/** Everything an unwinder needs besides its own state. */
export interface UnwindEnv {
  readonly mem: MemoryView;
  /** The stacks of the CPU and of current. */
  readonly stacks: StackLayout;
  /** task_pt_regs(current). */
  readonly taskPtRegs: bigint;
  /** __kernel_text_address(): kernel text, entry text, BPF images and trampolines. */
  isKernelText(addr: bigint): boolean;
  /** in_entry_code() (unwind_frame.c, 7.2): __entry_text; on x86-64 the __irqentry_text labels sit inside .entry.text. */
  inEntryCode(addr: bigint): boolean;
  /** A symbol for warning texts (%pB). */
  symbolize(addr: bigint): string;
}

/**
 * state->stack_mask: the stack types an unwind has visited. `miss` is not a kernel field: the
 * last address get_stack_info() refused, and whether for recursion (the type it was), so a
 * report can say why a walk stopped.
 */
export interface VisitMask {
  mask: bigint;
  miss?: { readonly addr: bigint; readonly recursion?: number; readonly beyond?: boolean };
}

/** Warnings an unwind printed (printk_deferred_once: recorded, at most once each kind). */
export class Warnings {
  readonly lines: string[] = [];
  once(key: string, text: string): void {
    if (!this.lines.some((l) => l.startsWith(key))) this.lines.push(text);
  }
}

function fill(info: StackInfo, type: number, begin: bigint, end: bigint, nextSp: bigint): true {
  info.type = type; info.begin = begin; info.end = end; info.nextSp = nextSp;
  return true;
}

/** get_stack_info_noinstr(): which known stack holds `stack`; `task` when it is not current. */
function stackOf(env: UnwindEnv, stack: bigint, info: StackInfo, task: TaskView | undefined): boolean {
  const s = env.stacks;
  const t = task?.stack ?? s.task;
  if (stack >= t.begin && stack < t.end) return fill(info, STACK_TYPE_TASK, t.begin, t.end, 0n);
  if (task) return false; // other tasks only have a task stack
  for (const e of s.exception) {
    // next_sp = ((struct pt_regs *)end - 1)->sp: the interrupted rsp the IST entry saved
    if (stack >= e.begin && stack < e.end) return fill(info, e.type, e.begin, e.end, env.mem.read64(e.end - PT_REGS_SIZE + PT_REGS_SP) ?? 0n);
  }
  const irqEnd = s.hardirqStackPtr + 8n, irqBegin = irqEnd - BigInt(s.irqStackSize);
  // in_irq_stack(): next_sp = *(end - 1), the previous rsp call_on_stack stored; rsp can never equal end
  if (stack >= irqBegin && stack < irqEnd) return fill(info, STACK_TYPE_IRQ, irqBegin, irqEnd, env.mem.read64(irqEnd - 8n) ?? 0n);
  if (s.entry && stack >= s.entry.begin && stack < s.entry.end) return fill(info, STACK_TYPE_ENTRY, s.entry.begin, s.entry.end, 0n);
  for (const p of s.privateStacks ?? []) {
    if (stack >= p.begin && stack < p.end) return fill(info, p.type, p.begin, p.end, p.backLink !== undefined ? env.mem.read64(p.backLink) ?? 0n : 0n);
  }
  return false;
}

/**
 * get_stack_info(): false (and type UNKNOWN) for NULL, an address on no known stack, or a stack
 * type already visited in this unwind ("stack recursion on stack type %d", printed once, for
 * current only). `task`: a task that is not current (only its task stack is known).
 */
export function getStackInfo(env: UnwindEnv, stack: bigint, info: StackInfo, visit: VisitMask, warnings: Warnings, task?: TaskView): boolean {
  if (stack === 0n || !stackOf(env, stack, info, task)) {
    info.type = STACK_TYPE_UNKNOWN;
    visit.miss = { addr: stack };
    return false;
  }
  const bit = 1n << BigInt(info.type); // a bigint: one bit per private stack instance too
  if ((visit.mask & bit) !== 0n) {
    if (!task) warnings.once("WARNING: stack recursion", `WARNING: stack recursion on stack type ${info.type}`);
    visit.miss = { addr: stack, recursion: info.type };
    info.type = STACK_TYPE_UNKNOWN;
    return false;
  }
  visit.mask |= bit;
  return true;
}

/** on_stack(): [addr, addr + len) lies inside the (known) stack. */
export function onStack(info: StackInfo, addr: bigint, len: bigint): boolean {
  return info.type !== STACK_TYPE_UNKNOWN && addr >= info.begin && addr < info.end && addr + len > info.begin && addr + len <= info.end;
}
