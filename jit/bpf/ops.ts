// The value semantics of ALU instructions and conditional jumps, as a 7.2 kernel computes them:
// kernel/bpf/core.c ___bpf_prog_run (ALU, ALU64, JMP, JMP32 labels) on the program as
// kernel/bpf/fixups.c:1496 bpf_do_misc_fixups() leaves it, which is what makes division total:
//   - x / 0 = 0 and x % 0 = x (fixups.c:1578 "Make divide-by-zero ... exceptions impossible";
//     the 32-bit modulo by zero still zero-extends dst: the BPF_MOV32_REG(dst, dst) it adds);
//   - signed x / -1 = -x (wrapping: INT_MIN / -1 = INT_MIN) and signed x % -1 = 0
//     (fixups.c:1548 for an immediate -1, :1588 for a register);
//   - otherwise sdiv truncates toward zero and smod takes the dividend's sign
//     (div64_s64, and the abs_s32() forms of ALU_DIV_X/ALU_MOD_X).
// Values are u64 BigInts. Shared by the reference interpreter and the validator's constants.
import type { BpfInsn } from "./instruction.ts";
import { BPF_ADD as BPF_ADD__, BPF_ALU64 as BPF_ALU64__, BPF_AND as BPF_AND__, BPF_ARSH as BPF_ARSH__, BPF_CLASS as BPF_CLASS__, BPF_DIV as BPF_DIV__, BPF_END as BPF_END__, BPF_JEQ as BPF_JEQ__, BPF_JGE as BPF_JGE__, BPF_JGT as BPF_JGT__, BPF_JLE as BPF_JLE__, BPF_JLT as BPF_JLT__, BPF_JMP as BPF_JMP__, BPF_JNE as BPF_JNE__, BPF_JSET as BPF_JSET__, BPF_JSGE as BPF_JSGE__, BPF_JSGT as BPF_JSGT__, BPF_JSLE as BPF_JSLE__, BPF_JSLT as BPF_JSLT__, BPF_LSH as BPF_LSH__, BPF_MOD as BPF_MOD__, BPF_MOV as BPF_MOV__, BPF_MUL as BPF_MUL__, BPF_NEG as BPF_NEG__, BPF_OP as BPF_OP__, BPF_OR as BPF_OR__, BPF_RSH as BPF_RSH__, BPF_SRC as BPF_SRC__, BPF_SUB as BPF_SUB__, BPF_TO_BE as BPF_TO_BE__, BPF_X as BPF_X__, BPF_XOR as BPF_XOR__ } from "./opcodes.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the interpreter's per-instruction code would pay for at every use.
const BPF_ADD = BPF_ADD__, BPF_ALU64 = BPF_ALU64__, BPF_AND = BPF_AND__, BPF_ARSH = BPF_ARSH__, BPF_CLASS = BPF_CLASS__, BPF_DIV = BPF_DIV__, BPF_END = BPF_END__, BPF_JEQ = BPF_JEQ__, BPF_JGE = BPF_JGE__, BPF_JGT = BPF_JGT__, BPF_JLE = BPF_JLE__, BPF_JLT = BPF_JLT__, BPF_JMP = BPF_JMP__, BPF_JNE = BPF_JNE__, BPF_JSET = BPF_JSET__, BPF_JSGE = BPF_JSGE__, BPF_JSGT = BPF_JSGT__, BPF_JSLE = BPF_JSLE__, BPF_JSLT = BPF_JSLT__, BPF_LSH = BPF_LSH__, BPF_MOD = BPF_MOD__, BPF_MOV = BPF_MOV__, BPF_MUL = BPF_MUL__, BPF_NEG = BPF_NEG__, BPF_OP = BPF_OP__, BPF_OR = BPF_OR__, BPF_RSH = BPF_RSH__, BPF_SRC = BPF_SRC__, BPF_SUB = BPF_SUB__, BPF_TO_BE = BPF_TO_BE__, BPF_X = BPF_X__, BPF_XOR = BPF_XOR__;

export const M64 = (1n << 64n) - 1n, M32 = 0xffffffffn;

export class OpError extends Error {
  override name = "OpError";
}

/** The low `bytes` bytes of v in reverse order (__swab16/32/64). */
export function byteSwap(v: bigint, bytes: number): bigint {
  let r = 0n;
  for (let i = 0; i < bytes; i++) r = (r << 8n) | ((v >> BigInt(8 * i)) & 0xffn);
  return r;
}

