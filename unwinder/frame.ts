// The frame-pointer unwinder, arch/x86/kernel/unwind_frame.c (7.2) rule for rule
// (kernel-model.md §3): its state record and the kernel's verbs behind the common interface of
// unwind.ts, its helpers under their kernel names, the warning texts recorded instead of
// printed. Pure: it reads memory only through the environment's view.
import { PT_REGS, PT_REGS_SIZE as PTREGS_SIZE } from "../arch/ptrace.ts";
import { INACTIVE_TASK_FRAME } from "../arch/switch_to.ts";
import {
  getStackInfo, onStack, STACK_TYPE_UNKNOWN, Warnings, type StackInfo, type TaskView, type UnwindEnv,
} from "./stack.ts";
import { hex, noteSkippedToEnd, stopAt, stopOnMiss, unwindDone, type StartFrom, type UnwindState, type Unwinder } from "./unwind.ts";

const FRAME_HEADER_SIZE = 16n;
const PT_REGS_SIZE = BigInt(PTREGS_SIZE);
const REG = { bp: BigInt(PT_REGS.bp), ip: BigInt(PT_REGS.ip), cs: BigInt(PT_REGS.cs), sp: BigInt(PT_REGS.sp) } as const;
/** GCC_REALIGN_WORDS (unwind_frame.c, x86-64). */
const GCC_REALIGN_WORDS = 1n;

/** struct unwind_state, the frame-pointer variant (asm/unwind.h). */
export interface FrameUnwindState extends UnwindState {
  readonly stackInfo: StackInfo;
  gotIrq: boolean;
  /** The frame (0n: none); `regs` (the common part) is the pt_regs being walked (0n: none). */
  bp: bigint;
  origSp: bigint;
  nextBp: bigint;
  /**
   * Not a kernel field: task_pt_regs(state->task) and last_frame() of it, taken once at the
   * start (the kernel computes them at every frame; nothing changes them during a walk).
   */
  readonly ptRegs: bigint;
  readonly lastFrame: bigint;
}

const rd = (env: UnwindEnv, a: bigint): bigint => env.mem.read64(a) ?? 0n;
/** user_mode(regs): the CS of the pt_regs has RPL 3. */
const userMode = (env: UnwindEnv, regs: bigint) => (rd(env, regs + REG.cs) & 3n) !== 0n;
/** task_pt_regs(state->task) (kept in the state at the start). */
const taskPtRegs = (s: FrameUnwindState) => s.ptRegs;

/** decode_frame_pointer(): bit 0 set means an encoded pt_regs pointer (ENCODE_FRAME_POINTER). */
function decodeFramePointer(bp: bigint): bigint {
  return (bp & 1n) === 0n ? 0n : bp & ~1n;
}

/** unwind_get_return_address_ptr(). */
export function unwindGetReturnAddressPtr(s: FrameUnwindState): bigint {
  if (unwindDone(s)) return 0n;
  if (s.regs !== 0n) return s.regs + REG.ip;
  if (s.bp !== 0n) return s.bp + 8n;
  return 0n;
}

