// The ORC unwinder (arch/x86/kernel/unwind_orc.c, 7.2; kernel-model.md §5) in two versions:
//   orc-6.13: BPF code has no ORC data; orc_find() returns NULL and the unwinder falls back to
//             orc_fp_entry (the frame-pointer step) and sets the error: "just a guess";
//   orc-6.19: orc_bpf_find() returns orc_fp_entry without the error when
//             bpf_has_frame_pointer(ip) (kernel/bpf/core.c) holds: the ip's BPF ksym has
//             non-zero fp_start and fp_end and fp_start <= ip - ksym->start < fp_end.
// The kernel's own text has exact ORC data (an OrcTable, made by harness/objtool.ts the way
// objtool makes vmlinux's). Stacks are found by address (stack_access_ok()), not by next_sp;
// the visit mask still applies. Pure: it reads memory only through the environment's view.
import { IRET_FRAME_OFFSET, IRET_FRAME_SIZE, PT_REGS, PT_REGS_SIZE, type PtRegsField } from "../arch/ptrace.ts";
import { INACTIVE_TASK_FRAME, INACTIVE_TASK_FRAME_SIZE } from "../arch/switch_to.ts";
import { getStackInfo, onStack, STACK_TYPE_UNKNOWN, Warnings, type StackInfo, type TaskView, type UnwindEnv } from "./stack.ts";
import { noteSkippedToEnd, stopAt, stopOnMiss, unwindDone, type StartFrom, type UnwindState, type Unwinder } from "./unwind.ts";

export type OrcVersion = "orc-6.13" | "orc-6.19";

/** ORC_REG_* (arch/x86/include/asm/orc_types.h). */
export type OrcReg = "UNDEFINED" | "AX" | "DX" | "SP" | "BP" | "DI" | "R10" | "R13" | "PREV_SP" | "SP_INDIRECT" | "BP_INDIRECT";
/** ORC_TYPE_*. */
export type OrcType = "UNDEFINED" | "END_OF_STACK" | "CALL" | "REGS" | "REGS_PARTIAL";

/** struct orc_entry. */
export interface OrcEntry {
  readonly type: OrcType;
  readonly spReg: OrcReg;
  readonly spOffset: number;
  readonly bpReg: OrcReg;
  readonly bpOffset: number;
  readonly signal: boolean;
}

/** orc_fp_entry: the frame-pointer guess for code without ORC data ("generated code"). */
export const ORC_FP_ENTRY: OrcEntry = { type: "CALL", spReg: "BP", spOffset: 16, bpReg: "PREV_SP", bpOffset: -16, signal: false };
/** null_orc_entry: the entry orc_find() gives ip 0 (a call through a NULL pointer). */
export const NULL_ORC_ENTRY: OrcEntry = { type: "CALL", spReg: "SP", spOffset: 8, bpReg: "UNDEFINED", bpOffset: 0, signal: false };

/** An ORC table: entries by instruction start, looked up for the instruction containing an ip (__orc_find()). */
export class OrcTable {
  private readonly starts: bigint[] = [];
  private readonly entries: OrcEntry[] = [];
  constructor(readonly lo: bigint, readonly hi: bigint) {}
  /** Entries must be added in address order. */
  add(at: bigint, e: OrcEntry): void { this.starts.push(at); this.entries.push(e); }
  find(ip: bigint): OrcEntry | undefined {
    if (ip < this.lo || ip >= this.hi) return undefined;
    let a = 0, b = this.starts.length - 1, best = -1;
    while (a <= b) { const m = (a + b) >> 1; if (this.starts[m]! <= ip) { best = m; a = m + 1; } else b = m - 1; }
    return best < 0 ? undefined : this.entries[best];
  }
}

/** A JITed BPF function's ksym as bpf_has_frame_pointer() reads it: fp_start/fp_end are offsets from start. */
export interface BpfKsym {
  readonly start: bigint;
  readonly end: bigint;
  readonly fpStart: number;
  readonly fpEnd: number;
}

