// objtool for the synthetic kernel: the ORC data vmlinux would carry (tools/objtool/orc_gen.c
// from its stack-state tracking in check.c), derived from the kernel's decoded instructions.
// Each function's stack height is followed instruction by instruction (push, pop, mov rbp,rsp,
// sub/add rsp, leave; the state at a branch target comes from the branch); entry code tracks
// the pt_regs being built (REGS_PARTIAL until PUSH_REGS is complete, then REGS, as the
// UNWIND_HINT_REGS / UNWIND_HINT_IRET_REGS annotations of entry_64.S say).
import { decodeCode, GENERIC_OP, immediateOf, K_IMM, K_REG, Op, RBP, RSP, toCanonical, type DInsn } from "./machine/index.ts";
import type { Kernel } from "../jit/kernel/kernel.ts";
import { OrcTable, type OrcEntry } from "../unwinder/index.ts";
import { PT_REGS_SIZE, IRET_FRAME_SIZE } from "../arch/ptrace.ts";

type D = Readonly<DInsn>;
const gen = (d: D) => GENERIC_OP[d.op]!;
const isReg = (d: D, which: 0 | 1, r: number) => (which === 0 ? d.k0 === K_REG && d.r0 === r : d.k1 === K_REG && d.r1 === r);
const pushes = (d: D) => gen(d) === Op.PUSH || gen(d) === Op.PUSHF;
const pops = (d: D) => gen(d) === Op.POP || gen(d) === Op.POPF;
/** `add rsp,imm` / `sub rsp,imm`: the immediate, else undefined. */
const rspAdjust = (d: D, op: number) => (gen(d) === op && isReg(d, 0, RSP) && d.k1 === K_IMM ? immediateOf(d) : undefined);

/** Words of pt_regs below the iret frame (orig_ax and the 15 general registers). */
const REGS_WORDS = (PT_REGS_SIZE - IRET_FRAME_SIZE) / 8;

const regs = (spOffset = 0): OrcEntry => ({ type: "REGS", spReg: "SP", spOffset, bpReg: "UNDEFINED", bpOffset: 0, signal: true });
const iretRegs = (pushed: number): OrcEntry => ({ type: "REGS_PARTIAL", spReg: "SP", spOffset: 8 * pushed, bpReg: "UNDEFINED", bpOffset: 0, signal: true });

/** The syscall entry: pt_regs at sp around the call to do_syscall_64. */
function syscallEntry(t: OrcTable, code: readonly D[]): void {
  for (const d of code) t.add(toCanonical(d.ip), regs());
}

/**
 * ret_from_fork_asm (entry_64.S:228, 7.2): UNWIND_HINT_END_OF_STACK where a new task's first
 * switch lands (its walk ends there without error). The kernel's hint covers up to `call
 * ret_from_fork`, after which UNWIND_HINT_REGS holds and the task returns to user mode; here the
 * task's syscall is entered from ret_from_fork_asm itself (the return to user mode and the
 * syscall back in are not modelled), so past the first instruction the task's pt_regs are at
 * sp, as entry_SYSCALL_64 has them around its call of do_syscall_64.
 */
function retFromFork(t: OrcTable, code: readonly D[]): void {
  code.forEach((d, i) => t.add(toCanonical(d.ip), i === 0 ? { type: "END_OF_STACK", spReg: "UNDEFINED", spOffset: 0, bpReg: "UNDEFINED", bpOffset: 0, signal: false } : regs()));
}

/**
 * IRQ stubs, asm_common_interrupt, asm_exc_nmi: the words pushed above the iret frame. Once
 * pt_regs is complete (UNWIND_HINT_REGS), the exit's pops keep it REGS, at a negative offset
 * from sp (objtool, tools/objtool/check.c update_cfi_state_regs(): a pop under a REGS hint only
 * lowers the offset), until the iret frame's own hint (UNWIND_HINT_IRET_REGS at .Lnative_iret
 * and the NMI's iretq, entry_64.S, 7.2): the full pt_regs stay readable below sp. (As
 * REGS_PARTIAL, a walk there read rbp from the interrupted code's regs and went wrong.)
 */
