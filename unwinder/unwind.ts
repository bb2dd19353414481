// One unwinder interface, as the kernel has one `struct unwind_state` and one <asm/unwind.h> API
// behind both the frame-pointer and the ORC unwinder (arch/x86/include/asm/unwind.h, 7.2):
// unwind_start(), unwind_next_frame(), unwind_done(), unwind_error(),
// unwind_get_return_address(), unwind_get_entry_regs(); and the walks the kernel builds on it,
// which never know which unwinder runs: arch_stack_walk() and arch_stack_walk_reliable()
// (arch/x86/kernel/stacktrace.c) and perf_callchain_kernel() (arch/x86/events/core.c).
import { PT_REGS } from "../arch/ptrace.ts";
import { STACK_TYPE_UNKNOWN, stackTypeName, type StackInfo, type TaskView, type UnwindEnv, type VisitMask, type Warnings } from "./stack.ts";

/**
 * Where a walk starts (unwind_start(state, task, regs, first_frame)):
 *   - `regs`: from an interrupt's or exception's pt_regs (task current);
 *   - `current`: from inside a running function of current, no regs (dump_stack(),
 *     stack_trace_save()): its ip, sp and frame pointer; `firstFrame` defaults to `bp`, the
 *     caller's __builtin_frame_address(0) (get_stack_pointer()), so the walk starts at the
 *     function's caller;
 *   - `task`: a task that is not running, from its switch frame at task->thread.sp.
 */
export type StartFrom =
  | { readonly kind: "regs"; readonly regs: bigint }
  | { readonly kind: "current"; readonly ip: bigint; readonly sp: bigint; readonly bp: bigint; readonly firstFrame?: bigint }
  | { readonly kind: "task"; readonly task: TaskView };

/** What both unwinders' states have (struct unwind_state's common part). */
export interface UnwindState {
  readonly stackInfo: StackInfo;
  readonly visit: VisitMask;
  error: boolean;
  /** The return address of the current frame (or the interrupted ip of a regs frame). */
  ip: bigint;
  /** The pt_regs the unwinder is on (0n: none). */
  regs: bigint;
  /** The task being walked: undefined for current. */
  readonly task: TaskView | undefined;
  /** The warnings it printed (printk_deferred_once: recorded, each kind once). */
  readonly warnings: Warnings;
  /**
   * Not a kernel field: the error was one the unwinder itself expects and does not warn about
   * (unwind_frame.c bad_address: lost in entry code, or before the C handler's first frame
   * pointer).
   */
  expectedLoss: boolean;
  /** Not a kernel field: the unwind ended on user-mode pt_regs (also when unwind_start()'s skip loop got there). */
  userEnd?: boolean;
  /** Not a kernel field: why the unwind stopped (the first exit it took), for reports. */
  stop?: Stop;
  /** Not a kernel field: unwind_start()'s skip to first_frame ran to the end (noteSkippedToEnd()), for reports. */
  skippedToEnd?: boolean;
  /** Not a kernel field: where ORC had no data and guessed a frame-pointer frame (unwind_orc.c: "just a guess"). */
  guessed?: string;
}

/** Why a walk stopped, in the unwinder's own terms, and the address it could not follow. */
export interface Stop {
  readonly why: string;
  readonly at?: bigint;
  /** What else made the walk unreliable on the way (ORC's guess where it had no data). */
  readonly note?: string;
}

/** 16 hex digits, as the unwinders' messages print an address (%016lx). */
export const hex = (v: bigint): string => BigInt.asUintN(64, v).toString(16).padStart(16, "0");

/** Record why the unwind stops (the first reason given wins: later exits follow from it). */
export function stopAt(s: UnwindState, why: string, at?: bigint): void {
  s.stop ??= at === undefined ? { why } : { why, at };
}

/** Record a get_stack_info() refusal of `what` as the reason: an unknown stack, or stack recursion. */
export function stopOnMiss(s: UnwindState, what: string): void {
  const m = s.visit.miss;
  if (!m) return stopAt(s, `${what}: get_stack_info() failed`);
  stopAt(s, m.beyond ? `${what} (${hex(m.addr)}) runs past the end of its stack` : m.recursion !== undefined
    ? `${what} (${hex(m.addr)}) is on the ${stackTypeName(m.recursion)} stack, which this walk has visited already (stack recursion)`
    : m.addr === 0n ? `${what} is NULL` : `${what} (${hex(m.addr)}) is on no stack get_stack_info() knows`, m.addr);
}

/** Record why a walk's loop ended on a return address of 0: the ip is not kernel text. */
function stopNotKernelText(s: UnwindState): void {
  stopAt(s, `the return address ${hex(s.ip)} is not kernel text (__kernel_text_address())`, s.ip);
}

