// The verifier's rewrites between verification and the JIT that change the instructions a JIT
// sees (bpf_do_misc_fixups(), kernel/bpf/fixups.c, 7.2), for the instructions stackcheck's
// programs use; both JIT backends lower the rewritten program (bpftool's "xlated" form), while
// the reference interpreter runs the program as written:
//   - sdiv/smod by the immediate -1 become `neg` / `w = 0` (no INT_MIN / -1 #DE);
//   - div/mod by a register get a guard: division by 0 gives 0, modulo by 0 leaves the dividend
//     (zero-extended in 32-bit form), and the signed forms handle -1 without idiv;
//   - may_goto becomes x86-64's timed form (bpf_jit_supports_timed_may_goto()): a count in the
//     16 bytes fixups add below the function's stack, decremented per pass, and a call of
//     arch_bpf_timed_may_goto whenever it runs out; each function with one starts by storing
//     the count (BPF_MAX_TIMED_LOOPS) and a zero timestamp;
//   - then (bpf_opt_subreg_zext_lo32_rnd_hi32()) a 32-bit cmpxchg whose R0 is read as 64 bits
//     is followed by a zero-extension of R0.
// Instructions are inserted as bpf_patch_insn_single() inserts them (kernel/bpf/core.c):
// branches that cross the patch are renumbered (bpf_adj_branches()), a branch to the patched
// instruction reaches the start of the patch, and function starts after it move
// (adjust_subprog_starts()).
import { TIMED_MAY_GOTO_CALL } from "./abi.ts";
import type { BpfInsn } from "./insn.ts";
import { isMayGoto } from "./fields.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_CALL, BPF_REG_AX, BPF_CLASS, BPF_DIV, BPF_DW, BPF_EXIT, BPF_JA, BPF_JEQ, BPF_JGT, BPF_JMP, BPF_JMP32, BPF_JNE,
  BPF_K, BPF_LDX, BPF_MAX_TIMED_LOOPS, BPF_MEM, BPF_MOD, BPF_MOV, BPF_NEG, BPF_OP, BPF_PSEUDO_CALL, BPF_ST, BPF_STX, BPF_SUB, BPF_X, BPF_XOR,
} from "./opcodes.ts";
import type { Program } from "./program.ts";
import type { Validated } from "./validate.ts";

export { BPF_REG_AX };

