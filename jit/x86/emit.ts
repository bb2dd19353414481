// x86-64 emitters for the BPF JIT, one per idiom of arch/x86/net/bpf_jit_comp.c, each choosing
// the form (and so the bytes) upstream chooses, and recording its assembly as a note. They all
// append to one Assembler; jumps name labels and take the form the layout pass decided.
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler } from "../asm.ts";

/** The 64-bit registers the JIT uses. */
export type X86Reg = "rax" | "rcx" | "rdx" | "rbx" | "rsp" | "rbp" | "rsi" | "rdi" | "r8" | "r9" | "r10" | "r11" | "r12" | "r13" | "r14" | "r15";

const R64: Record<X86Reg, number> = {
  rax: R.RAX, rcx: R.RCX, rdx: R.RDX, rbx: R.RBX, rsp: R.RSP, rbp: R.RBP, rsi: R.RSI, rdi: R.RDI,
  r8: R.R8, r9: R.R9, r10: R.R10, r11: R.R11, r12: R.R12, r13: R.R13, r14: R.R14, r15: R.R15,
};
const R32: Record<X86Reg, number> = {
  rax: R.EAX, rcx: R.ECX, rdx: R.EDX, rbx: R.EBX, rsp: R.ESP, rbp: R.EBP, rsi: R.ESI, rdi: R.EDI,
  r8: R.R8D, r9: R.R9D, r10: R.R10D, r11: R.R11D, r12: R.R12D, r13: R.R13D, r14: R.R14D, r15: R.R15D,
};
const R16: Record<X86Reg, number> = {
  rax: R.AX, rcx: R.CX, rdx: R.DX, rbx: R.BX, rsp: R.SP, rbp: R.BP, rsi: R.SI, rdi: R.DI,
  r8: R.R8W, r9: R.R9W, r10: R.R10W, r11: R.R11W, r12: R.R12W, r13: R.R13W, r14: R.R14W, r15: R.R15W,
};
const R8L: Record<X86Reg, number> = {
  rax: R.AL, rcx: R.CL, rdx: R.DL, rbx: R.BL, rsp: R.SPL, rbp: R.BPL, rsi: R.SIL, rdi: R.DIL,
  r8: R.R8L, r9: R.R9L, r10: R.R10L, r11: R.R11L, r12: R.R12L, r13: R.R13L, r14: R.R14L, r15: R.R15L,
};

export type Width = 1 | 2 | 4 | 8;
const regOf = (r: X86Reg, w: Width) => (w === 8 ? R64 : w === 4 ? R32 : w === 2 ? R16 : R8L)[r];
const isImm8 = (v: number) => v >= -128 && v <= 127;

/** emit_insn_suffix(): [base + disp8] when the offset fits in a byte, else [base + disp32]; a disp8 even for 0. */
function mem(base: X86Reg, off: number): M {
  return M.createBaseDisplSize(R64[base], BigInt(off), isImm8(off) ? 1 : 8); // iced: 8 = disp32 in 64-bit addressing
}

