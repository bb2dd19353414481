// The checks of each instruction on its own, before any control or data flow, in the order
// bpf_check() (7.2) makes them: check_and_resolve_insns() (verifier.c:18328) pairs ld_imm64
// halves, refuses opcodes bpf_opcode_in_insntable() does not know (core.c:1820) and checks the
// reserved fields (check_insn_fields(), verifier.c:18268, with check_alu_fields() :18136 and
// check_jmp_fields() :18210). Then the encodings 7.2 accepts but this project does not model
// (no maps, no arena, no skb, no module kfuncs): each says `unsupported opcode 0x.. (BPF_…) at insn N`.
import { opcodeInInsnTable, opcodeName } from "./insntable.ts";
import type { BpfInsn } from "./instruction.ts";
import type { Finding } from "./issues.ts";
import {
  BPF_ABS, BPF_ADDR_SPACE_CAST, BPF_ALU, BPF_ALU64, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_DIV, BPF_DW, BPF_END, BPF_EXIT,
  BPF_IND, BPF_JA, BPF_JCOND, BPF_JMP, BPF_JMP32, BPF_LD, BPF_LD_IMM64, BPF_LDX, BPF_MAY_GOTO, BPF_MEM,
  BPF_MEMSX, BPF_MOD, BPF_MODE, BPF_MOV, BPF_NEG, BPF_OP, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC,
  BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE,
  BPF_SIZE, BPF_SRC, BPF_ST, BPF_STX, BPF_TO_LE, BPF_X,
} from "./opcodes.ts";

const hex2 = (v: number) => v.toString(16).padStart(2, "0");
const reserved = (what: string): Finding => ({ rule: "reserved-fields", message: `${what} uses reserved fields` });
/** The project's refusal of an encoding 7.2 accepts: opcode, name, where, why. */
const unsupported = (x: BpfInsn, rel: number, why: string, variant = ""): Finding =>
  ({ rule: "unsupported", message: `unsupported opcode 0x${hex2(x.code)} (${opcodeName(x.code)}${variant}) at insn ${rel}: ${why}` });

/** check_alu_fields() (verifier.c:18136). */
function aluFields(x: BpfInsn): Finding | undefined {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
  switch (op) {
    case BPF_NEG:
      return isX || x.src !== 0 || x.off !== 0 || x.imm !== 0 ? reserved("BPF_NEG") : undefined;
    case BPF_END:
      return x.src !== 0 || x.off !== 0 || (x.imm !== 16 && x.imm !== 32 && x.imm !== 64) || (cls === BPF_ALU64 && BPF_SRC(x.code) !== BPF_TO_LE)
        ? reserved("BPF_END") : undefined;
    case BPF_MOV:
      if (!isX) return x.src !== 0 || x.off !== 0 ? reserved("BPF_MOV") : undefined;
      if (cls === BPF_ALU) return (x.off !== 0 && x.off !== 8 && x.off !== 16) || x.imm !== 0 ? reserved("BPF_MOV") : undefined;
      if (x.off === BPF_ADDR_SPACE_CAST) {
        return x.imm !== 1 && x.imm !== 1 << 16 ? { rule: "reserved-fields", message: "addr_space_cast insn can only convert between address space 1 and 0" } : undefined;
      }
      return (x.off !== 0 && x.off !== 8 && x.off !== 16 && x.off !== 32) || x.imm !== 0 ? reserved("BPF_MOV") : undefined;
    default: {
      // ADD SUB AND OR XOR LSH RSH ARSH MUL DIV MOD: off 1 only for signed DIV/MOD
      const badOff = (x.off !== 0 && x.off !== 1) || (x.off === 1 && op !== BPF_MOD && op !== BPF_DIV);
      return (isX ? x.imm !== 0 : x.src !== 0) || badOff ? reserved("BPF_ALU") : undefined;
    }
  }
}