/** What the ORC unwinder reads besides memory and stacks: vmlinux's ORC data and the BPF ksyms. */
export interface OrcData {
  readonly version: OrcVersion;
  readonly kernel: OrcTable;
  readonly bpfKsyms: readonly BpfKsym[];
  /** ret_from_fork_asm: a new task's ip, looked up exactly (signal) when its walk starts. */
  readonly retFromFork?: bigint;
}

/** struct unwind_state, the ORC variant (asm/unwind.h). */
export interface OrcUnwindState extends UnwindState {
  readonly stackInfo: StackInfo;
  sp: bigint;
  bp: bigint;
  signal: boolean;
  fullRegs: boolean;
  prevRegs: bigint;
}

const rd = (env: UnwindEnv, a: bigint) => env.mem.read64(a) ?? 0n;
const field = (regs: bigint, f: PtRegsField) => regs + BigInt(PT_REGS[f]);
const userMode = (env: UnwindEnv, regs: bigint) => (rd(env, field(regs, "cs")) & 3n) !== 0n;

/** bpf_has_frame_pointer() (kernel/bpf/core.c, 7.2). */
export function bpfHasFramePointer(ksyms: readonly BpfKsym[], ip: bigint): boolean {
  const k = ksyms.find((x) => ip >= x.start && ip < x.end); // bpf_ksym_find()
  if (!k || k.fpStart === 0 || k.fpEnd === 0) return false;
  const offset = Number(ip - k.start);
  return offset >= k.fpStart && offset < k.fpEnd;
}

/**
 * orc_find(): null_orc_entry for ip 0; vmlinux's table; then (v6.19+) orc_bpf_find(); modules
 * and ftrace trampolines have none here. undefined: no ORC data (the caller's fallback).
 */
function orcFind(data: OrcData, ip: bigint): OrcEntry | undefined {
  if (ip === 0n) return NULL_ORC_ENTRY;
  const k = data.kernel.find(ip);
  if (k) return k;
  if (data.version === "orc-6.19" && bpfHasFramePointer(data.bpfKsyms, ip)) return ORC_FP_ENTRY;
  return undefined;
}

/** orc_warn_current(): printed once, and only while the unwind of current has no error yet. */
function warnCurrent(s: OrcUnwindState, text: string): void {
  stopAt(s, text.replace(/^WARNING: /, "")); // not kernel code: why the walk stops, for reports
  if (s.task === undefined && !s.error) s.warnings.once(text.split(" at ")[0]!, text);
}

function stackAccessOk(env: UnwindEnv, s: OrcUnwindState, addr: bigint, len: bigint): boolean {
  if (onStack(s.stackInfo, addr, len)) return true;
  s.visit.miss = undefined; // not kernel state: what a refusal below names
  if (!getStackInfo(env, addr, s.stackInfo, s.visit, s.warnings, s.task)) return false;
  if (onStack(s.stackInfo, addr, len)) return true;
  s.visit.miss = { addr, beyond: true };
  return false;
}

/** deref_stack_reg(). */
function derefStackReg(env: UnwindEnv, s: OrcUnwindState, addr: bigint): bigint | undefined {
  return stackAccessOk(env, s, addr, 8n) ? rd(env, addr) : undefined;
}

/** get_reg(): from full regs, else from the previous full regs (an NMI in early/late IRQ entry). */
function getReg(env: UnwindEnv, s: OrcUnwindState, f: PtRegsField): bigint | undefined {
  if (s.regs === 0n) return undefined;
  if (s.fullRegs) return rd(env, field(s.regs, f));
  if (s.prevRegs !== 0n) return rd(env, field(s.prevRegs, f));
  return undefined;
}

const GET_REG: Partial<Record<OrcReg, [PtRegsField, string]>> = {
  AX: ["ax", "AX"], DX: ["dx", "DX"], DI: ["di", "RDI"], R10: ["r10", "R10"], R13: ["r13", "R13"],
};