/**
 * After unwind_start()'s skip loop (both unwinders): a skip that ran to the end, never reaching
 * first_frame, is why the trace comes out empty.
 */
export function noteSkippedToEnd(s: UnwindState, firstFrame: bigint, skipped: number): void {
  if (unwindDone(s) && skipped > 0) {
    s.stop = { why: `unwind_start() skipped every frame looking for first_frame ${hex(firstFrame)} and never reached it (then: ${s.userEnd ? "the task's user-mode pt_regs" : s.stop?.why ?? "the end"})`, at: firstFrame };
    s.skippedToEnd = true;
  }
}

/** Why a finished unwind stopped, in words (and the address it could not follow). */
function stopOf(s: UnwindState): Stop {
  // (an error with no reason of its own: ORC's frame-pointer guess set it, see the note, or
  // unwind_start()'s retry past a guard page did; the reliable walk's loop ends at the first
  // error, arch_stack_walk_reliable())
  // (a skip that ran to the end is why, even when it ended on user-mode pt_regs)
  const why = s.userEnd && !s.skippedToEnd ? { why: "it reached the task's user-mode pt_regs (complete)" }
    : s.stop ?? { why: s.error ? "the unwinder's error flag was set (unwind_error())" : "the unwind was done (no reason recorded)" };
  return s.guessed !== undefined ? { ...why, note: `on the way, ORC had no data for ${s.guessed} and guessed a frame-pointer frame (unreliable)` } : why;
}

export interface Unwinder<S extends UnwindState = UnwindState> {
  /** `frame`, `orc-6.13`, `orc-6.19`. */
  readonly name: string;
  readonly env: UnwindEnv;
  /** unwind_start(). */
  start(from: StartFrom): S;
  /** unwind_next_frame(): false once done. */
  next(s: S): boolean;
  /** The same unwinder over another environment (a view of memory with more in it). */
  withEnv(env: UnwindEnv): Unwinder<S>;
}

/** unwind_done(): the stack type is UNKNOWN (both unwinders' the_end). */
export const unwindDone = (s: UnwindState): boolean => s.stackInfo.type === STACK_TYPE_UNKNOWN;
/** unwind_error(). */
export const unwindError = (s: UnwindState): boolean => s.error;

/** unwind_get_return_address(): 0 once done, else the ip if __kernel_text_address() (BPF images count). */
export function unwindGetReturnAddress(env: UnwindEnv, s: UnwindState): bigint {
  if (unwindDone(s)) return 0n;
  return env.isKernelText(s.ip) ? s.ip : 0n;
}

/** unwind_get_entry_regs(): the pt_regs the unwinder is on, 0n if none or done. */
export function unwindGetEntryRegs(s: UnwindState): bigint {
  return unwindDone(s) ? 0n : s.regs;
}

export interface Walk {
  /** Return addresses, innermost first (from regs: regs->ip first). */
  readonly ips: readonly bigint[];
  /** The unwinder's error flag at the end. */
  readonly error: boolean;
  /** It ended at user-mode pt_regs (the task's last frame) rather than somewhere else. */
  readonly reachedEnd: boolean;
  readonly warnings: readonly string[];
  /** The error is one the unwinder itself expects and does not warn about (frame: bad_address's quiet cases). */
  readonly expectedLoss?: boolean;
  /** Why it stopped (not a kernel field: for reports). */
  readonly stopped?: Stop;
}

const rd = (env: UnwindEnv, a: bigint) => env.mem.read64(a) ?? 0n;

/** The walk stopped on user-mode pt_regs: the bottom of a task that entered the kernel from user space. */
function onUserRegs(env: UnwindEnv, s: UnwindState): boolean {
  const regs = unwindGetEntryRegs(s);
  return regs !== 0n && (rd(env, regs + BigInt(PT_REGS.cs)) & 3n) !== 0n;
}

/** The loop arch_stack_walk() and perf_callchain_kernel() share: every return address until done or 0. */
function collect<S extends UnwindState>(u: Unwinder<S>, s: S, ips: bigint[]): Walk {
  let reachedEnd = false;
  for (; !unwindDone(s); u.next(s)) {
    const addr = unwindGetReturnAddress(u.env, s);
    if (addr === 0n) {
      reachedEnd = onUserRegs(u.env, s);
      if (reachedEnd) s.userEnd = true;
      else stopNotKernelText(s);
      break;
    }
    ips.push(addr);
  }
  reachedEnd ||= s.userEnd === true;
  return { ips, error: s.error, reachedEnd, warnings: s.warnings.lines, ...(s.expectedLoss ? { expectedLoss: true } : {}), stopped: stopOf(s) };
}

