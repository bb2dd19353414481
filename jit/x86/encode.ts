// The byte-level helpers of arch/x86/net/bpf_jit_comp.c (7.2), over x86 register numbers
// (rax 0 … r15 15) instead of the JIT's BPF-register table: EMIT*, add_1mod()/add_2mod() (REX.B,
// REX.R), add_1reg()/add_2reg() (ModRM register fields), maybe_emit_mod()/maybe_emit_1mod(),
// emit_insn_suffix() and is_imm8()/is_imm8_jmp_offset(). The JIT's emitters (emit.ts) are
// written with them, byte for byte as the kernel writes its own; iced-x86 is the test-time
// cross-check (test/unit/jit/encode.test.ts), not the encoder.

/** The 64-bit registers the JIT uses. */
export type X86Reg = "rax" | "rcx" | "rdx" | "rbx" | "rsp" | "rbp" | "rsi" | "rdi" | "r8" | "r9" | "r10" | "r11" | "r12" | "r13" | "r14" | "r15";

/** Register numbers in encoding order. */
export const REG_NUM: Readonly<Record<X86Reg, number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7, r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};
export const REG_NAMES: readonly X86Reg[] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/** is_ereg(): r8..r15 need a REX bit. */
export const isEreg = (r: number): boolean => r >= 8;
/** is_ereg_8l(): their low byte needs a REX prefix (spl, bpl, sil, dil, r8b..r15b). */
export const isEreg8l = (r: number): boolean => r >= 4;
/** add_1mod(): REX.B for an extended register in ModRM.rm. */
export const add1mod = (byte: number, r: number): number => (isEreg(r) ? byte | 1 : byte);
/** add_2mod(): REX.B for r1 (ModRM.rm), REX.R for r2 (ModRM.reg). */
export const add2mod = (byte: number, r1: number, r2: number): number => byte | (isEreg(r1) ? 1 : 0) | (isEreg(r2) ? 4 : 0);
/** add_1reg(): the register in ModRM.rm. */
export const add1reg = (byte: number, r: number): number => byte + (r & 7);
/** add_2reg(): dst in ModRM.rm, src in ModRM.reg. */
export const add2reg = (byte: number, dst: number, src: number): number => byte + (dst & 7) + ((src & 7) << 3);

/** is_axreg(): BPF_REG_0, i.e. rax (the ALU short forms). */
export const isAxReg = (r: number): boolean => r === 0;
/** is_imm8(). */
export const isImm8 = (v: number): boolean => v <= 127 && v >= -128;
/** is_imm8_jmp_offset(): a rel8 jump only up to +123, so the passes converge (the kernel's comment). */
export const isImm8JmpOffset = (v: number): boolean => v <= 123 && v >= -128;
/** is_simm32(). */
export const isSimm32 = (v: bigint): boolean => v === BigInt.asIntN(32, v);
/** is_uimm32(). */
export const isUimm32 = (v: bigint): boolean => v === BigInt.asUintN(32, v);

/** x86_nops[] of x86-64 (asm/nops.h, 7.2): the nop of each length up to ASM_NOP_MAX. */
export const X86_NOPS: readonly (readonly number[])[] = [
  [],
  [0x90],
  [0x66, 0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
  [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];
export const ASM_NOP_MAX = 11;

/** A growing byte buffer: the kernel's `prog` pointer. */
export class Code {
  private buf = new Uint8Array(256);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  /** EMIT1..EMIT4: bytes in order. */
  emit(...bytes: number[]): void {
    this.room(bytes.length);
    for (const b of bytes) this.buf[this.length++] = b & 0xff;
  }

  /** EMIT(v, 4): a 32-bit little-endian value (signed or unsigned). */
  u32(v: number): void {
    this.room(4);
    const u = v >>> 0;
    this.buf[this.length++] = u & 0xff;
    this.buf[this.length++] = (u >>> 8) & 0xff;
    this.buf[this.length++] = (u >>> 16) & 0xff;
    this.buf[this.length++] = u >>> 24;
  }

  /** EMIT(v, 2). */
  u16(v: number): void {
    this.emit(v & 0xff, (v >>> 8) & 0xff);
  }

  /** emit_nops(): the largest nops first. */
  nops(len: number): void {
    while (len > 0) {
      const n = Math.min(len, ASM_NOP_MAX);
      this.emit(...X86_NOPS[n]!);
      len -= n;
    }
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** maybe_emit_mod(): REX.W for 64-bit operands, or a REX for extended registers. */
export function maybeEmitMod(c: Code, dst: number, src: number, is64: boolean): void {
  if (is64) c.emit(add2mod(0x48, dst, src));
  else if (isEreg(dst) || isEreg(src)) c.emit(add2mod(0x40, dst, src));
}

/** maybe_emit_1mod(). */
export function maybeEmit1mod(c: Code, reg: number, is64: boolean): void {
  if (is64) c.emit(add1mod(0x48, reg));
  else if (isEreg(reg)) c.emit(add1mod(0x40, reg));
}

/**
 * emit_insn_suffix(): ModRM (and SIB) for [ptr + off] with `val` in ModRM.reg: a disp8 whenever
 * the offset fits (0 too), else a disp32. The kernel's BPF registers never map to rsp or r12,
 * whose ModRM.rm value 4 means "a SIB follows"; a strategy's own code may use them, so the
 * SIB byte (base only, no index) is emitted for those.
 */
export function emitInsnSuffix(c: Code, ptr: number, val: number, off: number): void {
  const sib = (ptr & 7) === 4;
  if (isImm8(off)) {
    c.emit(add2reg(0x40, ptr, val));
    if (sib) c.emit(0x24);
    c.emit(off);
  } else {
    c.emit(add2reg(0x80, ptr, val));
    if (sib) c.emit(0x24);
    c.u32(off);
  }
}