/** unwind_next_frame() (ORC). */
export function orcNextFrame(env: UnwindEnv, data: OrcData, s: OrcUnwindState): boolean {
  if (unwindDone(s)) return false;
  const origIp = s.ip, prevSp = s.sp, prevType = s.stackInfo.type;
  const err = (): false => { s.error = true; return theEnd(s); };
  // End-of-stack check for user tasks
  if (s.regs !== 0n && userMode(env, s.regs)) { s.userEnd = true; return theEnd(s); }
  let orc = orcFind(data, s.signal ? s.ip : s.ip - 1n);
  if (!orc) {
    orc = ORC_FP_ENTRY; // "just a guess, so the rest of the unwind is no longer considered reliable"
    s.error = true;
    s.guessed ??= env.symbolize(s.ip); // not kernel code: for reports
  } else {
    if (orc.type === "UNDEFINED") { stopAt(s, `the ORC entry for ${env.symbolize(s.ip)} is UNDEFINED`, s.ip); return err(); }
    if (orc.type === "END_OF_STACK") { stopAt(s, `the ORC entry for ${env.symbolize(s.ip)} is END_OF_STACK`, s.ip); return theEnd(s); }
  }
  s.signal = orc.signal;
  // Find the previous frame's stack
  let sp: bigint, indirect = false;
  switch (orc.spReg) {
    case "SP": sp = s.sp + BigInt(orc.spOffset); break;
    case "BP": sp = s.bp + BigInt(orc.spOffset); break;
    case "SP_INDIRECT": sp = s.sp; indirect = true; break;
    case "BP_INDIRECT": sp = s.bp + BigInt(orc.spOffset); indirect = true; break;
    default: {
      const r = GET_REG[orc.spReg];
      const v = r ? getReg(env, s, r[0]) : undefined;
      if (v === undefined) {
        if (r) warnCurrent(s, `WARNING: missing ${r[1]} value at ${env.symbolize(s.ip)}`);
        else {
          const text = `unknown SP base reg ${orc.spReg} at ${env.symbolize(s.ip)}`;
          stopAt(s, text);
          s.warnings.once("WARNING: unknown SP base reg", `WARNING: ${text}`);
        }
        return err();
      }
      sp = v;
    }
  }
  if (indirect) {
    const v = derefStackReg(env, s, sp);
    if (v === undefined) { stopOnMiss(s, `the ${orc.spReg} slot of ${env.symbolize(origIp)}`); return err(); }
    sp = v + (orc.spReg === "SP_INDIRECT" ? BigInt(orc.spOffset) : 0n);
  }
  // Find IP, SP and possibly regs
  if (orc.type === "CALL") {
    const ip = derefStackReg(env, s, sp - 8n);
    if (ip === undefined) { stopOnMiss(s, `the return address slot of ${env.symbolize(origIp)}`); return err(); }
    s.ip = ip; s.sp = sp; s.regs = 0n; s.prevRegs = 0n;
  } else if (orc.type === "REGS") {
    if (!stackAccessOk(env, s, sp, BigInt(PT_REGS_SIZE))) {
      stopOnMiss(s, `the pt_regs of ${env.symbolize(origIp)}`);
      warnCurrent(s, `WARNING: can't access registers at ${env.symbolize(origIp)}`);
      return err();
    }
    s.ip = rd(env, field(sp, "ip")); s.sp = rd(env, field(sp, "sp"));
    s.regs = sp; s.prevRegs = 0n; s.fullRegs = true;
  } else {
    if (!stackAccessOk(env, s, sp, BigInt(IRET_FRAME_SIZE))) {
      stopOnMiss(s, `the iret frame of ${env.symbolize(origIp)}`);
      warnCurrent(s, `WARNING: can't access iret registers at ${env.symbolize(origIp)}`);
      return err();
    }
    const regs = sp - BigInt(IRET_FRAME_OFFSET);
    s.ip = rd(env, field(regs, "ip")); s.sp = rd(env, field(regs, "sp"));
    if (s.fullRegs) s.prevRegs = s.regs;
    s.regs = regs; s.fullRegs = false;
  }
  // Find BP
  if (orc.bpReg === "UNDEFINED") {
    const bp = getReg(env, s, "bp");
    if (bp !== undefined) s.bp = bp;
  } else if (orc.bpReg === "PREV_SP" || orc.bpReg === "BP") {
    const bp = derefStackReg(env, s, (orc.bpReg === "PREV_SP" ? sp : s.bp) + BigInt(orc.bpOffset));
    if (bp === undefined) { stopOnMiss(s, `the saved rbp slot of ${env.symbolize(origIp)}`); return err(); }
    s.bp = bp;
  } else {
    const text = `unknown BP base reg ${orc.bpReg} for ip ${env.symbolize(origIp)}`;
    stopAt(s, text);
    s.warnings.once("WARNING: unknown BP base reg", `WARNING: ${text}`);
    return err();
  }
  // Prevent a recursive loop due to bad ORC data
  if (s.stackInfo.type === prevType && onStack(s.stackInfo, s.sp, 8n) && s.sp <= prevSp) {
    warnCurrent(s, `WARNING: stack going in the wrong direction? at ${env.symbolize(origIp)}`);
    return err();
  }
  return true;
}