/**
 * arch_stack_walk() (arch/x86/kernel/stacktrace.c, 7.2): regs->ip first when starting from
 * regs, then each return address until the unwind is done or one is 0. An unwinder error does
 * not stop it (only the reliable walk checks unwind_error()).
 */
export function archStackWalk<S extends UnwindState>(u: Unwinder<S>, from: StartFrom): Walk {
  const ips: bigint[] = [];
  if (from.kind === "regs") ips.push(rd(u.env, from.regs + BigInt(PT_REGS.ip)));
  return collect(u, u.start(from), ips);
}

/**
 * perf_callchain_kernel() (arch/x86/events/core.c, 7.2): with hardware regs
 * (perf_hw_regs()), regs->ip, then unwind_start(current, regs); with regs perf made itself
 * (perf_fetch_caller_regs(): no X86_EFLAGS_FIXED), unwind_start(current, NULL, regs->sp) from
 * the running function (`from`, which names that function's frame) with first_frame =
 * regs->sp. Then return addresses until done or 0.
 */
export function perfCallchainKernel<S extends UnwindState>(u: Unwinder<S>, regs: bigint, hw = true, from?: StartFrom & { kind: "current" }): Walk {
  if (hw) return archStackWalk(u, { kind: "regs", regs });
  if (!from) throw new RangeError("perfCallchainKernel: regs without X86_EFLAGS_FIXED need the running function's frame");
  return collect(u, u.start({ ...from, firstFrame: rd(u.env, regs + BigInt(PT_REGS.sp)) }), []);
}

/** livepatch's buffer for a task's reliable walk: MAX_STACK_ENTRIES (kernel/livepatch/transition.c, 7.2). */
export const KLP_MAX_STACK_ENTRIES = 100;

/** arch_stack_walk_reliable()'s answer: 0 or -EINVAL, and the entries it consumed. */
export interface ReliableWalk {
  readonly ok: boolean;
  readonly ips: readonly bigint[];
  /** Why it failed: the kernel returns -EINVAL for each of these. */
  readonly why?: "kernel regs (frame pointers)" | "no return address" | "unwinder error" | "buffer full";
  readonly warnings: readonly string[];
  /** Why the unwind under it stopped (not a kernel field: for reports). */
  readonly stopped: Stop;
}

/**
 * arch_stack_walk_reliable() (arch/x86/kernel/stacktrace.c, 7.2), as livepatch calls it:
 * while not done and not in error: user-mode regs end it successfully; kernel-mode regs fail it
 * only with CONFIG_FRAME_POINTER (`framePointer`); a return address of 0 fails it; the consumer
 * refusing an entry fails it; after the loop, unwind_error() fails it. The consumer is
 * stack_trace_consume_entry() (kernel/stacktrace.c) over a buffer of `size` entries (livepatch's
 * 100): it answers `len < size` once it has stored an entry, so the entry that fills the buffer
 * is refused, and a task with exactly `size` return addresses is -EINVAL too.
 */
export function archStackWalkReliable<S extends UnwindState>(u: Unwinder<S>, from: StartFrom, framePointer: boolean, size = KLP_MAX_STACK_ENTRIES): ReliableWalk {
  const ips: bigint[] = [];
  const s = u.start(from);
  const fail = (why: ReliableWalk["why"]): ReliableWalk => ({ ok: false, ips, why, warnings: s.warnings.lines, stopped: stopOf(s) });
  for (; !unwindDone(s) && !unwindError(s); u.next(s)) {
    const regs = unwindGetEntryRegs(s);
    if (regs !== 0n) {
      if ((rd(u.env, regs + BigInt(PT_REGS.cs)) & 3n) !== 0n) { s.userEnd = true; return { ok: true, ips, warnings: s.warnings.lines, stopped: stopOf(s) }; }
      if (framePointer) { stopAt(s, `kernel-mode pt_regs at ${hex(regs)}: a frame-pointer walk cannot vouch for what they interrupted`, regs); return fail("kernel regs (frame pointers)"); }
    }
    const addr = unwindGetReturnAddress(u.env, s);
    if (addr === 0n) { stopNotKernelText(s); return fail("no return address"); }
    ips.push(addr);
    if (ips.length >= size) { stopAt(s, `the caller's buffer of ${size} entries is full (stack_trace_consume_entry())`); return fail("buffer full"); }
  }
  if (unwindError(s)) return fail("unwinder error");
  return { ok: true, ips, warnings: s.warnings.lines, stopped: stopOf(s) };
}