/** check_jmp_fields() (verifier.c:18210). */
function jmpFields(x: BpfInsn): Finding | undefined {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
  switch (op) {
    case BPF_CALL:
      return isX || (x.src !== BPF_PSEUDO_KFUNC_CALL && x.off !== 0) || (x.src !== 0 && x.src !== BPF_PSEUDO_CALL && x.src !== BPF_PSEUDO_KFUNC_CALL) || x.dst !== 0 || cls === BPF_JMP32
        ? reserved("BPF_CALL") : undefined;
    case BPF_JA:
      if (isX) return x.src !== 0 || x.imm !== 0 || x.off !== 0 ? reserved("BPF_JA|BPF_X") : undefined;
      return x.src !== 0 || x.dst !== 0 || (cls === BPF_JMP && x.imm !== 0) || (cls === BPF_JMP32 && x.off !== 0) ? reserved("BPF_JA") : undefined;
    case BPF_EXIT: // off is not checked (7.2, as before)
      return isX || x.imm !== 0 || x.src !== 0 || x.dst !== 0 || cls === BPF_JMP32 ? reserved("BPF_EXIT") : undefined;
    case BPF_JCOND:
      return x.code !== (BPF_JMP | BPF_JCOND) || x.src !== BPF_MAY_GOTO || x.dst !== 0 || x.imm !== 0
        ? { rule: "reserved-fields", message: `invalid may_goto imm ${x.imm}` } : undefined;
    default:
      return (isX ? x.imm !== 0 : x.src !== 0) ? reserved("BPF_JMP/JMP32") : undefined;
  }
}

/** check_insn_fields() (verifier.c:18268), for an opcode in the table. */
function insnFields(x: BpfInsn): Finding | undefined {
  switch (BPF_CLASS(x.code)) {
    case BPF_ALU: case BPF_ALU64: return aluFields(x);
    case BPF_LDX: return (BPF_MODE(x.code) !== BPF_MEM && BPF_MODE(x.code) !== BPF_MEMSX) || x.imm !== 0 ? reserved("BPF_LDX") : undefined;
    case BPF_STX:
      if (BPF_MODE(x.code) === BPF_ATOMIC) return undefined; // check_atomic() checks these when it runs
      return BPF_MODE(x.code) !== BPF_MEM || x.imm !== 0 ? reserved("BPF_STX") : undefined;
    case BPF_ST: return BPF_MODE(x.code) !== BPF_MEM || x.src !== 0 ? reserved("BPF_ST") : undefined;
    case BPF_JMP: case BPF_JMP32: return jmpFields(x);
    default: { // BPF_LD (ld_imm64 is checked before)
      const mode = BPF_MODE(x.code);
      if ((mode === BPF_ABS || mode === BPF_IND) && (x.dst !== 0 || x.off !== 0 || BPF_SIZE(x.code) === BPF_DW || (mode === BPF_ABS && x.src !== 0))) {
        return reserved("BPF_LD_[ABS|IND]");
      }
      return undefined;
    }
  }
}

/** Valid 7.2 encodings outside this project's model. */
function unsupportedEncoding(x: BpfInsn, rel: number): Finding | undefined {
  const cls = BPF_CLASS(x.code);
  if (cls === BPF_LD) {
    // check_ld_abs() (verifier.c:16518): may_access_skb() is false for every type this project has
    return unsupported(x, rel, "BPF_LD_[ABS|IND] instructions not allowed for this program type");
  }
  if (x.code === (BPF_JMP | BPF_JA | BPF_X)) {
    return unsupported(x, rel, "gotox jumps through a BPF_MAP_TYPE_INSN_ARRAY; the synthetic kernel has no maps");
  }
  if (x.code === (BPF_ALU64 | BPF_MOV | BPF_X) && x.off === BPF_ADDR_SPACE_CAST) {
    // check_alu_op() (verifier.c:15132)
    return unsupported(x, rel, "addr_space_cast insn can only be used in a program that has an associated arena", ", off 1: addr_space_cast");
  }
  if (x.code === (BPF_JMP | BPF_CALL) && x.src === BPF_PSEUDO_KFUNC_CALL && x.off !== 0) {
    return unsupported(x, rel, `a kfunc from module BTF (off ${x.off}); the synthetic kernel's kfuncs are in vmlinux BTF (off 0)`, ", BPF_PSEUDO_KFUNC_CALL");
  }
  return undefined;
}