/** update_stack_state(): move to the frame at next_bp, hopping stacks by next_sp, or fail. */
function updateStackState(env: UnwindEnv, s: FrameUnwindState, nextBp: bigint): boolean {
  const info = s.stackInfo;
  const prevType = info.type;
  const prevFrameEnd = s.regs !== 0n ? s.regs + PT_REGS_SIZE : s.bp + FRAME_HEADER_SIZE;
  const regs = decodeFramePointer(nextBp);
  const frame = regs !== 0n ? regs : nextBp;
  const len = regs !== 0n ? PT_REGS_SIZE : FRAME_HEADER_SIZE;
  if (regs !== 0n) s.gotIrq = true;
  // If the next bp is not on the current stack, follow next_sp (possibly across several stacks).
  while (!onStack(info, frame, len)) {
    if (!getStackInfo(env, info.nextSp, info, s.visit, s.warnings, s.task)) {
      // not a kernel branch: why, for reports (the next frame is on none of the stacks linked from here)
      if (s.visit.miss?.recursion === undefined) stopAt(s, `the next ${regs !== 0n ? "pt_regs (encoded frame pointer)" : "frame pointer"} ${hex(nextBp)} is on no stack get_stack_info() knows (nor on one linked from this one)`, frame);
      else stopOnMiss(s, "the next stack");
      return false;
    }
  }
  // Only unwind up, and never into the previous frame.
  if (s.origSp !== 0n && info.type === prevType && frame < prevFrameEnd) {
    stopAt(s, `the next frame ${hex(frame)} is below the end of the previous one (${hex(prevFrameEnd)}): the unwinder only goes up`, frame);
    return false;
  }
  if (regs !== 0n) {
    s.regs = regs;
    s.bp = 0n;
  } else {
    s.bp = nextBp;
    s.regs = 0n;
  }
  s.ip = s.regs !== 0n && userMode(env, s.regs) ? 0n : rd(env, unwindGetReturnAddressPtr(s));
  if (s.origSp === 0n) s.origSp = frame;
  return true;
}

/** last_frame(): task_pt_regs(task) - 2 words, the frame do_syscall_64's caller leaves (kept in the state at the start). */
const lastFrame = (s: FrameUnwindState) => s.lastFrame;
/** last_aligned_frame(). */
const lastAlignedFrame = (s: FrameUnwindState) => lastFrame(s) - 8n * GCC_REALIGN_WORDS;

/**
 * is_last_task_frame(): is_last_frame(), or is_last_aligned_frame() (gcc realigned the stack
 * and pushed a duplicate of the return address), or is_last_ftrace_frame() (an ftrace handler
 * of a function entry code called: bp, parent ret, bp, function ret, parent ret, pt_regs).
 */
function isLastTaskFrame(env: UnwindEnv, s: FrameUnwindState): boolean {
  // (bp's distance below last_frame(), once: the aligned frame is GCC_REALIGN_WORDS below it,
  // the ftrace frame three words)
  const last = lastFrame(s), bp = s.bp, below = last - bp;
  if (below === 0n) return true;
  const word = (a: bigint, i: bigint) => rd(env, a + 8n * i);
  return (below === 8n * GCC_REALIGN_WORDS && word(bp, 1n) === word(last, 1n))
    || (below === 24n && word(bp, 0n) === word(bp, 2n) && word(bp, 1n) === word(bp, 4n));
}

/** unwind_next_frame(). */
export function unwindNextFrame(env: UnwindEnv, s: FrameUnwindState): boolean {
  if (unwindDone(s)) return false;
  if (s.regs !== 0n && userMode(env, s.regs)) { s.userEnd = true; return theEnd(s); }
  if (isLastTaskFrame(env, s)) {
    const regs = taskPtRegs(s);
    if (!userMode(env, regs)) { stopAt(s, "a kernel thread's last frame"); return theEnd(s); } // a kthread's partial regs
    s.regs = regs; // the syscall regs frame, which entry code does not encode
    s.bp = 0n;
    s.ip = 0n;
    return true;
  }
  let nextBp: bigint;
  if (s.nextBp !== 0n) {
    nextBp = s.nextBp;
    s.nextBp = 0n;
  } else if (s.regs !== 0n) {
    nextBp = rd(env, s.regs + REG.bp);
  } else {
    nextBp = rd(env, s.bp);
  }
  if (!updateStackState(env, s, nextBp)) return badAddress(env, s, nextBp);
  return true;
}

/**
 * The `bad_address:` exit: error, and one warning unless the task is not current (it may be
 * running elsewhere) or the unwinder was expected to get lost. The text names the regs frame
 * when the unwinder is on one (state->regs), else the frame pointer.
 */