function theEnd(s: OrcUnwindState): false {
  s.stackInfo.type = STACK_TYPE_UNKNOWN;
  return false;
}


/**
 * __unwind_start() (ORC): from regs (then skip the regs frame); from the running function's
 * ip/sp/bp (then skip ahead until sp is above first_frame); from a blocked task's switch frame
 * (sp = thread.sp + sizeof(struct inactive_task_frame), bp and ip from the frame).
 * `retFromFork`: ret_from_fork_asm, where a new task's ip is looked up exactly (signal).
 */
export function orcStart(env: UnwindEnv, data: OrcData, from: StartFrom, retFromFork = 0n): OrcUnwindState {
  const task: TaskView | undefined = from.kind === "task" ? from.task : undefined;
  const s: OrcUnwindState = {
    ip: 0n, sp: 0n, bp: 0n, signal: false, error: false, regs: 0n, fullRegs: false, prevRegs: 0n, task, expectedLoss: false,
    stackInfo: { type: STACK_TYPE_UNKNOWN, begin: 0n, end: 0n, nextSp: 0n }, visit: { mask: 0n }, warnings: new Warnings(),
  };
  let firstFrame = 0n;
  if (from.kind === "regs") {
    const regs = from.regs;
    if (userMode(env, regs)) return s;
    s.ip = rd(env, field(regs, "ip")); s.sp = rd(env, field(regs, "sp")); s.bp = rd(env, field(regs, "bp"));
    s.regs = regs; s.fullRegs = true; s.signal = true;
  } else if (from.kind === "current") {
    s.ip = from.ip; s.sp = from.sp; s.bp = from.bp;
    firstFrame = from.firstFrame || from.bp; // first_frame ?: ... (asm/unwind.h): 0 is the default too
  } else {
    const frame = from.task.threadSp;
    s.sp = frame + BigInt(INACTIVE_TASK_FRAME_SIZE);
    s.bp = rd(env, frame + BigInt(INACTIVE_TASK_FRAME.bp));
    s.ip = rd(env, frame + BigInt(INACTIVE_TASK_FRAME.retAddr));
    s.signal = s.ip === retFromFork && retFromFork !== 0n;
    firstFrame = frame;
  }
  if (!getStackInfo(env, s.sp, s.stackInfo, s.visit, s.warnings, task)) {
    s.error = true; // maybe overflowed into a guard page: try the next page up
    if (!getStackInfo(env, (s.sp + 0xfffn) & ~0xfffn, s.stackInfo, s.visit, s.warnings, task)) {
      s.visit.miss = { addr: s.sp };
      stopOnMiss(s, "the stack pointer");
      return s;
    }
  }
  if (from.kind === "regs") {
    orcNextFrame(env, data, s); // skip the regs frame
    return s;
  }
  let skipped = 0;
  for (; !unwindDone(s) && (!onStack(s.stackInfo, firstFrame, 8n) || s.sp <= firstFrame); skipped++) orcNextFrame(env, data, s);
  noteSkippedToEnd(s, firstFrame, skipped); // not kernel code: for reports
  return s;
}

/** The ORC unwinder (one version) behind the common interface. */
export function orcUnwinder(env: UnwindEnv, data: OrcData): Unwinder<OrcUnwindState> {
  return { name: data.version, env, start: (from) => orcStart(env, data, from, data.retFromFork), next: (s) => orcNextFrame(env, data, s), withEnv: (e) => orcUnwinder(e, data) };
}