function entryCode(t: OrcTable, name: string, code: readonly D[]): void {
  let pushed = name === "asm_common_interrupt" ? 1 : 0; // orig_ax, pushed by the vector stub
  let full = false;
  for (const d of code) {
    if (pushed === REGS_WORDS) full = true;
    t.add(toCanonical(d.ip), full && pushed > 0 ? regs(8 * (pushed - REGS_WORDS)) : iretRegs(pushed));
    if (pushes(d)) pushed++;
    else if (pops(d)) pushed--;
    else if (rspAdjust(d, Op.ADD) === 8) pushed--;
  }
}

/** A C function with a frame pointer: CALL entries by sp offset until `mov rbp,rsp`, then by bp. */
function cFunction(t: OrcTable, start: bigint, end: bigint, code: readonly D[]): void {
  type St = { bp: boolean; off: number; saved: boolean };
  let st: St = { bp: false, off: 8, saved: false };
  const atTarget = new Map<number, St>();
  let dead = false;
  for (const d of code) {
    if (dead) st = atTarget.get(d.ip) ?? st;
    dead = false;
    t.add(toCanonical(d.ip), { type: "CALL", spReg: st.bp ? "BP" : "SP", spOffset: st.bp ? 16 : st.off, bpReg: st.saved ? "PREV_SP" : "UNDEFINED", bpOffset: -16, signal: false });
    const next: St = { ...st };
    const op = gen(d);
    const sub = rspAdjust(d, Op.SUB), add = rspAdjust(d, Op.ADD);
    if (op === Op.PUSH && isReg(d, 0, RBP) && !st.bp) { next.off += 8; next.saved = true; }
    else if (pushes(d) && !st.bp) next.off += 8;
    else if (op === Op.POP && isReg(d, 0, RBP)) { next.bp = false; next.saved = false; next.off = 8; }
    else if (pops(d) && !st.bp && !isReg(d, 0, RSP)) next.off -= 8;
    else if (op === Op.MOV && d.size === 8 && isReg(d, 0, RBP) && isReg(d, 1, RSP)) next.bp = true;
    else if (op === Op.LEAVE) { next.bp = false; next.saved = false; next.off = 8; }
    else if (sub !== undefined && !st.bp) next.off += sub;
    else if (add !== undefined && !st.bp) next.off -= add;
    if (op === Op.JMP || op === Op.JCC) {
      const target = toCanonical(d.target);
      if (target >= start && target < end && !atTarget.has(d.target)) atTarget.set(d.target, next);
    }
    if (op === Op.RET || op === Op.JMP || op === Op.JMP_IND || op === Op.UD2) dead = true;
    st = next;
  }
}

const tables = new WeakMap<Kernel, OrcTable>();

/**
 * The kernel's ORC table. objtool's output depends on the text alone, and the kernel text of a
 * campaign's images is shared (jit/image.ts caches kernels), so it is made once per kernel.
 */
export function kernelOrcTable(kernel: Kernel): OrcTable {
  let t = tables.get(kernel);
  if (t) return t;
  const text = kernel.text;
  t = new OrcTable(text.base, text.end);
  const syms = kernel.symbols.slice().sort((a, b) => (a.start < b.start ? -1 : 1));
  for (const s of syms) {
    const code = decodeCode(text.bytes.subarray(Number(s.start - text.base), Number(s.end - text.base)), s.start);
    if (s.name === "entry_SYSCALL_64") syscallEntry(t, code);
    else if (s.name === "ret_from_fork_asm") retFromFork(t, code);
    else if (s.kind === "entry") entryCode(t, s.name, code);
    else cFunction(t, s.start, s.end, code);
  }
  tables.set(kernel, t);
  return t;
}