function badAddress(env: UnwindEnv, s: FrameUnwindState, nextBp: bigint): boolean {
  s.error = true;
  if (s.task) return theEnd(s);
  // Lost in entry code or in a C handler before its frame pointer was set up: no warning.
  const sp = s.regs !== 0n ? rd(env, s.regs + REG.sp) : 0n;
  s.expectedLoss = (s.gotIrq && env.inEntryCode(s.ip)) || (s.regs !== 0n && sp >= lastAlignedFrame(s) && sp < taskPtRegs(s));
  if (s.expectedLoss) return theEnd(s);
  if (s.regs !== 0n) {
    s.warnings.once("WARNING: kernel stack regs", `WARNING: kernel stack regs at ${hex(s.regs)} in stackcheck:1 has bad 'bp' value ${hex(nextBp)}`);
  } else {
    s.warnings.once("WARNING: kernel stack frame pointer", `WARNING: kernel stack frame pointer at ${hex(s.bp)} in stackcheck:1 has bad value ${hex(nextBp)}`);
  }
  return theEnd(s);
}

/** The `the_end:` exit. */
function theEnd(s: FrameUnwindState): false {
  s.stackInfo.type = STACK_TYPE_UNKNOWN;
  return false;
}

/** __unwind_start() (unwind_frame.c). */
export function unwindStart(env: UnwindEnv, from: StartFrom): FrameUnwindState {
  const regs = from.kind === "regs" ? from.regs : 0n;
  const task: TaskView | undefined = from.kind === "task" ? from.task : undefined;
  const ptRegs = task?.ptRegs ?? env.taskPtRegs;
  const s: FrameUnwindState = {
    stackInfo: { type: STACK_TYPE_UNKNOWN, begin: 0n, end: 0n, nextSp: 0n }, visit: { mask: 0n }, task,
    error: false, gotIrq: regs !== 0n, bp: 0n, regs: 0n, origSp: 0n, ip: 0n, nextBp: 0n, warnings: new Warnings(), expectedLoss: false,
    ptRegs, lastFrame: ptRegs - 16n,
  };
  if (regs !== 0n && userMode(env, regs)) return s; // never start from user-mode regs
  // get_frame_pointer() and get_stack_pointer() (asm/stacktrace.h): regs->bp and regs->sp; the
  // running function's frame; a blocked task's switch frame (&inactive_task_frame->bp, thread.sp).
  let bp: bigint, firstFrame: bigint;
  if (from.kind === "regs") { bp = rd(env, regs + REG.bp); firstFrame = rd(env, regs + REG.sp); }
  else if (from.kind === "current") { bp = from.bp; firstFrame = from.firstFrame || from.bp; } // first_frame ?: get_stack_pointer() (asm/unwind.h): 0 is the default too
  else { bp = from.task.threadSp + BigInt(INACTIVE_TASK_FRAME.bp); firstFrame = from.task.threadSp; }
  // IP == 0: a call through a NULL pointer; pretend the frame is complete.
  if (regs !== 0n && rd(env, regs + REG.ip) === 0n && rd(env, regs + REG.sp) >= firstFrame) {
    s.nextBp = bp;
    bp = rd(env, regs + REG.sp) - 8n;
  }
  if (!getStackInfo(env, bp, s.stackInfo, s.visit, s.warnings, task)) stopOnMiss(s, "the first frame pointer");
  updateStackState(env, s, bp);
  // Skip ahead to the frame the caller asked for (regs->sp). If first_frame is on no known
  // stack, this runs the whole unwind and the trace comes out empty [derived].
  let skipped = 0;
  while (!unwindDone(s) && (!onStack(s.stackInfo, firstFrame, 8n) || (s.nextBp === 0n && s.bp < firstFrame))) {
    unwindNextFrame(env, s);
    skipped++;
  }
  noteSkippedToEnd(s, firstFrame, skipped); // not kernel code: for reports
  return s;
}

/** The frame-pointer unwinder behind the common interface. */
export function frameUnwinder(env: UnwindEnv): Unwinder<FrameUnwindState> {
  return { name: "frame", env, start: (from) => unwindStart(env, from), next: (s) => unwindNextFrame(env, s), withEnv: frameUnwinder };
}
