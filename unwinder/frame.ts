// The frame-pointer unwinder, arch/x86/kernel/unwind_frame.c rule for rule (kernel-model.md §3):
// one state record and the kernel's verbs (unwindStart, unwindNextFrame, unwindDone,
// unwindError, unwindGetReturnAddress), its helpers under their kernel names, the warning texts
// recorded instead of printed. Pure: it reads memory only through the environment's view.
import {
  getStackInfo, onStack, STACK_TYPE_UNKNOWN, Warnings, type StackInfo, type UnwindEnv,
} from "./stack.ts";

const FRAME_HEADER_SIZE = 16n;
const PT_REGS_SIZE = 168n;
const REG = { bp: 32n, ip: 128n, cs: 136n, sp: 152n } as const;

export interface FrameUnwindState {
  stackInfo: StackInfo;
  visit: { mask: bigint };
  error: boolean;
  gotIrq: boolean;
  /** The frame (0n: none), the pt_regs being walked (0n: none). */
  bp: bigint;
  regs: bigint;
  origSp: bigint;
  ip: bigint;
  nextBp: bigint;
  readonly warnings: Warnings;
  /**
   * Not a kernel field: the error was one bad_address: deliberately does not warn about (lost in
   * entry code, or before the C handler's first frame pointer), i.e. an expected loss.
   */
  expectedLoss: boolean;
}

const rd = (env: UnwindEnv, a: bigint): bigint => env.mem.read64(a) ?? 0n;
/** user_mode(regs): the CS of the pt_regs has RPL 3. */
const userMode = (env: UnwindEnv, regs: bigint) => (rd(env, regs + REG.cs) & 3n) !== 0n;

export const unwindDone = (s: FrameUnwindState) => s.stackInfo.type === STACK_TYPE_UNKNOWN;
export const unwindError = (s: FrameUnwindState) => s.error;

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

/** unwind_get_return_address(): the return address if it is kernel text (BPF images count), else 0. */
export function unwindGetReturnAddress(env: UnwindEnv, s: FrameUnwindState): bigint {
  if (unwindDone(s)) return 0n;
  return env.isKernelText(s.ip) ? s.ip : 0n;
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
    if (!getStackInfo(env, info.nextSp, info, s.visit, s.warnings)) return false;
  }
  // Only unwind up, and never into the previous frame.
  if (s.origSp !== 0n && info.type === prevType && frame < prevFrameEnd) return false;
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

/** is_last_task_frame(): bp is task_pt_regs - 2 words (or the GCC-realigned or ftrace variant). */
function isLastTaskFrame(env: UnwindEnv, s: FrameUnwindState): boolean {
  const last = env.taskPtRegs - 16n;
  const aligned = last - 8n;
  const ftrace = last - 24n;
  return s.bp === last || (s.bp === aligned && rd(env, aligned + 8n) === rd(env, last + 8n)) || s.bp === ftrace;
}

/** unwind_next_frame(). */
export function unwindNextFrame(env: UnwindEnv, s: FrameUnwindState): boolean {
  if (unwindDone(s)) return false;
  if (s.regs !== 0n && userMode(env, s.regs)) return theEnd(s);
  if (isLastTaskFrame(env, s)) {
    const regs = env.taskPtRegs;
    if (!userMode(env, regs)) return theEnd(s); // a kthread's partial regs
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

/** The `bad_address:` exit: error, and one warning unless the unwinder was expected to get lost. */
function badAddress(env: UnwindEnv, s: FrameUnwindState, nextBp: bigint): boolean {
  s.error = true;
  // Lost in entry code or in a C handler before its frame pointer was set up: no warning.
  const sp = s.regs !== 0n ? rd(env, s.regs + REG.sp) : 0n;
  s.expectedLoss = (s.gotIrq && env.inEntryCode(s.ip)) || (s.regs !== 0n && sp >= env.taskPtRegs - 24n && sp < env.taskPtRegs);
  if (s.expectedLoss) return theEnd(s);
  const hex = (v: bigint) => v.toString(16).padStart(16, "0");
  if (s.gotIrq) {
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

export interface StartFrom {
  /** Address of a pt_regs to start from (an interrupt's regs), or 0n. */
  readonly regs?: bigint;
  /** Without regs: the running function's frame (__builtin_frame_address), as dump_stack() starts. */
  readonly bp?: bigint;
  /** first_frame; defaults to regs->sp, or bp without regs (get_stack_pointer()). */
  readonly firstFrame?: bigint;
}

/** unwind_start() / __unwind_start(). */
export function unwindStart(env: UnwindEnv, from: StartFrom): FrameUnwindState {
  const regs = from.regs ?? 0n;
  const s: FrameUnwindState = {
    stackInfo: { type: STACK_TYPE_UNKNOWN, begin: 0n, end: 0n, nextSp: 0n }, visit: { mask: 0n },
    error: false, gotIrq: regs !== 0n, bp: 0n, regs: 0n, origSp: 0n, ip: 0n, nextBp: 0n, warnings: new Warnings(), expectedLoss: false,
  };
  if (regs !== 0n && userMode(env, regs)) return s; // never start from user-mode regs
  const firstFrame = from.firstFrame ?? (regs !== 0n ? rd(env, regs + REG.sp) : from.bp ?? 0n);
  let bp = regs !== 0n ? rd(env, regs + REG.bp) : from.bp ?? 0n;
  // IP == 0: a call through a NULL pointer; pretend the frame is complete.
  if (regs !== 0n && rd(env, regs + REG.ip) === 0n && rd(env, regs + REG.sp) >= firstFrame) {
    s.nextBp = bp;
    bp = rd(env, regs + REG.sp) - 8n;
  }
  getStackInfo(env, bp, s.stackInfo, s.visit, s.warnings);
  updateStackState(env, s, bp);
  // Skip ahead to the frame the caller asked for (regs->sp). If first_frame is on no known
  // stack, this runs the whole unwind and the trace comes out empty [derived].
  while (!unwindDone(s) && (!onStack(s.stackInfo, firstFrame, 8n) || (s.nextBp === 0n && s.bp < firstFrame))) {
    unwindNextFrame(env, s);
  }
  return s;
}
