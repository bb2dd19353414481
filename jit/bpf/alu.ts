// ALU instructions (include/linux/filter.h BPF_ALU64_*, BPF_ALU32_*, BPF_MOVSX*, BPF_ENDIAN,
// BPF_BSWAP): `alu64.add.imm(R1, 22)` is `r1 += 22`, `alu32.sdiv.reg(R1, R2)` is `w1 s/= w2`.
// Signed division and modulo are BPF_DIV/BPF_MOD with off 1; sign-extending moves are BPF_MOV|BPF_X
// with off 8, 16 or 32 (32 only in ALU64); byte swaps are BPF_END.
import { insn, InsnError, item, type Item } from "./instruction.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_DIV, BPF_END, BPF_K, BPF_LSH, BPF_MOD, BPF_MOV, BPF_MUL,
  BPF_NEG, BPF_OR, BPF_RSH, BPF_SUB, BPF_TO_BE, BPF_TO_LE, BPF_X, BPF_XOR, type Reg,
} from "./opcodes.ts";

export type AluFamily = { imm(dst: Reg, imm: number): Item; reg(dst: Reg, src: Reg): Item };

function aluOp(cls: number, op: number, off = 0): AluFamily {
  return {
    imm: (dst, imm) => item(insn(cls | op | BPF_K, dst, 0, off, imm)),
    reg: (dst, src) => item(insn(cls | op | BPF_X, dst, src, off, 0)),
  };
}

function aluClass<W extends number>(cls: number, movsxWidths: readonly W[]) {
  return {
    mov: aluOp(cls, BPF_MOV), add: aluOp(cls, BPF_ADD), sub: aluOp(cls, BPF_SUB), mul: aluOp(cls, BPF_MUL),
    div: aluOp(cls, BPF_DIV), mod: aluOp(cls, BPF_MOD),
    /** Signed division and modulo (off 1): `r1 s/= r2`, `r1 s%= r2`. */
    sdiv: aluOp(cls, BPF_DIV, 1), smod: aluOp(cls, BPF_MOD, 1),
    and: aluOp(cls, BPF_AND), or: aluOp(cls, BPF_OR), xor: aluOp(cls, BPF_XOR),
    lsh: aluOp(cls, BPF_LSH), rsh: aluOp(cls, BPF_RSH), arsh: aluOp(cls, BPF_ARSH),
    neg: (dst: Reg) => item(insn(cls | BPF_NEG | BPF_K, dst, 0, 0, 0)),
    /** `r1 = (s8)r2`: the low `bits` of src, sign-extended (BPF_MOVSX64_REG / BPF_MOVSX32_REG). */
    movsx: (dst: Reg, src: Reg, bits: W) => {
      if (!movsxWidths.includes(bits)) throw new InsnError(`${cls === BPF_ALU64 ? "alu64" : "alu32"}.movsx: ${bits} is not a width of this class (${movsxWidths.join(", ")})`);
      return item(insn(cls | BPF_MOV | BPF_X, dst, src, bits, 0));
    },
  };
}

/** 64-bit ALU (`r1 += 22`). */
export const alu64 = aluClass(BPF_ALU64, [8, 16, 32] as const);
/** 32-bit ALU (`w1 += 22`; the upper half of the destination is zeroed). */
export const alu32 = aluClass(BPF_ALU, [8, 16] as const);

export type SwapWidth = 16 | 32 | 64;
function swapWidth(bits: number, what: string): SwapWidth {
  if (bits !== 16 && bits !== 32 && bits !== 64) throw new InsnError(`${what}: width ${bits} is not 16, 32 or 64`);
  return bits;
}

/** Byte order conversions of the low `bits` of dst, zero-extended (BPF_ENDIAN: `r1 = be16 r1`). */
export const end = {
  toLe: (dst: Reg, bits: SwapWidth): Item => item(insn(BPF_ALU | BPF_END | BPF_TO_LE, dst, 0, 0, swapWidth(bits, "end.toLe"))),
  toBe: (dst: Reg, bits: SwapWidth): Item => item(insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, swapWidth(bits, "end.toBe"))),
};

/** An unconditional byte swap of the low `bits` of dst, zero-extended (BPF_BSWAP: `r1 = bswap64 r1`). */
export const bswap = (dst: Reg, bits: SwapWidth): Item => item(insn(BPF_ALU64 | BPF_END | BPF_TO_LE, dst, 0, 0, swapWidth(bits, "bswap")));
