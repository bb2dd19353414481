// Jumps, calls and exit (include/linux/filter.h BPF_JMP_*, BPF_JMP32_*, BPF_JMP_A, BPF_JMP32_A,
// BPF_EMIT_CALL, BPF_CALL_REL, BPF_EXIT_INSN). Targets are labels, callees function names; both
// are resolved when the program is put together (program.ts). A label may come before the jump
// (a backward jump): the validator accepts the loops it can bound (validate.ts).
import { insn, item, type Item } from "./instruction.ts";
import {
  BPF_CALL, BPF_EXIT, BPF_HELPER_CALL, BPF_JA, BPF_JCOND, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP,
  BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_K, BPF_MAY_GOTO, BPF_PSEUDO_CALL,
  BPF_PSEUDO_KFUNC_CALL, BPF_X, type Reg,
} from "./opcodes.ts";

export type JumpFamily = { imm(dst: Reg, imm: number, target: string): Item; reg(dst: Reg, src: Reg, target: string): Item };

function jumpOp(cls: number, op: number): JumpFamily {
  return {
    imm: (dst, imm, target) => item(insn(cls | op | BPF_K, dst, 0, 0, imm), { jumpTo: target }),
    reg: (dst, src, target) => item(insn(cls | op | BPF_X, dst, src, 0, 0), { jumpTo: target }),
  };
}
function jumpClass(cls: number) {
  return {
    jeq: jumpOp(cls, BPF_JEQ), jne: jumpOp(cls, BPF_JNE), jgt: jumpOp(cls, BPF_JGT), jge: jumpOp(cls, BPF_JGE),
    jlt: jumpOp(cls, BPF_JLT), jle: jumpOp(cls, BPF_JLE), jsgt: jumpOp(cls, BPF_JSGT), jsge: jumpOp(cls, BPF_JSGE),
    jslt: jumpOp(cls, BPF_JSLT), jsle: jumpOp(cls, BPF_JSLE), jset: jumpOp(cls, BPF_JSET),
  };
}
/** Conditional jumps on 64-bit values, plus `ja` (`goto pc+off`, a 16-bit offset). */
export const jmp = { ...jumpClass(BPF_JMP), ja: (target: string): Item => item(insn(BPF_JMP | BPF_JA, 0, 0, 0, 0), { jumpTo: target }) };
/** Conditional jumps on the low 32 bits (`if w1 > w2 goto pc+3`). */
export const jmp32 = jumpClass(BPF_JMP32);

/** `gotol pc+imm`: BPF_JMP32|BPF_JA, the unconditional jump with a 32-bit offset in imm (BPF_JMP32_A). */
export const gotol = (target: string): Item => item(insn(BPF_JMP32 | BPF_JA, 0, 0, 0, 0), { jumpTo: target });

/**
 * `may_goto pc+off`: falls through while the program's loop budget lasts, jumps once it is spent
 * (BPF_JMP|BPF_JCOND, src_reg BPF_MAY_GOTO). The verifier expands it (fixups.c:1771, x86-64's
 * timed form) into a count kept in 16 extra bytes of the function's stack and a call of
 * arch_bpf_timed_may_goto whenever the count runs out.
 */
export const may_goto = (target: string): Item => item(insn(BPF_JMP | BPF_JCOND, 0, BPF_MAY_GOTO, 0, 0), { jumpTo: target });

export const call = {
  /** A helper by its BPF_FUNC_* id (`call bpf_name#id`). */
  helper: (id: number): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_HELPER_CALL, 0, id)),
  /** A kfunc by its BTF id (`BPF_PSEUDO_KFUNC_CALL`). */
  kfunc: (btfId: number): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, btfId)),
  /** A BPF-to-BPF call of a function of the same program, by name (`BPF_PSEUDO_CALL`, imm resolved later). */
  subprog: (name: string): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, 0), { callee: name }),
};

export const exit = (): Item => item(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
