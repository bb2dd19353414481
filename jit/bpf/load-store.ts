// Loads and stores (include/linux/filter.h BPF_LDX_MEM, BPF_LDX_MEMSX, BPF_STX_MEM, BPF_ST_MEM,
// BPF_LD_IMM64): `ldx(BPF_DW, R0, R10, -8)` is `r0 = *(u64 *)(r10 -8)`.
import { insn, InsnError, item, type Item, type Size } from "./instruction.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_LD_IMM64, BPF_LDX, BPF_MEM, BPF_MEMSX, BPF_ST, BPF_STX, BPF_W, type Reg } from "./opcodes.ts";

/** `dst = *(size *)(src + off)`, zero-extended. */
export const ldx = (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0));

/** `dst = *(s8/s16/s32 *)(src + off)`, sign-extended to 64 bits (BPF_MEMSX; there is no 8-byte form). */
export const ldxsx = (size: typeof BPF_B | typeof BPF_H | typeof BPF_W, dst: Reg, src: Reg, off: number): Item => {
  if ((size as number) === BPF_DW) throw new InsnError("ldxsx: BPF_MEMSX has no BPF_DW form (BPF_LDX|BPF_MEMSX|BPF_DW is not an opcode)");
  return item(insn(BPF_LDX | BPF_MEMSX | size, dst, src, off, 0));
};

/** `*(size *)(dst + off) = src` */
export const stx = (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_STX | BPF_MEM | size, dst, src, off, 0));
/** `*(size *)(dst + off) = imm` */
export const st = (size: Size, dst: Reg, off: number, imm: number): Item => item(insn(BPF_ST | BPF_MEM | size, dst, 0, off, imm));

/**
 * `dst = value` for any 64-bit value: BPF_LD_IMM64, two instructions (the low half in the first's
 * imm, the high half in the second's, whose other fields are all 0). Spread it into a body:
 * `[...ld_imm64(R1, 0x1234_5678_9abc_def0n), ...]`. Negative values are taken modulo 2^64.
 */
export function ld_imm64(dst: Reg, value: bigint): readonly [Item, Item] {
  if (value < -(1n << 63n) || value >= 1n << 64n) throw new InsnError(`ld_imm64: ${value} does not fit in 64 bits`);
  const v = BigInt.asUintN(64, value);
  const lo = Number(BigInt.asIntN(32, v)), hi = Number(BigInt.asIntN(32, v >> 32n));
  return [item(insn(BPF_LD_IMM64, dst, 0, 0, lo)), item(insn(0, 0, 0, 0, hi))];
}