export type AluOp = "add" | "sub" | "and" | "or" | "xor";
const ALU_RR: Record<AluOp, [number, number]> = {
  add: [Code.Add_rm64_r64, Code.Add_rm32_r32], sub: [Code.Sub_rm64_r64, Code.Sub_rm32_r32], and: [Code.And_rm64_r64, Code.And_rm32_r32],
  or: [Code.Or_rm64_r64, Code.Or_rm32_r32], xor: [Code.Xor_rm64_r64, Code.Xor_rm32_r32],
};
// [imm8 form, rax/eax short form, imm32 form] for 64 and 32 bits
const ALU_RI: Record<AluOp, [[number, number, number], [number, number, number]]> = {
  add: [[Code.Add_rm64_imm8, Code.Add_RAX_imm32, Code.Add_rm64_imm32], [Code.Add_rm32_imm8, Code.Add_EAX_imm32, Code.Add_rm32_imm32]],
  sub: [[Code.Sub_rm64_imm8, Code.Sub_RAX_imm32, Code.Sub_rm64_imm32], [Code.Sub_rm32_imm8, Code.Sub_EAX_imm32, Code.Sub_rm32_imm32]],
  and: [[Code.And_rm64_imm8, Code.And_RAX_imm32, Code.And_rm64_imm32], [Code.And_rm32_imm8, Code.And_EAX_imm32, Code.And_rm32_imm32]],
  or: [[Code.Or_rm64_imm8, Code.Or_RAX_imm32, Code.Or_rm64_imm32], [Code.Or_rm32_imm8, Code.Or_EAX_imm32, Code.Or_rm32_imm32]],
  xor: [[Code.Xor_rm64_imm8, Code.Xor_RAX_imm32, Code.Xor_rm64_imm32], [Code.Xor_rm32_imm8, Code.Xor_EAX_imm32, Code.Xor_rm32_imm32]],
};
export type ShiftOp = "shl" | "shr" | "sar";
const SHIFT: Record<ShiftOp, [[number, number, number], [number, number, number]]> = {
  shl: [[Code.Shl_rm64_1, Code.Shl_rm64_imm8, Code.Shl_rm64_CL], [Code.Shl_rm32_1, Code.Shl_rm32_imm8, Code.Shl_rm32_CL]],
  shr: [[Code.Shr_rm64_1, Code.Shr_rm64_imm8, Code.Shr_rm64_CL], [Code.Shr_rm32_1, Code.Shr_rm32_imm8, Code.Shr_rm32_CL]],
  sar: [[Code.Sar_rm64_1, Code.Sar_rm64_imm8, Code.Sar_rm64_CL], [Code.Sar_rm32_1, Code.Sar_rm32_imm8, Code.Sar_rm32_CL]],
};
/** BPF jump op → x86 condition, as upstream's jmp_cond switch. */
export type Cond = "e" | "ne" | "a" | "b" | "ae" | "be" | "g" | "l" | "ge" | "le";
const JCC: Record<Cond, [number, number]> = {
  e: [Code.Je_rel8_64, Code.Je_rel32_64], ne: [Code.Jne_rel8_64, Code.Jne_rel32_64], a: [Code.Ja_rel8_64, Code.Ja_rel32_64],
  b: [Code.Jb_rel8_64, Code.Jb_rel32_64], ae: [Code.Jae_rel8_64, Code.Jae_rel32_64], be: [Code.Jbe_rel8_64, Code.Jbe_rel32_64],
  g: [Code.Jg_rel8_64, Code.Jg_rel32_64], l: [Code.Jl_rel8_64, Code.Jl_rel32_64], ge: [Code.Jge_rel8_64, Code.Jge_rel32_64],
  le: [Code.Jle_rel8_64, Code.Jle_rel32_64],
};