/** IMM as the interpreter reads it: the s32 sign-extended to u64. */
export const immU64 = (x: BpfInsn): bigint => BigInt.asUintN(64, BigInt(x.imm));

/**
 * The destination after ALU instruction `x`, given the destination's value before and the source
 * operand (the source register for BPF_X, immU64(x) for BPF_K). Both u64.
 */
export function aluResult(x: BpfInsn, dst: bigint, src: bigint): bigint {
  const is64 = BPF_CLASS(x.code) === BPF_ALU64, op = BPF_OP(x.code);
  const bits = is64 ? 64 : 32;
  const mask = is64 ? M64 : M32;
  // (no local closure here: under tsx every named closure costs a __name() call, and this runs per instruction)
  if (op === BPF_END) {
    // ALU_END_TO_BE/_TO_LE, ALU64_END_TO_LE: on the whole register, whatever the class.
    const n = x.imm;
    const low = dst & ((1n << BigInt(n)) - 1n);
    const swap = is64 || BPF_SRC(x.code) === BPF_TO_BE; // cpu_to_le on x86 is the identity
    return swap ? byteSwap(low, n / 8) : low;
  }
  if (op === BPF_MOV) {
    if (BPF_SRC(x.code) === BPF_X && x.off !== 0) {
      if (x.off !== 8 && x.off !== 16 && x.off !== 32) throw new OpError(`BPF_MOV with off ${x.off} has no semantics here`);
      return BigInt.asUintN(bits, BigInt.asIntN(x.off, src)); // (s8/s16/s32) SRC, then (u32) in ALU32
    }
    return src & mask;
  }
  const a = dst & mask, b = src & mask;
  // (the signed forms only where an op is signed: each BigInt.asIntN allocates, per instruction)
  switch (op) {
    case BPF_ADD: return BigInt.asUintN(bits, a + b);
    case BPF_SUB: return BigInt.asUintN(bits, a - b);
    case BPF_MUL: return BigInt.asUintN(bits, a * b);
    case BPF_AND: return a & b;
    case BPF_OR: return a | b;
    case BPF_XOR: return a ^ b;
    case BPF_LSH: return BigInt.asUintN(bits, a << (b & BigInt(bits - 1)));
    case BPF_RSH: return a >> (b & BigInt(bits - 1));
    case BPF_ARSH: return BigInt.asUintN(bits, BigInt.asIntN(bits, a) >> (b & BigInt(bits - 1)));
    case BPF_NEG: return BigInt.asUintN(bits, -a);
    case BPF_DIV: {
      if (x.off !== 1) return b === 0n ? 0n : a / b;
      const sa = BigInt.asIntN(bits, a), sb = BigInt.asIntN(bits, b);
      return sb === 0n ? 0n : sb === -1n ? BigInt.asUintN(bits, -sa) : BigInt.asUintN(bits, sa / sb);
    }
    case BPF_MOD: {
      if (x.off !== 1) return b === 0n ? a : a % b;
      const sa = BigInt.asIntN(bits, a), sb = BigInt.asIntN(bits, b);
      return sb === 0n ? a : sb === -1n ? 0n : BigInt.asUintN(bits, sa % sb);
    }
  }
  throw new OpError(`ALU op 0x${op.toString(16)} has no semantics`);
}

/** Whether conditional jump `x` is taken, given dst and the source operand (u64; JMP32 looks at the low halves). */
export function jumpTaken(x: BpfInsn, dst: bigint, src: bigint): boolean {
  const is64 = BPF_CLASS(x.code) === BPF_JMP;
  const bits = is64 ? 64 : 32;
  const mask = is64 ? M64 : M32;
  const a = dst & mask, b = src & mask;
  switch (BPF_OP(x.code)) {
    case BPF_JEQ: return a === b;
    case BPF_JNE: return a !== b;
    case BPF_JGT: return a > b;
    case BPF_JGE: return a >= b;
    case BPF_JLT: return a < b;
    case BPF_JLE: return a <= b;
    case BPF_JSGT: return BigInt.asIntN(bits, a) > BigInt.asIntN(bits, b);
    case BPF_JSGE: return BigInt.asIntN(bits, a) >= BigInt.asIntN(bits, b);
    case BPF_JSLT: return BigInt.asIntN(bits, a) < BigInt.asIntN(bits, b);
    case BPF_JSLE: return BigInt.asIntN(bits, a) <= BigInt.asIntN(bits, b);
    case BPF_JSET: return (a & b) !== 0n;
  }
  throw new OpError(`jump op 0x${BPF_OP(x.code).toString(16)} is not a condition`);
}