const LD_IMM64_PSEUDO: Record<number, [string, string]> = {
  [BPF_PSEUDO_MAP_FD]: ["BPF_PSEUDO_MAP_FD", "the synthetic kernel has no maps"],
  [BPF_PSEUDO_MAP_IDX]: ["BPF_PSEUDO_MAP_IDX", "the synthetic kernel has no maps"],
  [BPF_PSEUDO_MAP_VALUE]: ["BPF_PSEUDO_MAP_VALUE", "the synthetic kernel has no maps"],
  [BPF_PSEUDO_MAP_IDX_VALUE]: ["BPF_PSEUDO_MAP_IDX_VALUE", "the synthetic kernel has no maps"],
  [BPF_PSEUDO_BTF_ID]: ["BPF_PSEUDO_BTF_ID", "the synthetic kernel exports no variables through BTF"],
  [BPF_PSEUDO_FUNC]: ["BPF_PSEUDO_FUNC", "no helper or kfunc of the synthetic kernel takes a callback"],
};

/**
 * The checks of insns[i] alone (i in a function ending at `end`; `rel` is i within the function).
 * For an ld_imm64, insns[i + 1] is its second half, which the caller skips.
 */
export function checkInsn(insns: readonly BpfInsn[], i: number, end: number, rel: number): Finding | undefined {
  const x = insns[i]!;
  if (x.code === BPF_LD_IMM64) { // check_and_resolve_insns() (verifier.c:18348-18398)
    const y = i + 1 < end ? insns[i + 1]! : undefined;
    if (y === undefined || y.code !== 0 || y.dst !== 0 || y.src !== 0 || y.off !== 0) return { rule: "ld-imm64", message: "invalid bpf_ld_imm64 insn" };
    if (x.off !== 0) return reserved("BPF_LD_IMM64");
    if (x.src === 0) return undefined;
    const pseudo = LD_IMM64_PSEUDO[x.src];
    if (pseudo === undefined || ((x.src === BPF_PSEUDO_MAP_FD || x.src === BPF_PSEUDO_MAP_IDX) && y.imm !== 0)) {
      return { rule: "ld-imm64", message: "unrecognized bpf_ld_imm64 insn" };
    }
    return unsupported(x, rel, pseudo[1], `, src_reg ${pseudo[0]}`);
  }
  if (!opcodeInInsnTable(x.code)) return { rule: "opcode", message: `unknown opcode ${hex2(x.code)}` }; // verifier.c:18460
  return insnFields(x) ?? unsupportedEncoding(x, rel);
}

/** Is `x` a conditional or unconditional jump that has a target (not a call, exit or gotox)? */
export function jumpOffset(x: BpfInsn): number | undefined {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
  if (cls !== BPF_JMP && cls !== BPF_JMP32) return undefined;
  if (op === BPF_CALL || op === BPF_EXIT) return undefined;
  if (op === BPF_JA && BPF_SRC(x.code) === BPF_X) return undefined;
  return x.code === (BPF_JMP32 | BPF_JA) ? x.imm : x.off; // bpf_jmp_offset(): gotol's is in imm
}

/** Does control never fall through `x` (exit, goto, gotol)? */
export const endsBlock = (x: BpfInsn): boolean =>
  x.code === (BPF_JMP | BPF_EXIT) || x.code === (BPF_JMP | BPF_JA) || x.code === (BPF_JMP32 | BPF_JA);

/** Is it a conditional jump on a register (not may_goto)? */
export const isCondJump = (x: BpfInsn): boolean => {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
  return (cls === BPF_JMP || cls === BPF_JMP32) && op !== BPF_JA && op !== BPF_CALL && op !== BPF_EXIT && op !== BPF_JCOND;
};

export const isMayGoto = (x: BpfInsn): boolean => x.code === (BPF_JMP | BPF_JCOND) && x.src === BPF_MAY_GOTO;
