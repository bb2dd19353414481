// x86-64 emitters for the BPF JIT, one per idiom of arch/x86/net/bpf_jit_comp.c (7.2), each
// writing the bytes upstream writes (encode.ts has the kernel's REX/ModRM helpers) and recording
// its assembly as a note for listings. Strategies build prologues and epilogues with them; the
// lowering (lower.ts) computes jump offsets from its addrs[] table as do_jit() does and passes
// them in.
import {
  add1mod, add1reg, add2mod, add2reg, Code, emitInsnSuffix, isAxReg, isEreg, isEreg8l, isImm8, isSimm32, isUimm32, maybeEmit1mod, maybeEmitMod,
  REG_NUM, type X86Reg,
} from "./encode.ts";
import type { Assembled, AssembledInsn } from "../asm.ts";

export type { X86Reg } from "./encode.ts";

/** The labels frameReady() and frameGone() put down (jit.ts reads them). */
export const FRAME_READY = "fp_start", FRAME_GONE = "fp_end";

export type Width = 1 | 2 | 4 | 8;
export type AluOp = "add" | "sub" | "and" | "or" | "xor";
export type ShiftOp = "shl" | "shr" | "sar";
/** BPF jump op → x86 condition, as upstream's jmp_cond switch. */
export type Cond = "e" | "ne" | "a" | "b" | "ae" | "be" | "g" | "l" | "ge" | "le";

/** A JIT failure: the message do_jit()'s pr_err() would print, or what the model refuses. */
export class JitError extends Error {
  override name = "JitError";
}

// The opcodes of do_jit()'s ALU cases: reg-reg (b2), the imm8/imm32 ModRM base (b3), the rax short form.
const ALU_RR: Record<AluOp, number> = { add: 0x01, sub: 0x29, and: 0x21, or: 0x09, xor: 0x31 };
const ALU_B3: Record<AluOp, number> = { add: 0xc0, sub: 0xe8, and: 0xe0, or: 0xc8, xor: 0xf0 };
const ALU_AX: Record<AluOp, number> = { add: 0x05, sub: 0x2d, and: 0x25, or: 0x0d, xor: 0x35 };
const SHIFT_B3: Record<ShiftOp, number> = { shl: 0xe0, shr: 0xe8, sar: 0xf8 };
/** X86_JE and friends: the rel8 opcode; + 0x10 after 0x0f is the rel32 one. */
const JCC: Record<Cond, number> = { b: 0x72, ae: 0x73, e: 0x74, ne: 0x75, be: 0x76, a: 0x77, l: 0x7c, ge: 0x7d, le: 0x7e, g: 0x7f };