// The kernel's instruction macros (include/linux/filter.h), for the patches below: built
// directly, since they name BPF_REG_AX, which no program as written may use (insn() refuses it).
const RAW = (code: number, dst: number, src: number, off: number, imm: number): BpfInsn => ({ code, dst, src, off, imm });
const MOV64_REG = (dst: number, src: number) => RAW(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
const MOV32_REG = (dst: number, src: number) => RAW(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0);
const MOV32_IMM = (dst: number, imm: number) => RAW(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm);
const MOV64_IMM = (dst: number, imm: number) => RAW(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
const ALU32_REG = (op: number, dst: number, src: number) => RAW(BPF_ALU | op | BPF_X, dst, src, 0, 0);
const JMP_IMM = (op: number, dst: number, imm: number, off: number) => RAW(BPF_JMP | op | BPF_K, dst, 0, off, imm);
const JA = (off: number) => RAW(BPF_JMP | BPF_JA, 0, 0, off, 0);
const LDX_MEM_DW = (dst: number, src: number, off: number) => RAW(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0);
const STX_MEM_DW = (dst: number, src: number, off: number) => RAW(BPF_STX | BPF_MEM | BPF_DW, dst, src, off, 0);
const ST_MEM_DW = (dst: number, off: number, imm: number) => RAW(BPF_ST | BPF_MEM | BPF_DW, dst, 0, off, imm);
/** BPF_ZEXT_REG(DST): a 32-bit move of the register to itself, imm 1 marking it as one (insn_is_zext()). */
const ZEXT_REG = (dst: number) => RAW(BPF_ALU | BPF_MOV | BPF_X, dst, dst, 0, 1);
const EMIT_CALL_TIMED_MAY_GOTO = () => RAW(BPF_JMP | BPF_CALL, 0, 0, 0, TIMED_MAY_GOTO_CALL.id);

/** A program being patched: its instructions and function starts, as bpf_patch_insn_data() keeps them. */
class Patcher {
  readonly insns: BpfInsn[];
  readonly starts: number[];
  /** Where each original instruction's code begins now (a patch replacing it begins there). */
  readonly at: number[];

  constructor(p: Program) {
    this.insns = [...p.insns];
    this.starts = [...p.funcs.map((f) => f.start), p.insns.length]; // with the fake 'exit' subprog
    this.at = p.insns.map((_, i) => i);
  }

  /** bpf_patch_insn_single() + adjust_subprog_starts(): instruction `pos` becomes `patch`. */
  patch(pos: number, patch: readonly BpfInsn[]): void {
    const len = patch.length;
    this.insns.splice(pos, 1, ...patch);
    if (len === 1) return;
    const endOld = pos + 1, endNew = pos + len, delta = endNew - endOld;
    // bpf_adj_branches(prog, pos, end_old, end_new), over the patched program
    this.insns.forEach((x, curr) => {
      const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
      if ((cls !== BPF_JMP && cls !== BPF_JMP32) || op === BPF_EXIT) return;
      if (op === BPF_CALL && x.src !== BPF_PSEUDO_CALL) return;
      const viaImm = op === BPF_CALL || x.code === (BPF_JMP32 | BPF_JA);
      let rel = viaImm ? x.imm : x.off;
      if (curr < pos && curr + rel + 1 >= endOld) rel += delta;
      else if (curr >= endNew && curr + rel + 1 < endNew) rel -= delta;
      else return;
      this.insns[curr] = viaImm ? { ...x, imm: rel } : { ...x, off: rel };
    });
    for (let i = 0; i < this.starts.length; i++) if (this.starts[i]! > pos) this.starts[i]! += len - 1;
    for (let i = 0; i < this.at.length; i++) if (this.at[i]! > pos) this.at[i]! += len - 1;
  }

  /** adjust_jmp_off(): jumps (not calls) to `target`, outside [target, target + delta), move by delta. */
  adjustJmpOff(target: number, delta: number): void {
    this.insns.forEach((x, i) => {
      if (i >= target && i < target + delta) return;
      const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
      if ((cls !== BPF_JMP && cls !== BPF_JMP32) || op === BPF_CALL || op === BPF_EXIT) return;
      if (x.code === (BPF_JMP32 | BPF_JA)) { if (i + 1 + x.imm === target) this.insns[i] = { ...x, imm: x.imm + delta }; }
      else if (i + 1 + x.off === target) this.insns[i] = { ...x, off: x.off + delta };
    });
  }

  program(p: Program): Program {
    return { ...p, insns: this.insns, funcs: p.funcs.map((f, fi) => ({ ...f, start: this.starts[fi]!, end: this.starts[fi + 1]! })) };
  }
}

/** The instructions the div/mod-by-register guard replaces `x` with (bpf_do_misc_fixups(), 7.2). */
function divModGuard(x: BpfInsn): BpfInsn[] {
  const is64 = BPF_CLASS(x.code) === BPF_ALU64;
  const isDiv = BPF_OP(x.code) === BPF_DIV;
  const ALU = is64 ? BPF_ALU64 : BPF_ALU, JMP = is64 ? BPF_JMP : BPF_JMP32;
  if (x.off === 1 && isDiv) {
    // sdiv: by 0 → 0; LLONG_MIN / -1 → LLONG_MIN (neg); INT_MIN likewise in 32 bits
    return [
      MOV64_REG(BPF_REG_AX, x.src), RAW(ALU | BPF_ADD | BPF_K, BPF_REG_AX, 0, 0, 1), RAW(JMP | BPF_JGT | BPF_K, BPF_REG_AX, 0, 4, 1),
      RAW(JMP | BPF_JEQ | BPF_K, BPF_REG_AX, 0, 1, 0), RAW(ALU | BPF_MOV | BPF_K, x.dst, 0, 0, 0), RAW(ALU | BPF_NEG | BPF_K, x.dst, 0, 0, 0),
      JA(1), x,
    ];
  }
  if (x.off === 1) {
    // smod: by 0 → dst; by -1 → 0
    return [
      MOV64_REG(BPF_REG_AX, x.src), RAW(ALU | BPF_ADD | BPF_K, BPF_REG_AX, 0, 0, 1), RAW(JMP | BPF_JGT | BPF_K, BPF_REG_AX, 0, 3, 1),
      RAW(JMP | BPF_JEQ | BPF_K, BPF_REG_AX, 0, 3 + (is64 ? 0 : 1), 1), MOV32_IMM(x.dst, 0), JA(1), x,
      ...(is64 ? [] : [JA(1), MOV32_REG(x.dst, x.dst)]),
    ];
  }
  if (isDiv) return [RAW(JMP | BPF_JNE | BPF_K, x.src, 0, 2, 0), ALU32_REG(BPF_XOR, x.dst, x.dst), JA(1), x];
  return [RAW(JMP | BPF_JEQ | BPF_K, x.src, 0, 1 + (is64 ? 0 : 1), 0), x, ...(is64 ? [] : [JA(1), MOV32_REG(x.dst, x.dst)])];
}

/**
 * The program as the JIT receives it: bpf_do_misc_fixups()'s rewrites of sdiv/smod by -1,
 * div/mod by a register and may_goto (timed, x86-64), with each may_goto function's count and
 * timestamp initialised at its start; then the zero-extension of R0 after each 32-bit cmpxchg
 * the verifier marked (Validated.zextCmpxchg). `v` gives each function's verifier stack depth
 * (the count and timestamp go below it: -depth-16 and -depth-8).
 */
export function miscFixups(p: Program, v: Validated): Program {
  return fixupsWithMap(p, v).program;
}

/**
 * miscFixups(), and where each instruction of `p` begins in the result (`at[i]`: the first
 * instruction of the patch that replaced it, or of the stores put before a function's first).
 */
export function fixupsWithMap(p: Program, v: Validated): { program: Program; at: readonly number[] } {
  const needs = v.zextCmpxchg.length > 0 || p.insns.some((x) => isMayGoto(x) || isDivModReg(x) || isSignedByMinusOne(x));
  if (!needs) return { program: p, at: p.insns.map((_, i) => i) };
  const pt = new Patcher(p);
  let fi = 0;
  for (let i = 0; i < pt.insns.length; i++) {
    while (fi + 1 < p.funcs.length && pt.starts[fi + 1]! <= i) fi++;
    const x = pt.insns[i]!;
    let patch: BpfInsn[] | undefined;
    if (isSignedByMinusOne(x)) {
      patch = [BPF_OP(x.code) === BPF_DIV ? RAW((BPF_CLASS(x.code) === BPF_ALU64 ? BPF_ALU64 : BPF_ALU) | BPF_NEG | BPF_K, x.dst, 0, 0, 0) : MOV32_IMM(x.dst, 0)];
    } else if (isDivModReg(x)) {
      patch = divModGuard(x);
    } else if (isMayGoto(x)) {
      const cnt = -v.stackDepth[fi]! - 16;
      patch = [
        LDX_MEM_DW(BPF_REG_AX, 10, cnt), JMP_IMM(BPF_JEQ, BPF_REG_AX, 0, x.off >= 0 ? x.off + 5 : x.off - 1), RAW(BPF_ALU64 | BPF_SUB | BPF_K, BPF_REG_AX, 0, 0, 1),
        JMP_IMM(BPF_JNE, BPF_REG_AX, 0, 2), MOV64_IMM(BPF_REG_AX, cnt), EMIT_CALL_TIMED_MAY_GOTO(), STX_MEM_DW(10, BPF_REG_AX, cnt),
      ];
    }
    if (patch === undefined) continue;
    pt.patch(i, patch);
    i += patch.length - 1;
  }
  // Each function with a may_goto starts with the count and the timestamp (2 stores before its first instruction).
  p.funcs.forEach((_, f) => {
    if ((v.stackExtra[f] ?? 0) === 0) return;
    const start = pt.starts[f]!, depth = v.stackDepth[f]! + v.stackExtra[f]!;
    pt.patch(start, [ST_MEM_DW(10, -depth, BPF_MAX_TIMED_LOOPS), ST_MEM_DW(10, -depth + 8, 0), pt.insns[start]!]);
    pt.adjustJmpOff(start, 2);
  });
  // bpf_opt_subreg_zext_lo32_rnd_hi32() (fixups.c, 7.2), after bpf_do_misc_fixups(): a 32-bit
  // cmpxchg whose R0 is read as 64 bits gets BPF_ZEXT_REG(R0) after it, on x86-64 too
  // (bpf_jit_needs_zext() is false there, but is_cmpxchg_insn() is a case of its own): BPF's
  // cmpxchg always loads R0, zero-extended; x86's writes eax only when the comparison fails.
  for (const orig of v.zextCmpxchg) {
    const i = pt.at[orig]!;
    pt.patch(i, [pt.insns[i]!, ZEXT_REG(0)]);
  }
  return { program: pt.program(p), at: pt.at };
}

const isDivModReg = (x: BpfInsn) => (BPF_CLASS(x.code) === BPF_ALU || BPF_CLASS(x.code) === BPF_ALU64) && (BPF_OP(x.code) === BPF_DIV || BPF_OP(x.code) === BPF_MOD) && (x.code & BPF_X) !== 0;
const isSignedByMinusOne = (x: BpfInsn) => (BPF_CLASS(x.code) === BPF_ALU || BPF_CLASS(x.code) === BPF_ALU64) && (BPF_OP(x.code) === BPF_DIV || BPF_OP(x.code) === BPF_MOD) && (x.code & BPF_X) === 0 && x.off === 1 && x.imm === -1;