const hex = (v: number | bigint) => (v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`);
const memText = (base: X86Reg, off: number) => `[${base}${off < 0 ? "-" : "+"}${hex(Math.abs(off))}]`;

/** The labels frameReady() and frameGone() put down (jit.ts reads them). */
export const FRAME_READY = "fp_start", FRAME_GONE = "fp_end";

export class Emitter {
  readonly asm: Assembler;
  /** How often the strategy marked the frame ready and gone in this function (jit.ts checks: once each). */
  readonly frameMarks = { ready: 0, gone: 0 };
  constructor(name: string) {
    this.asm = new Assembler(name);
  }

  label(name: string): this { this.asm.label(name); return this; }

  /**
   * The function's frame is complete here: from this instruction on, rbp is this function's
   * frame. do_jit() records `ksym.fp_start` at this point, right after emit_prologue()
   * (arch/x86/net/bpf_jit_comp.c, 7.2). Every strategy's prologue calls it once.
   */
  frameReady(): this {
    if (this.frameMarks.ready++ === 0) this.asm.label(FRAME_READY);
    return this;
  }

  /**
   * The function's frame is torn down here: from this instruction on, rbp is the caller's frame
   * again. do_jit() records `ksym.fp_end` at this point, right after the first exit's `leave`.
   * Every strategy's epilogue calls it once.
   */
  frameGone(): this {
    if (this.frameMarks.gone++ === 0) this.asm.label(FRAME_GONE);
    return this;
  }
  private e(make: () => I, note: string): this { this.asm.emit(make, note); return this; }

  // ---- prologue pieces (emit_prologue, emit_cfi) ----
  endbr64(): this { return this.e(() => I.create(Code.Endbr64), "endbr64"); }
  /** emit_nops(5): the patchable site bpf_arch_text_poke() rewrites (0f 1f 44 00 00). */
  nop5(): this { return this.e(() => I.createMem(Code.Nop_rm32, M.createBaseIndexScaleDisplSize(R.RAX, R.RAX, 1, 0n, 1)), "nop5"); }
  /** emit_nops(3): keeps the tail-call layout when no `xor rax,rax` is needed (0f 1f 00). */
  nop3(): this { return this.e(() => I.createMem(Code.Nop_rm32, M.createBase(R.RAX)), "nop3"); }
  push(r: X86Reg): this { return this.e(() => I.createReg(Code.Push_r64, R64[r]), `push ${r}`); }
  pop(r: X86Reg): this { return this.e(() => I.createReg(Code.Pop_r64, R64[r]), `pop ${r}`); }
  /** `mov rbp,rsp` in the 89 /r form gcc and the JIT use (48 89 e5). */
  movRR(dst: X86Reg, src: X86Reg): this { return this.e(() => I.createRegReg(Code.Mov_rm64_r64, R64[dst], R64[src]), `mov ${dst},${src}`); }
  /** `sub rsp, imm32`, always the 48 81 ec imm32 form (EMIT3_off32). */
  subRspImm32(v: number): this { return this.e(() => I.createRegI32(Code.Sub_rm64_imm32, R.RSP, v), `sub rsp,${hex(v)}`); }
  /** `lea dst,[base+off]`. */
  lea(dst: X86Reg, base: X86Reg, off: number): this {
    return this.e(() => I.createRegMem(Code.Lea_r64_m, R64[dst], mem(base, off)), `lea ${dst},${memText(base, off)}`);
  }
  leave(): this { return this.e(() => I.create(Code.Leaveq), "leave"); }
  ret(): this { return this.e(() => I.create(Code.Retnq), "ret"); }
  int3(): this { return this.e(() => I.create(Code.Int3), "int3"); }
  /** `add reg, gs:[addr]` (65 4c 03 0c 25 disp32 for r9). */
  addFromGs(dst: X86Reg, addr: number): this {
    return this.e(() => I.createRegMem(Code.Add_r64_rm64, R64[dst], M.new64(R.None, R.None, 1, BigInt(addr), 8, false, R.GS)), `add ${dst},gs:[${hex(addr)}]`);
  }

  // ---- moves (emit_mov_imm32, emit_mov_imm64, emit_mov_reg) ----
  /** emit_mov_imm32(): `mov r,simm32` if sign-propagating a negative; `xor r32,r32` for 0; else `mov r32,imm32`. */
  movImm32(signPropagate: boolean, dst: X86Reg, imm: number): this {
    if (signPropagate && imm < 0) return this.e(() => I.createRegI32(Code.Mov_rm64_imm32, R64[dst], imm), `mov ${dst},${hex(imm)}`);
    if (imm === 0) return this.e(() => I.createRegReg(Code.Xor_rm32_r32, R32[dst], R32[dst]), `xor ${dst}d,${dst}d`);
    return this.e(() => I.createRegU32(Code.Mov_r32_imm32, R32[dst], imm >>> 0), `mov ${dst}d,${hex(imm >>> 0)}`);
  }
  /** emit_mov_imm64(): the shortest of mov r32,imm32 / mov r,simm32 / movabs. */
  movImm64(dst: X86Reg, v: bigint): this {
    const u = BigInt.asUintN(64, v), s = BigInt.asIntN(64, v);
    if (u <= 0xffffffffn) return this.movImm32(false, dst, Number(u) | 0);
    if (s >= -0x80000000n && s <= 0x7fffffffn) return this.movImm32(true, dst, Number(s));
    return this.e(() => I.createRegU64(Code.Mov_r64_imm64, R64[dst], u), `movabs ${dst},${hex(u)}`);
  }
  /** emit_mov_reg(): a 64-bit move to itself is omitted; a 32-bit one zero-extends. */
  movReg(is64: boolean, dst: X86Reg, src: X86Reg): this {
    if (is64) return dst === src ? this : this.movRR(dst, src);
    return this.e(() => I.createRegReg(Code.Mov_rm32_r32, R32[dst], R32[src]), `mov ${dst}d,${src}d`);
  }

  // ---- ALU ----
  aluRR(op: AluOp, is64: boolean, dst: X86Reg, src: X86Reg): this {
    const w: Width = is64 ? 8 : 4;
    return this.e(() => I.createRegReg(ALU_RR[op][is64 ? 0 : 1], regOf(dst, w), regOf(src, w)), `${op} ${dst},${src}${is64 ? "" : " (32)"}`);
  }
  /** imm8 form when it fits, the short rax form for BPF_REG_0, else the imm32 form. */
  aluRI(op: AluOp, is64: boolean, dst: X86Reg, imm: number): this {
    const [i8, ax, i32] = ALU_RI[op][is64 ? 0 : 1];
    const w: Width = is64 ? 8 : 4;
    const code = isImm8(imm) ? i8 : dst === "rax" ? ax : i32;
    return this.e(() => I.createRegI32(code, regOf(dst, w), imm), `${op} ${dst},${hex(imm)}${is64 ? "" : " (32)"}`);
  }
  neg(is64: boolean, dst: X86Reg): this {
    return this.e(() => I.createReg(is64 ? Code.Neg_rm64 : Code.Neg_rm32, regOf(dst, is64 ? 8 : 4)), `neg ${dst}`);
  }
  /** `shl r,1` (d1) for a count of 1, else `shl r,imm8` (c1). */
  shiftRI(op: ShiftOp, is64: boolean, dst: X86Reg, n: number): this {
    const [one, i8] = SHIFT[op][is64 ? 0 : 1];
    const w: Width = is64 ? 8 : 4;
    return n === 1
      ? this.e(() => I.createRegI32(one, regOf(dst, w), 1), `${op} ${dst},1`)
      : this.e(() => I.createRegI32(i8, regOf(dst, w), n), `${op} ${dst},${n}`);
  }
  shiftRCl(op: ShiftOp, is64: boolean, dst: X86Reg): this {
    const w: Width = is64 ? 8 : 4;
    return this.e(() => I.createRegReg(SHIFT[op][is64 ? 0 : 1][2], regOf(dst, w), R.CL), `${op} ${dst},cl`);
  }

  // ---- memory (emit_ldx, emit_stx, BPF_ST) ----
  /** movzx r64,byte/word; mov r32,dword; mov r64,qword. */
  ldx(size: Width, dst: X86Reg, base: X86Reg, off: number): this {
    const code = size === 1 ? Code.Movzx_r64_rm8 : size === 2 ? Code.Movzx_r64_rm16 : size === 4 ? Code.Mov_r32_rm32 : Code.Mov_r64_rm64;
    return this.e(() => I.createRegMem(code, size === 4 ? R32[dst] : R64[dst], mem(base, off)), `ldx${size * 8} ${dst},${memText(base, off)}`);
  }
  stx(size: Width, base: X86Reg, off: number, src: X86Reg): this {
    const code = size === 1 ? Code.Mov_rm8_r8 : size === 2 ? Code.Mov_rm16_r16 : size === 4 ? Code.Mov_rm32_r32 : Code.Mov_rm64_r64;
    return this.e(() => I.createMemReg(code, mem(base, off), regOf(src, size)), `stx${size * 8} ${memText(base, off)},${src}`);
  }
  st(size: Width, base: X86Reg, off: number, imm: number): this {
    const note = `st${size * 8} ${memText(base, off)},${hex(imm)}`;
    switch (size) {
      case 1: return this.e(() => I.createMemI32(Code.Mov_rm8_imm8, mem(base, off), imm & 0xff), note);
      case 2: return this.e(() => I.createMemI32(Code.Mov_rm16_imm16, mem(base, off), imm & 0xffff), note);
      case 4: return this.e(() => I.createMemU32(Code.Mov_rm32_imm32, mem(base, off), imm >>> 0), note);
      default: return this.e(() => I.createMemI32(Code.Mov_rm64_imm32, mem(base, off), imm), note);
    }
  }

  // ---- compares and branches ----
  cmpRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    const w: Width = is64 ? 8 : 4;
    return this.e(() => I.createRegReg(is64 ? Code.Cmp_rm64_r64 : Code.Cmp_rm32_r32, regOf(a, w), regOf(b, w)), `cmp ${a},${b}`);
  }
  /** `cmp r,imm` (83 /7 or 81 /7; never the short rax form). */
  cmpRI(is64: boolean, a: X86Reg, imm: number): this {
    const w: Width = is64 ? 8 : 4;
    const code = isImm8(imm) ? (is64 ? Code.Cmp_rm64_imm8 : Code.Cmp_rm32_imm8) : (is64 ? Code.Cmp_rm64_imm32 : Code.Cmp_rm32_imm32);
    return this.e(() => I.createRegI32(code, regOf(a, w), imm), `cmp ${a},${hex(imm)}`);
  }
  testRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    const w: Width = is64 ? 8 : 4;
    return this.e(() => I.createRegReg(is64 ? Code.Test_rm64_r64 : Code.Test_rm32_r32, regOf(a, w), regOf(b, w)), `test ${a},${b}`);
  }
  testRI(is64: boolean, a: X86Reg, imm: number): this {
    const w: Width = is64 ? 8 : 4;
    return this.e(() => I.createRegI32(is64 ? Code.Test_rm64_imm32 : Code.Test_rm32_imm32, regOf(a, w), imm), `test ${a},${hex(imm)}`);
  }
  jcc(cond: Cond, short: boolean, label: string): this {
    this.asm.branch(JCC[cond][short ? 0 : 1], { label }, `j${cond} ${label}`);
    return this;
  }
  jmp(short: boolean, label: string): this {
    this.asm.branch(short ? Code.Jmp_rel8_64 : Code.Jmp_rel32_64, { label }, `jmp ${label}`);
    return this;
  }
  callSymbol(symbol: string): this {
    this.asm.call({ symbol }, `call ${symbol}`);
    return this;
  }
}