const hex = (v: number | bigint) => (v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`);
const memText = (base: X86Reg, off: number) => `[${base}${off < 0 ? "-" : "+"}${hex(Math.abs(off))}]`;
const R = REG_NUM;

export interface EmitterOptions {
  /** Where the code will run (rel32 call offsets, listings). */
  readonly base: bigint;
  /** Addresses of helpers, kfuncs and BPF functions by name. */
  readonly symbols: (name: string) => bigint | undefined;
}

export class Emitter {
  private readonly code = new Code();
  private readonly insns: { offset: number; note: string }[] = [];
  private readonly labels = new Map<string, number>();
  /** How often the strategy marked the frame ready and gone in this function (lower.ts checks: once each). */
  readonly frameMarks = { ready: 0, gone: 0 };

  constructor(readonly name: string, private readonly o: EmitterOptions) {}

  /** Bytes emitted so far: the kernel's `prog - temp` from the start of the image. */
  get offset(): number {
    return this.code.length;
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new JitError(`${this.name}: label '${name}' defined twice`);
    this.labels.set(name, this.code.length);
    return this;
  }

  /** Where a label is (an offset from the start), if defined. */
  labelOffset(name: string): number | undefined {
    return this.labels.get(name);
  }

  /**
   * The function's frame is complete here: from this instruction on, rbp is this function's
   * frame. do_jit() records `ksym.fp_start` at this point, right after emit_prologue()
   * (arch/x86/net/bpf_jit_comp.c, 7.2). Every strategy's prologue calls it once.
   */
  frameReady(): this {
    if (this.frameMarks.ready++ === 0) this.labels.set(FRAME_READY, this.code.length);
    return this;
  }

  /**
   * The function's frame is torn down here: from this instruction on, rbp is the caller's frame
   * again. do_jit() records `ksym.fp_end` at this point, right after the first exit's `leave`.
   * Every strategy's epilogue calls it once.
   */
  frameGone(): this {
    if (this.frameMarks.gone++ === 0) this.labels.set(FRAME_GONE, this.code.length);
    return this;
  }

  /** One x86 instruction: `bytes` written by `write`, with its assembly. */
  private insn(note: string, write: (c: Code) => void): this {
    this.insns.push({ offset: this.code.length, note });
    write(this.code);
    return this;
  }

  /** The code at `base`, with every instruction's address and note, and the labels. */
  finish(): Assembled {
    const bytes = this.code.bytes();
    const base = this.o.base;
    const insns: AssembledInsn[] = this.insns.map((x, i) => ({
      index: i, address: base + BigInt(x.offset), length: (this.insns[i + 1]?.offset ?? bytes.length) - x.offset, note: x.note,
    }));
    const labels = new Map([...this.labels].map(([k, v]) => [k, base + BigInt(v)] as const));
    return { base, bytes, end: base + BigInt(bytes.length), insns, labels };
  }

  // ---- prologue pieces (emit_prologue, emit_cfi) ----
  /** EMIT_ENDBR(): endbr64 (f3 0f 1e fa). */
  endbr64(): this { return this.insn("endbr64", (c) => c.emit(0xf3, 0x0f, 0x1e, 0xfa)); }
  /** emit_nops(5): the patchable site bpf_arch_text_poke() rewrites (0f 1f 44 00 00). */
  nop5(): this { return this.insn("nop5", (c) => c.nops(5)); }
  /** emit_nops(3): keeps the tail-call layout when no `xor rax,rax` is needed (0f 1f 00). */
  nop3(): this { return this.insn("nop3", (c) => c.nops(3)); }
  /** emit_nops(n): jump padding of the late passes. */
  nops(n: number): this { return n === 0 ? this : this.insn(`nop${n}`, (c) => c.nops(n)); }
  push(r: X86Reg): this { return this.insn(`push ${r}`, (c) => (isEreg(R[r]) ? c.emit(0x41, add1reg(0x50, R[r])) : c.emit(add1reg(0x50, R[r])))); }
  pop(r: X86Reg): this { return this.insn(`pop ${r}`, (c) => (isEreg(R[r]) ? c.emit(0x41, add1reg(0x58, R[r])) : c.emit(add1reg(0x58, R[r])))); }
  /** `mov dst,src` in the 89 /r form (48 89 e5 for `mov rbp,rsp`), always emitted. */
  movRR(dst: X86Reg, src: X86Reg): this {
    return this.insn(`mov ${dst},${src}`, (c) => c.emit(add2mod(0x48, R[dst], R[src]), 0x89, add2reg(0xc0, R[dst], R[src])));
  }
  /** `sub rsp, imm32`, always the 48 81 ec imm32 form (emit_prologue()). */
  subRspImm32(v: number): this { return this.insn(`sub rsp,${hex(v)}`, (c) => { c.emit(0x48, 0x81, 0xec); c.u32(v); }); }
  /** emit_sub_rsp() / emit_add_rsp(): the imm8 form when it fits; nothing for 0. */
  subRsp(v: number): this { return v === 0 ? this : this.insn(`sub rsp,${hex(v)}`, (c) => (isImm8(v) ? c.emit(0x48, 0x83, 0xec, v) : (c.emit(0x48, 0x81, 0xec), c.u32(v)))); }
  addRsp(v: number): this { return v === 0 ? this : this.insn(`add rsp,${hex(v)}`, (c) => (isImm8(v) ? c.emit(0x48, 0x83, 0xc4, v) : (c.emit(0x48, 0x81, 0xc4), c.u32(v)))); }
  /** `lea dst,[base+off]`. */
  lea(dst: X86Reg, base: X86Reg, off: number): this {
    return this.insn(`lea ${dst},${memText(base, off)}`, (c) => { c.emit(add2mod(0x48, R[base], R[dst]), 0x8d); emitInsnSuffix(c, R[base], R[dst], off); });
  }
  leave(): this { return this.insn("leave", (c) => c.emit(0xc9)); }
  ret(): this { return this.insn("ret", (c) => c.emit(0xc3)); }
  int3(): this { return this.insn("int3", (c) => c.emit(0xcc)); }
  /** `add reg, gs:[addr]` (65 4c 03 0c 25 disp32 for r9: emit_priv_frame_ptr()). */
  addFromGs(dst: X86Reg, addr: number): this {
    return this.insn(`add ${dst},gs:[${hex(addr)}]`, (c) => { c.emit(0x65, add2mod(0x48, 0, R[dst]), 0x03, add2reg(0x04, 0, R[dst]), 0x25); c.u32(addr); });
  }

  // ---- moves (emit_mov_imm32, emit_mov_imm64, emit_mov_reg) ----
  /** emit_mov_imm32(): `mov r,simm32` if sign-propagating a negative; `xor r32,r32` for 0; else `mov r32,imm32`. */
  movImm32(signPropagate: boolean, dst: X86Reg, imm: number): this {
    const d = R[dst];
    if (signPropagate && imm < 0) return this.insn(`mov ${dst},${hex(imm)}`, (c) => { c.emit(add1mod(0x48, d), 0xc7, add1reg(0xc0, d)); c.u32(imm); });
    if (imm === 0) return this.insn(`xor ${dst}d,${dst}d`, (c) => { if (isEreg(d)) c.emit(add2mod(0x40, d, d)); c.emit(0x31, add2reg(0xc0, d, d)); });
    return this.insn(`mov ${dst}d,${hex(imm >>> 0)}`, (c) => { if (isEreg(d)) c.emit(add1mod(0x40, d)); c.emit(add1reg(0xb8, d)); c.u32(imm); });
  }
  /** emit_mov_imm64(): the shortest of mov r32,imm32 / mov r,simm32 / movabs. */
  movImm64(dst: X86Reg, v: bigint): this {
    const u = BigInt.asUintN(64, v), s = BigInt.asIntN(64, v);
    if (isUimm32(u)) return this.movImm32(false, dst, Number(u) | 0);
    if (isSimm32(s)) return this.movImm32(true, dst, Number(s));
    return this.insn(`movabs ${dst},${hex(u)}`, (c) => { c.emit(add1mod(0x48, R[dst]), add1reg(0xb8, R[dst])); c.u32(Number(u & 0xffffffffn)); c.u32(Number(u >> 32n)); });
  }
  /** emit_mov_reg(): a 64-bit move to itself is omitted; a 32-bit one zero-extends. */
  movReg(is64: boolean, dst: X86Reg, src: X86Reg): this {
    if (is64) return dst === src ? this : this.movRR(dst, src);
    const d = R[dst], s = R[src];
    return this.insn(`mov ${dst}d,${src}d`, (c) => { if (isEreg(d) || isEreg(s)) c.emit(add2mod(0x40, d, s)); c.emit(0x89, add2reg(0xc0, d, s)); });
  }

  // ---- ALU (do_jit's BPF_ALU/BPF_ALU64 cases) ----
  aluRR(op: AluOp, is64: boolean, dst: X86Reg, src: X86Reg): this {
    return this.insn(`${op} ${dst},${src}${is64 ? "" : " (32)"}`, (c) => { maybeEmitMod(c, R[dst], R[src], is64); c.emit(ALU_RR[op], add2reg(0xc0, R[dst], R[src])); });
  }
  /** imm8 form when it fits, the short rax form for BPF_REG_0, else the imm32 form. */
  aluRI(op: AluOp, is64: boolean, dst: X86Reg, imm: number): this {
    const d = R[dst];
    return this.insn(`${op} ${dst},${hex(imm)}${is64 ? "" : " (32)"}`, (c) => {
      maybeEmit1mod(c, d, is64);
      if (isImm8(imm)) c.emit(0x83, add1reg(ALU_B3[op], d), imm);
      else if (isAxReg(d)) { c.emit(ALU_AX[op]); c.u32(imm); }
      else { c.emit(0x81, add1reg(ALU_B3[op], d)); c.u32(imm); }
    });
  }
  neg(is64: boolean, dst: X86Reg): this {
    return this.insn(`neg ${dst}`, (c) => { maybeEmit1mod(c, R[dst], is64); c.emit(0xf7, add1reg(0xd8, R[dst])); });
  }
  /** `shl r,1` (d1) for a count of 1, else `shl r,imm8` (c1). */
  shiftRI(op: ShiftOp, is64: boolean, dst: X86Reg, n: number): this {
    return this.insn(`${op} ${dst},${n}`, (c) => {
      maybeEmit1mod(c, R[dst], is64);
      if (n === 1) c.emit(0xd1, add1reg(SHIFT_B3[op], R[dst]));
      else c.emit(0xc1, add1reg(SHIFT_B3[op], R[dst]), n);
    });
  }
  shiftRCl(op: ShiftOp, is64: boolean, dst: X86Reg): this {
    return this.insn(`${op} ${dst},cl`, (c) => { maybeEmit1mod(c, R[dst], is64); c.emit(0xd3, add1reg(SHIFT_B3[op], R[dst])); });
  }

  /** emit_movsx_reg(): BPF_MOV with off 8/16/32 (movs[b,w,l]q; movs[b,w]l), REX bytes exactly as upstream writes them. */
  movsxReg(bits: 8 | 16 | 32, is64: boolean, dst: X86Reg, src: X86Reg): this {
    const d = R[dst], s = R[src];
    return this.insn(`movsx${bits} ${dst},${src}${is64 ? "" : " (32)"}`, (c) => {
      if (is64) {
        if (bits === 8) c.emit(add2mod(0x48, s, d), 0x0f, 0xbe, add2reg(0xc0, s, d));
        else if (bits === 16) c.emit(add2mod(0x48, s, d), 0x0f, 0xbf, add2reg(0xc0, s, d));
        else c.emit(add2mod(0x48, s, d), 0x63, add2reg(0xc0, s, d));
      } else if (bits === 8) {
        c.emit(add2mod(0x40, s, d), 0x0f, 0xbe, add2reg(0xc0, s, d)); // a REX byte even when none is needed
      } else {
        if (isEreg(d) || isEreg(s)) c.emit(add2mod(0x40, s, d));
        c.emit(add2mod(0x0f, s, d), 0xbf, add2reg(0xc0, s, d)); // add_2mod(0x0f, ...): 0x0f already has both bits
      }
    });
  }
  /** `imul dst,dst,imm8|imm32` (6b/69) with maybe_emit_mod(dst, dst): BPF_MUL | BPF_K. */
  imulRI(is64: boolean, dst: X86Reg, imm: number): this {
    const d = R[dst];
    return this.insn(`imul ${dst},${dst},${hex(imm)}`, (c) => {
      maybeEmitMod(c, d, d, is64);
      if (isImm8(imm)) c.emit(0x6b, add2reg(0xc0, d, d), imm);
      else { c.emit(0x69, add2reg(0xc0, d, d)); c.u32(imm); }
    });
  }
  /** `imul dst,src` (0f af) with maybe_emit_mod(src, dst): BPF_MUL | BPF_X. */
  imulRR(is64: boolean, dst: X86Reg, src: X86Reg): this {
    return this.insn(`imul ${dst},${src}`, (c) => { maybeEmitMod(c, R[src], R[dst], is64); c.emit(0x0f, 0xaf, add2reg(0xc0, R[src], R[dst])); });
  }
  /** `mov r11,simm32` as the DIV/MOD case writes it (49 c7 c3 imm32). */
  movR11Imm32(imm: number): this { return this.insn(`mov r11,${hex(imm)}`, (c) => { c.emit(0x49, 0xc7, 0xc3); c.u32(imm); }); }
  /** `xor edx,edx` (31 d2). */
  xorEdx(): this { return this.insn("xor edx,edx", (c) => c.emit(0x31, 0xd2)); }
  /** `cdq` (99) or `cqo` (48 99). */
  cdq(is64: boolean): this { return this.insn(is64 ? "cqo" : "cdq", (c) => (is64 ? c.emit(0x48, 0x99) : c.emit(0x99))); }
  /** `div src` (f7 /6) or `idiv src` (f7 /7). */
  div(signed: boolean, is64: boolean, src: X86Reg): this {
    return this.insn(`${signed ? "idiv" : "div"} ${src}`, (c) => { maybeEmit1mod(c, R[src], is64); c.emit(0xf7, add1reg(signed ? 0xf8 : 0xf0, R[src])); });
  }
  /** BPF_END 16 (to_be, bswap16): `ror r16,8` (66 [41] c1 /1 08). */
  ror16by8(dst: X86Reg): this {
    const d = R[dst];
    return this.insn(`ror ${dst}w,8`, (c) => { c.emit(0x66); if (isEreg(d)) c.emit(0x41); c.emit(0xc1, add1reg(0xc8, d), 8); });
  }
  /** `movzx r32,r16` ([45] 0f b7): zero-extend the low 16 bits. */
  movzx16(dst: X86Reg): this {
    const d = R[dst];
    return this.insn(`movzx ${dst}d,${dst}w`, (c) => { if (isEreg(d)) c.emit(0x45, 0x0f, 0xb7); else c.emit(0x0f, 0xb7); c.emit(add2reg(0xc0, d, d)); });
  }
  /** `bswap r32` ([41] 0f c8+r) or `bswap r64` (REX.W 0f c8+r). */
  bswap(is64: boolean, dst: X86Reg): this {
    const d = R[dst];
    return this.insn(`bswap ${dst}${is64 ? "" : "d"}`, (c) => {
      if (is64) c.emit(add1mod(0x48, d), 0x0f, add1reg(0xc8, d));
      else { if (isEreg(d)) c.emit(0x41, 0x0f); else c.emit(0x0f); c.emit(add1reg(0xc8, d)); }
    });
  }
  /** `mov r32,r32` to itself ([45] 89): clears the upper half (BPF_END to_le 32). */
  movSelf32(dst: X86Reg): this {
    const d = R[dst];
    return this.insn(`mov ${dst}d,${dst}d`, (c) => { if (isEreg(d)) c.emit(0x45); c.emit(0x89, add2reg(0xc0, d, d)); });
  }
  /** emit_shiftx(): BMI2 `shlx/shrx/sarx dst,dst,src` (VEX.0F38 f7); pp 1 shlx, 3 shrx, 2 sarx. */
  shiftx(op: ShiftOp, is64: boolean, dst: X86Reg, src: X86Reg): this {
    const d = R[dst], s = R[src];
    const pp = op === "shl" ? 1 : op === "shr" ? 3 : 2;
    const ext = isEreg(d);
    return this.insn(`${op}x ${dst},${dst},${src}`, (c) => {
      // emit_3vex(r = b = is_ereg(dst), x = 0, m = 2 (0f38), w = is64, vvvv = src, l = 0, pp)
      c.emit(0xc4, ((ext ? 0 : 1) << 7) | (1 << 6) | ((ext ? 0 : 1) << 5) | 2, ((is64 ? 1 : 0) << 7) | ((~s & 0xf) << 3) | pp);
      c.emit(0xf7, add2reg(0xc0, d, d));
    });
  }
  /**
   * emit_atomic_rmw(): `lock` (not for xchg), maybe_emit_mod(dst, src), then the opcode: the ALU
   * op for add/and/or/xor, 0f c1 (xadd) for add|fetch, 87 for xchg, 0f b1 for cmpxchg.
   */
  atomicRmw(op: "add" | "and" | "or" | "xor" | "xadd" | "xchg" | "cmpxchg", size: 4 | 8, base: X86Reg, off: number, src: X86Reg): this {
    const b = R[base], s = R[src];
    return this.insn(`${op === "xchg" ? "" : "lock "}${op}${size * 8} ${memText(base, off)},${src}`, (c) => {
      if (op !== "xchg") c.emit(0xf0);
      maybeEmitMod(c, b, s, size === 8);
      if (op === "xadd") c.emit(0x0f, 0xc1);
      else if (op === "xchg") c.emit(0x87);
      else if (op === "cmpxchg") c.emit(0x0f, 0xb1);
      else c.emit(ALU_RR[op]);
      emitInsnSuffix(c, b, s, off);
    });
  }

  // ---- memory (emit_ldx, emit_stx, BPF_ST) ----
  /** emit_ldx(): movzx r64,byte/word; mov r32,dword; mov r64,qword. */
  ldx(size: Width, dst: X86Reg, base: X86Reg, off: number): this {
    const d = R[dst], b = R[base];
    return this.insn(`ldx${size * 8} ${dst},${memText(base, off)}`, (c) => {
      if (size === 1) c.emit(add2mod(0x48, b, d), 0x0f, 0xb6);
      else if (size === 2) c.emit(add2mod(0x48, b, d), 0x0f, 0xb7);
      else if (size === 4) { if (isEreg(d) || isEreg(b)) c.emit(add2mod(0x40, b, d)); c.emit(0x8b); }
      else c.emit(add2mod(0x48, b, d), 0x8b);
      emitInsnSuffix(c, b, d, off);
    });
  }
  /** emit_ldsx(): movsx r64,byte/word [..] (REX.W 0f be/bf), movsxd r64,dword [..] (REX.W 63). */
  ldsx(size: 1 | 2 | 4, dst: X86Reg, base: X86Reg, off: number): this {
    const d = R[dst], b = R[base];
    return this.insn(`ldsx${size * 8} ${dst},${memText(base, off)}`, (c) => {
      if (size === 1) c.emit(add2mod(0x48, b, d), 0x0f, 0xbe);
      else if (size === 2) c.emit(add2mod(0x48, b, d), 0x0f, 0xbf);
      else c.emit(add2mod(0x48, b, d), 0x63);
      emitInsnSuffix(c, b, d, off);
    });
  }
  /** emit_stx(). */
  stx(size: Width, base: X86Reg, off: number, src: X86Reg): this {
    const b = R[base], s = R[src];
    return this.insn(`stx${size * 8} ${memText(base, off)},${src}`, (c) => {
      if (size === 1) { if (isEreg(b) || isEreg8l(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x88); }
      else if (size === 2) { c.emit(0x66); if (isEreg(b) || isEreg(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x89); }
      else if (size === 4) { if (isEreg(b) || isEreg(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x89); }
      else c.emit(add2mod(0x48, b, s), 0x89);
      emitInsnSuffix(c, b, s, off);
    });
  }
  /** BPF_ST: mov byte/word/dword/qword [base+off], imm. */
  st(size: Width, base: X86Reg, off: number, imm: number): this {
    const b = R[base];
    return this.insn(`st${size * 8} ${memText(base, off)},${hex(imm)}`, (c) => {
      if (size === 1) { if (isEreg(b)) c.emit(0x41); c.emit(0xc6); }
      else if (size === 2) { c.emit(0x66); if (isEreg(b)) c.emit(0x41); c.emit(0xc7); }
      else if (size === 4) { if (isEreg(b)) c.emit(0x41); c.emit(0xc7); }
      else c.emit(add1mod(0x48, b), 0xc7);
      emitInsnSuffix(c, b, 0, off);
      if (size === 1) c.emit(imm);
      else if (size === 2) c.u16(imm);
      else c.u32(imm); // bpf_size_to_x86_bytes(): DW stores an imm32
    });
  }

  // ---- compares and branches ----
  cmpRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    return this.insn(`cmp ${a},${b}`, (c) => { maybeEmitMod(c, R[a], R[b], is64); c.emit(0x39, add2reg(0xc0, R[a], R[b])); });
  }
  /** `cmp r,imm` (83 /7 or 81 /7; never the short rax form). */
  cmpRI(is64: boolean, a: X86Reg, imm: number): this {
    return this.insn(`cmp ${a},${hex(imm)}`, (c) => {
      maybeEmit1mod(c, R[a], is64);
      if (isImm8(imm)) c.emit(0x83, add1reg(0xf8, R[a]), imm);
      else { c.emit(0x81, add1reg(0xf8, R[a])); c.u32(imm); }
    });
  }
  testRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    return this.insn(`test ${a},${b}`, (c) => { maybeEmitMod(c, R[a], R[b], is64); c.emit(0x85, add2reg(0xc0, R[a], R[b])); });
  }
  /** JSET with an immediate: `test r,imm32` (f7 /0), always the imm32 form. */
  testRI(is64: boolean, a: X86Reg, imm: number): this {
    return this.insn(`test ${a},${hex(imm)}`, (c) => { maybeEmit1mod(c, R[a], is64); c.emit(0xf7, add1reg(0xc0, R[a])); c.u32(imm); });
  }
  /** A conditional jump by `rel` bytes from its end: rel8 (EMIT2) or rel32 (0f 8x). */
  jcc(cond: Cond, short: boolean, rel: number): this {
    return this.insn(`j${cond} ${hex(rel)}`, (c) => { if (short) c.emit(JCC[cond], rel); else { c.emit(0x0f, JCC[cond] + 0x10); c.u32(rel); } });
  }
  /** `jmp rel8` (eb) or `jmp rel32` (e9). */
  jmp(short: boolean, rel: number): this {
    return this.insn(`jmp ${hex(rel)}`, (c) => { if (short) c.emit(0xeb, rel); else { c.emit(0xe9); c.u32(rel); } });
  }
  /** emit_call(): `call rel32` to a helper, kfunc or BPF function by name. */
  callSymbol(symbol: string): this {
    const target = this.o.symbols(symbol);
    if (target === undefined) throw new JitError(`${this.name}: call to unknown symbol '${symbol}'`);
    const ip = this.o.base + BigInt(this.code.length);
    const rel = BigInt.asIntN(64, target - (ip + 5n));
    if (!isSimm32(rel)) throw new JitError(`${this.name}: Target call ${target.toString(16)} is out of range`);
    return this.insn(`call ${symbol}`, (c) => { c.emit(0xe8); c.u32(Number(rel)); });
  }
}
