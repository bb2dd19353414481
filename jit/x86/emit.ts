// x86-64 emitters for the BPF JIT, one per idiom of arch/x86/net/bpf_jit_comp.c (7.2), each
// writing the bytes upstream writes (encode.ts has the kernel's REX/ModRM helpers) and noting its
// assembly (unless told not to: the JIT, whose notes nothing reads). Strategies build prologues
// and epilogues with them; the lowering (lower.ts) computes jump offsets from its addrs[] table
// as do_jit() does and passes them in.
import {
  add1mod, add1reg, add2mod, add2reg, ASM_NOP_MAX, Code, emitInsnSuffix, isAxReg, isEreg, isEreg8l, isImm8, isSimm32, isUimm32, maybeEmit1mod, maybeEmitMod,
  REG_NUM, type X86Reg,
} from "./encode.ts";
import type { Assembled, AssembledInsn } from "../asm.ts";
import { BPF_TEXT_SIZE } from "../kernel/layout.ts";

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

// The iced Code name of each form the emitters write, for their records (the machine's decoded
// instructions, made here instead of decoding the bytes: see Emitter.finish()). [64-bit, 32-bit].
// Names, not iced's numbers: the JIT does not load iced-x86 (InsnRecords, which does, maps them).
const cap = (s: string) => `${s[0]!.toUpperCase()}${s.slice(1)}`;
const bySize = (form: (bits: string) => string): readonly [string, string] => [form("64"), form("32")];
/** Each op's form at 64 and 32 bits, named from the op (capitalised) and the operand bits. */
const perOp = <K extends string>(ops: readonly K[], form: (op: string, bits: string) => string) =>
  Object.fromEntries(ops.map((o) => [o, bySize((b) => form(cap(o), b))])) as Record<K, readonly [string, string]>;
const ALUS = ["add", "sub", "and", "or", "xor"] as const, SHIFTS = ["shl", "shr", "sar"] as const;
const ALU_RR_FORM = perOp(ALUS, (o, b) => `${o}_rm${b}_r${b}`), ALU_I8_FORM = perOp(ALUS, (o, b) => `${o}_rm${b}_imm8`);
const ALU_I32_FORM = perOp(ALUS, (o, b) => `${o}_rm${b}_imm32`), ALU_AX_FORM = perOp(ALUS, (o, b) => `${o}_${b === "64" ? "RAX" : "EAX"}_imm32`);
const SHIFT_1_FORM = perOp(SHIFTS, (o, b) => `${o}_rm${b}_1`), SHIFT_I8_FORM = perOp(SHIFTS, (o, b) => `${o}_rm${b}_imm8`);
const SHIFT_CL_FORM = perOp(SHIFTS, (o, b) => `${o}_rm${b}_CL`), SHIFTX_FORM = perOp(SHIFTS, (o, b) => `VEX_${o}x_r${b}_rm${b}_r${b}`);
const ATOMIC_FORM = perOp(["add", "and", "or", "xor", "xadd", "xchg", "cmpxchg"] as const, (o, b) => `${o}_rm${b}_r${b}`);
const JCC_FORM = Object.fromEntries((["e", "ne", "a", "b", "ae", "be", "g", "l", "ge", "le"] as const).map((c) => [c, [`J${c}_rel8_64`, `J${c}_rel32_64`] as const])) as Record<Cond, readonly [string, string]>;
const [JMP_REL8, JMP_REL32, CALL_REL32] = ["Jmp_rel8_64", "Jmp_rel32_64", "Call_rel32_64"];
const [MOV_RM_R, MOV_R_RM, MOV_RM_I32, MOV_R32_I32, MOV_R64_I64] = [bySize((b) => `Mov_rm${b}_r${b}`), bySize((b) => `Mov_r${b}_rm${b}`), bySize((b) => `Mov_rm${b}_imm32`), "Mov_r32_imm32", "Mov_r64_imm64"];
const [MOV_RM8_R8, MOV_RM16_R16, MOV_RM8_I8, MOV_RM16_I16] = ["Mov_rm8_r8", "Mov_rm16_r16", "Mov_rm8_imm8", "Mov_rm16_imm16"];
const [SUB_RM64_I8, SUB_RM64_I32, ADD_RM64_I8, ADD_RM64_I32, ADD_R64_RM64] = ["Sub_rm64_imm8", "Sub_rm64_imm32", "Add_rm64_imm8", "Add_rm64_imm32", "Add_r64_rm64"];
const [PUSH_R64, POP_R64, LEA_R64, LEAVE, RET, INT3, ENDBR64, CDQ, CQO] = ["Push_r64", "Pop_r64", "Lea_r64_m", "Leaveq", "Retnq", "Int3", "Endbr64", "Cdq", "Cqo"] as const;
const [XOR_RM32_R32, NEG, CMP_RR, CMP_I8, CMP_I32, TEST_RR, TEST_I32] = ["Xor_rm32_r32", bySize((b) => `Neg_rm${b}`), bySize((b) => `Cmp_rm${b}_r${b}`), bySize((b) => `Cmp_rm${b}_imm8`), bySize((b) => `Cmp_rm${b}_imm32`), bySize((b) => `Test_rm${b}_r${b}`), bySize((b) => `Test_rm${b}_imm32`)];
const [IMUL_I8, IMUL_I32, IMUL_RR, DIV, IDIV, BSWAP] = [bySize((b) => `Imul_r${b}_rm${b}_imm8`), bySize((b) => `Imul_r${b}_rm${b}_imm32`), bySize((b) => `Imul_r${b}_rm${b}`), bySize((b) => `Div_rm${b}`), bySize((b) => `Idiv_rm${b}`), bySize((b) => `Bswap_r${b}`)];
const [ROR_RM16_I8, MOVZX_R32_RM16, MOVZX_R64_RM8, MOVZX_R64_RM16] = ["Ror_rm16_imm8", "Movzx_r32_rm16", "Movzx_r64_rm8", "Movzx_r64_rm16"];
const [MOVSX_R64_RM8, MOVSX_R64_RM16, MOVSXD_R64_RM32, MOVSX_R32_RM8, MOVSX_R32_RM16] = ["Movsx_r64_rm8", "Movsx_r64_rm16", "Movsxd_r64_rm32", "Movsx_r32_rm8", "Movsx_r32_rm16"] as const;
/** The nop of each length of x86_nops[] (encode.ts X86_NOPS): its form and the size of its memory operand (0: none). */
const NOP_FORM: readonly (readonly [string, number])[] = Array.from({ length: ASM_NOP_MAX + 1 }, (_, n) =>
  n === 1 ? ["Nopd", 0] as const : n === 2 ? ["Nopw", 0] as const : n === 6 || n === 10 || n === 11 ? ["Nop_rm16", 2] as const : ["Nop_rm32", 4] as const);
const RSP = 4, RCX = 1, RDX = 2, R11 = 11;
/** [64-bit, 32-bit] index. */
const w = (is64: boolean) => (is64 ? 0 : 1);
const sz = (is64: boolean) => (is64 ? 8 : 4);

const hex = (v: number | bigint) => (v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`);
const memText = (base: X86Reg, off: number) => `[${base}${off < 0 ? "-" : "+"}${hex(Math.abs(off))}]`;
const R = REG_NUM;

/**
 * An emitter called with an operand it cannot encode as asked (a register name it does not know,
 * an immediate or displacement that is not an integer or does not fit its field, an op, width or
 * condition it has no form for): the method, the operand and what it must be. Thrown before
 * anything is written, instead of encoding something else. A user's strategy module gets it as a
 * StrategyError naming the module, the hook and the function (strategies/guard.ts).
 */
export class EmitterError extends Error {
  override name = "EmitterError";
}

// The operand checks every public emitter method makes first: a few comparisons, no allocation
// (the JIT calls the emitters for every instruction of every function of every image); the
// message is made only when one fails.
const S32 = "an integer in -0x80000000..0x7fffffff";
const S32_SX = `${S32} (the imm32 is sign-extended to 64 bits)`;
const IMM32 = "an integer in -0x80000000..0xffffffff (an imm32)";
const DISP32 = `${S32} (a disp32)`;
const REG_MUST = `a register name: ${Object.keys(REG_NUM).join(", ")}`;
const I64_MIN = -(1n << 63n), U64_MAX = (1n << 64n) - 1n;

/** `v` as an error shows it. */
function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number") return Number.isInteger(v) && Math.abs(v) > 0xffff && Math.abs(v) <= 2 ** 64 ? `${v} (${hex(v)})` : String(v);
  try {
    return typeof v === "object" && v !== null ? `${JSON.stringify(v) ?? String(v)}` : String(v);
  } catch {
    return "a value that cannot be printed";
  }
}
function bad(method: string, operand: string, v: unknown, must: string): never {
  throw new EmitterError(`e.${method}(): operand '${operand}' is ${shown(v)}; it must be ${must}`);
}
/** A register name (any of the 16: rsp and r12 as bases get their SIB byte, emitInsnSuffix()). */
function reg(m: string, o: string, r: unknown): void {
  if (typeof r !== "string" || typeof R[r as X86Reg] !== "number") bad(m, o, r, REG_MUST);
}
function flag(m: string, o: string, b: unknown): void {
  if (b !== true && b !== false) bad(m, o, b, "true or false");
}
/** A signed 32-bit integer: a disp32, or an imm32 the instruction sign-extends to 64 bits. */
function s32(m: string, o: string, v: unknown, must: string): void {
  if (typeof v !== "number" || (v | 0) !== v) bad(m, o, v, must);
}
/**
 * An imm32 of a 64-bit operation (sign-extended: simm32) or of a 32-bit one (its 32 bits, signed
 * or not), returned as its s32, as upstream takes a u32 imm32: `(s32)imm32 < 0` sign-propagates
 * 0xffffffff (emit_mov_imm32()), and is_imm8() of the s32 picks the imm8 form for it, as for -1.
 */
function imm32(m: string, o: string, is64: boolean, v: unknown): number {
  if (typeof v !== "number" || ((v | 0) !== v && (is64 || v >>> 0 !== v))) bad(m, o, v, is64 ? S32_SX : IMM32);
  return v | 0;
}
function width(m: string, o: string, size: unknown): void {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) bad(m, o, size, "1, 2, 4 or 8 (bytes)");
}
function aluOp(m: string, op: unknown): void {
  if (typeof op !== "string" || typeof ALU_RR[op as AluOp] !== "number") bad(m, "op", op, `one of ${ALUS.join(", ")}`);
}
function shiftOp(m: string, op: unknown): void {
  if (typeof op !== "string" || typeof SHIFT_B3[op as ShiftOp] !== "number") bad(m, "op", op, `one of ${SHIFTS.join(", ")}`);
}
/** A jump's rel8 (short) or rel32. */
function checkRel(m: string, short: boolean, v: unknown): void {
  if (typeof v !== "number" || (short ? (v << 24) >> 24 !== v : (v | 0) !== v)) bad(m, "rel", v, short ? "an integer in -128..127 (a rel8)" : `${S32} (a rel32)`);
}

/**
 * Where an emitter records, instruction by instruction, what it wrote (the form by iced's Code
 * name, its operands), for whoever will run the code: the machine's records (harness/machine
 * decode.ts InsnRecords), which the harness asks the JIT for (jit.ts recordInstructions()).
 * Opaque here: the JIT hands the records on and reads nothing of them.
 */
export interface InsnRecorder {
  /** The next instruction: `len` bytes at internal (signed) address `ip`, of the form iced calls `form`. */
  begin(form: string, ip: number, len: number): this;
  /** Operand `i`: register `reg` (encoding order) of `size` bytes. */
  reg(i: 0 | 1 | 2, reg: number, size: number): this;
  /** Operand `i`: memory of `size` bytes (0: none, as lea's) at [base + disp] (base -1: none), gs: if `gs`. */
  mem(i: 0 | 1, size: number, base: number, disp: number, gs?: boolean): this;
  /** Operand `i`: an immediate of 32 bits or fewer, signed or unsigned (its low 32 bits are written). */
  imm(i: 0 | 1 | 2, v: number): this;
  /** Operand `i`: a 64-bit immediate as uint32 halves. */
  imm64(i: 0 | 1 | 2, lo: number, hi: number): this;
  /** A near branch's target (internal address). */
  target(t: number): this;
  /** The records, if they cover `bytes` at `ip` instruction by instruction; else undefined. */
  take(ip: number, bytes: Uint8Array): readonly InsnRecord[] | undefined;
}

/** One instruction's record, as the recorder made it (opaque to the JIT). */
export type InsnRecord = object;

export interface EmitterOptions {
  /** Where the code will run (rel32 call offsets, listings). */
  readonly base: bigint;
  /** Addresses of helpers, kfuncs and BPF functions by name. */
  readonly symbols: (name: string) => bigint | undefined;
  /** Where to keep the machine's record of every instruction written (finish() returns them as `decoded`): the JIT's pass into the image. */
  readonly records?: InsnRecorder;
  /**
   * Keep each instruction's assembly as a note (finish()'s `insns`): default true. The JIT turns
   * them off: its passes run for every function of every image, and nothing reads its notes.
   */
  readonly notes?: boolean;
}

export class Emitter {
  private readonly code = new Code();
  private readonly insns: { offset: number; note: string }[] = [];
  private readonly labels = new Map<string, number>();
  /** How often the strategy marked the frame ready and gone in this function (lower.ts checks: once each). */
  readonly frameMarks = { ready: 0, gone: 0 };

  /** The records of the instructions written, when the options ask for them. */
  private readonly records: InsnRecorder | null;
  /** `base` as the machine's internal address. */
  private readonly ip0: number;
  /** Whether it keeps each instruction's assembly (EmitterOptions.notes). */
  private readonly notes: boolean;
  /** Where the instruction written last starts (its record's address). */
  private last = 0;

  constructor(readonly name: string, private readonly o: EmitterOptions) {
    this.records = o.records ?? null;
    this.ip0 = Number(BigInt.asIntN(64, o.base));
    this.notes = o.notes !== false;
  }

  /** Bytes emitted so far: the kernel's `prog - temp` from the start of the image. */
  get offset(): number {
    return this.code.length;
  }

  label(name: string): this {
    if (typeof name !== "string" || name === "") bad("label", "name", name, "a non-empty string");
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

  /**
   * One x86 instruction: `bytes` written by `write`, with its assembly (`note`; `false` when this
   * emitter keeps no notes: callers write `this.notes && \`...\`` so that the text is not even made).
   */
  private insn(note: string | false, write: (c: Code) => void): this {
    this.last = this.code.length;
    if (note !== false) this.insns.push({ offset: this.last, note });
    write(this.code);
    return this;
  }

  /**
   * The record of the instruction written last (its iced Code name), for the operands to be
   * added to, when this emitter keeps records; else null.
   */
  private rec(form: string): InsnRecorder | null {
    const r = this.records;
    if (r === null) return null;
    const at = this.last;
    return r.begin(form, this.ip0 + at, this.code.length - at);
  }

  /**
   * The code at `base`, with every instruction's address and note, and the labels; with the
   * options' `records`, the machine's decoded instructions too, when they cover the bytes
   * instruction by instruction (a module's strategy could write bytes no emitter recorded: then
   * the machine decodes them).
   */
  finish(): Assembled & { readonly decoded?: readonly InsnRecord[] } {
    const bytes = this.code.bytes();
    const base = this.o.base;
    const insns: AssembledInsn[] = this.insns.map((x, i) => ({
      index: i, address: base + BigInt(x.offset), length: (this.insns[i + 1]?.offset ?? bytes.length) - x.offset, note: x.note,
    }));
    const labels = new Map([...this.labels].map(([k, v]) => [k, base + BigInt(v)] as const));
    const out = { base, bytes, end: base + BigInt(bytes.length), insns, labels };
    const decoded = this.records?.take(this.ip0, bytes);
    return decoded === undefined ? out : { ...out, decoded };
  }

  // ---- prologue pieces (emit_prologue, emit_cfi) ----
  /** EMIT_ENDBR(): endbr64 (f3 0f 1e fa). */
  endbr64(): this { this.insn(this.notes && "endbr64", (c) => c.emit(0xf3, 0x0f, 0x1e, 0xfa)); this.rec(ENDBR64); return this; }
  /** emit_nops(5): the patchable site bpf_arch_text_poke() rewrites (0f 1f 44 00 00). */
  nop5(): this { return this.nops(5); }
  /** emit_nops(3): keeps the tail-call layout when no `xor rax,rax` is needed (0f 1f 00). */
  nop3(): this { return this.nops(3); }
  /** emit_nops(n): jump padding of the late passes. Several nops past ASM_NOP_MAX bytes, each its own record. */
  nops(n: number): this {
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > BPF_TEXT_SIZE) bad("nops", "n", n, `an integer in 0..${BPF_TEXT_SIZE} (no function's code is larger than the BPF text area)`);
    if (n === 0) return this;
    this.insn(this.notes && `nop${n}`, (c) => c.nops(n));
    const r = this.records;
    for (let off = this.last, left = n; r !== null && left > 0; ) {
      const k = Math.min(left, ASM_NOP_MAX), [form, memSize] = NOP_FORM[k]!;
      r.begin(form, this.ip0 + off, k);
      if (memSize !== 0) r.mem(0, memSize, -1, 0);
      off += k; left -= k;
    }
    return this;
  }
  push(r: X86Reg): this {
    reg("push", "r", r);
    this.insn(this.notes && `push ${r}`, (c) => (isEreg(R[r]) ? c.emit(0x41, add1reg(0x50, R[r])) : c.emit(add1reg(0x50, R[r]))));
    this.rec(PUSH_R64)?.reg(0, R[r], 8);
    return this;
  }
  pop(r: X86Reg): this {
    reg("pop", "r", r);
    this.insn(this.notes && `pop ${r}`, (c) => (isEreg(R[r]) ? c.emit(0x41, add1reg(0x58, R[r])) : c.emit(add1reg(0x58, R[r]))));
    this.rec(POP_R64)?.reg(0, R[r], 8);
    return this;
  }
  /** `mov dst,src` in the 89 /r form (48 89 e5 for `mov rbp,rsp`), always emitted. */
  movRR(dst: X86Reg, src: X86Reg): this {
    reg("movRR", "dst", dst); reg("movRR", "src", src);
    this.insn(this.notes && `mov ${dst},${src}`, (c) => c.emit(add2mod(0x48, R[dst], R[src]), 0x89, add2reg(0xc0, R[dst], R[src])));
    this.rec(MOV_RM_R[0])?.reg(0, R[dst], 8).reg(1, R[src], 8);
    return this;
  }
  /** `sub rsp, imm32`, always the 48 81 ec imm32 form (emit_prologue()). */
  subRspImm32(v: number): this {
    s32("subRspImm32", "v", v, S32_SX);
    this.insn(this.notes && `sub rsp,${hex(v)}`, (c) => { c.emit(0x48, 0x81, 0xec); c.u32(v); });
    this.rec(SUB_RM64_I32)?.reg(0, RSP, 8).imm(1, v);
    return this;
  }
  /** emit_sub_rsp() / emit_add_rsp(): the imm8 form when it fits; nothing for 0. */
  subRsp(v: number): this {
    s32("subRsp", "v", v, S32_SX);
    if (v === 0) return this;
    this.insn(this.notes && `sub rsp,${hex(v)}`, (c) => (isImm8(v) ? c.emit(0x48, 0x83, 0xec, v) : (c.emit(0x48, 0x81, 0xec), c.u32(v))));
    this.rec(isImm8(v) ? SUB_RM64_I8 : SUB_RM64_I32)?.reg(0, RSP, 8).imm(1, v);
    return this;
  }
  addRsp(v: number): this {
    s32("addRsp", "v", v, S32_SX);
    if (v === 0) return this;
    this.insn(this.notes && `add rsp,${hex(v)}`, (c) => (isImm8(v) ? c.emit(0x48, 0x83, 0xc4, v) : (c.emit(0x48, 0x81, 0xc4), c.u32(v))));
    this.rec(isImm8(v) ? ADD_RM64_I8 : ADD_RM64_I32)?.reg(0, RSP, 8).imm(1, v);
    return this;
  }
  /** `lea dst,[base+off]`. */
  lea(dst: X86Reg, base: X86Reg, off: number): this {
    reg("lea", "dst", dst); reg("lea", "base", base); s32("lea", "off", off, DISP32);
    this.insn(this.notes && `lea ${dst},${memText(base, off)}`, (c) => { c.emit(add2mod(0x48, R[base], R[dst]), 0x8d); emitInsnSuffix(c, R[base], R[dst], off); });
    this.rec(LEA_R64)?.reg(0, R[dst], 8).mem(1, 0, R[base], off);
    return this;
  }
  leave(): this { this.insn(this.notes && "leave", (c) => c.emit(0xc9)); this.rec(LEAVE); return this; }
  ret(): this { this.insn(this.notes && "ret", (c) => c.emit(0xc3)); this.rec(RET); return this; }
  int3(): this { this.insn(this.notes && "int3", (c) => c.emit(0xcc)); this.rec(INT3); return this; }
  /** `add reg, gs:[addr]` (65 4c 03 0c 25 disp32 for r9: emit_priv_frame_ptr()). */
  addFromGs(dst: X86Reg, addr: number): this {
    reg("addFromGs", "dst", dst); s32("addFromGs", "addr", addr, `${S32} (a disp32, sign-extended)`);
    this.insn(this.notes && `add ${dst},gs:[${hex(addr)}]`, (c) => { c.emit(0x65, add2mod(0x48, 0, R[dst]), 0x03, add2reg(0x04, 0, R[dst]), 0x25); c.u32(addr); });
    this.rec(ADD_R64_RM64)?.reg(0, R[dst], 8).mem(1, 8, -1, addr | 0, true);
    return this;
  }

  // ---- moves (emit_mov_imm32, emit_mov_imm64, emit_mov_reg) ----
  /** emit_mov_imm32(): `mov r,simm32` if sign-propagating a negative; `xor r32,r32` for 0; else `mov r32,imm32`. */
  movImm32(signPropagate: boolean, dst: X86Reg, imm: number): this {
    flag("movImm32", "signPropagate", signPropagate); reg("movImm32", "dst", dst); imm = imm32("movImm32", "imm", false, imm);
    const d = R[dst];
    if (signPropagate && imm < 0) {
      this.insn(this.notes && `mov ${dst},${hex(imm)}`, (c) => { c.emit(add1mod(0x48, d), 0xc7, add1reg(0xc0, d)); c.u32(imm); });
      this.rec(MOV_RM_I32[0])?.reg(0, d, 8).imm(1, imm);
    } else if (imm === 0) {
      this.insn(this.notes && `xor ${dst}d,${dst}d`, (c) => { if (isEreg(d)) c.emit(add2mod(0x40, d, d)); c.emit(0x31, add2reg(0xc0, d, d)); });
      this.rec(XOR_RM32_R32)?.reg(0, d, 4).reg(1, d, 4);
    } else {
      this.insn(this.notes && `mov ${dst}d,${hex(imm >>> 0)}`, (c) => { if (isEreg(d)) c.emit(add1mod(0x40, d)); c.emit(add1reg(0xb8, d)); c.u32(imm); });
      this.rec(MOV_R32_I32)?.reg(0, d, 4).imm(1, imm);
    }
    return this;
  }
  /** emit_mov_imm64(): the shortest of mov r32,imm32 / mov r,simm32 / movabs. */
  movImm64(dst: X86Reg, v: bigint): this {
    reg("movImm64", "dst", dst);
    if (typeof v !== "bigint" || v < I64_MIN || v > U64_MAX) bad("movImm64", "v", v, "a bigint in -(2n ** 63n)..2n ** 64n - 1n (an imm64)");
    const u = BigInt.asUintN(64, v), s = BigInt.asIntN(64, v);
    if (isUimm32(u)) return this.movImm32(false, dst, Number(u) | 0);
    if (isSimm32(s)) return this.movImm32(true, dst, Number(s));
    const lo = Number(u & 0xffffffffn), hi = Number(u >> 32n);
    this.insn(this.notes && `movabs ${dst},${hex(u)}`, (c) => { c.emit(add1mod(0x48, R[dst]), add1reg(0xb8, R[dst])); c.u32(lo); c.u32(hi); });
    this.rec(MOV_R64_I64)?.reg(0, R[dst], 8).imm64(1, lo, hi);
    return this;
  }
  /** emit_mov_reg(): a 64-bit move to itself is omitted; a 32-bit one zero-extends. */
  movReg(is64: boolean, dst: X86Reg, src: X86Reg): this {
    flag("movReg", "is64", is64); reg("movReg", "dst", dst); reg("movReg", "src", src);
    if (is64) return dst === src ? this : this.movRR(dst, src);
    const d = R[dst], s = R[src];
    this.insn(this.notes && `mov ${dst}d,${src}d`, (c) => { if (isEreg(d) || isEreg(s)) c.emit(add2mod(0x40, d, s)); c.emit(0x89, add2reg(0xc0, d, s)); });
    this.rec(MOV_RM_R[1])?.reg(0, d, 4).reg(1, s, 4);
    return this;
  }

  // ---- ALU (do_jit's BPF_ALU/BPF_ALU64 cases) ----
  aluRR(op: AluOp, is64: boolean, dst: X86Reg, src: X86Reg): this {
    aluOp("aluRR", op); flag("aluRR", "is64", is64); reg("aluRR", "dst", dst); reg("aluRR", "src", src);
    this.insn(this.notes && `${op} ${dst},${src}${is64 ? "" : " (32)"}`, (c) => { maybeEmitMod(c, R[dst], R[src], is64); c.emit(ALU_RR[op], add2reg(0xc0, R[dst], R[src])); });
    this.rec(ALU_RR_FORM[op][w(is64)])?.reg(0, R[dst], sz(is64)).reg(1, R[src], sz(is64));
    return this;
  }
  /** imm8 form when it fits, the short rax form for BPF_REG_0, else the imm32 form. */
  aluRI(op: AluOp, is64: boolean, dst: X86Reg, imm: number): this {
    aluOp("aluRI", op); flag("aluRI", "is64", is64); reg("aluRI", "dst", dst); imm = imm32("aluRI", "imm", is64, imm);
    const d = R[dst];
    this.insn(this.notes && `${op} ${dst},${hex(imm)}${is64 ? "" : " (32)"}`, (c) => {
      maybeEmit1mod(c, d, is64);
      if (isImm8(imm)) c.emit(0x83, add1reg(ALU_B3[op], d), imm);
      else if (isAxReg(d)) { c.emit(ALU_AX[op]); c.u32(imm); }
      else { c.emit(0x81, add1reg(ALU_B3[op], d)); c.u32(imm); }
    });
    this.rec((isImm8(imm) ? ALU_I8_FORM : isAxReg(d) ? ALU_AX_FORM : ALU_I32_FORM)[op][w(is64)])?.reg(0, d, sz(is64)).imm(1, imm);
    return this;
  }
  neg(is64: boolean, dst: X86Reg): this {
    flag("neg", "is64", is64); reg("neg", "dst", dst);
    this.insn(this.notes && `neg ${dst}`, (c) => { maybeEmit1mod(c, R[dst], is64); c.emit(0xf7, add1reg(0xd8, R[dst])); });
    this.rec(NEG[w(is64)])?.reg(0, R[dst], sz(is64));
    return this;
  }
  /** `shl r,1` (d1) for a count of 1, else `shl r,imm8` (c1). */
  shiftRI(op: ShiftOp, is64: boolean, dst: X86Reg, n: number): this {
    shiftOp("shiftRI", op); flag("shiftRI", "is64", is64); reg("shiftRI", "dst", dst);
    if (typeof n !== "number" || (n & 0xff) !== n) bad("shiftRI", "n", n, "an integer in 0..255 (an imm8 count)");
    this.insn(this.notes && `${op} ${dst},${n}`, (c) => {
      maybeEmit1mod(c, R[dst], is64);
      if (n === 1) c.emit(0xd1, add1reg(SHIFT_B3[op], R[dst]));
      else c.emit(0xc1, add1reg(SHIFT_B3[op], R[dst]), n);
    });
    this.rec((n === 1 ? SHIFT_1_FORM : SHIFT_I8_FORM)[op][w(is64)])?.reg(0, R[dst], sz(is64)).imm(1, n & 0xff);
    return this;
  }
  shiftRCl(op: ShiftOp, is64: boolean, dst: X86Reg): this {
    shiftOp("shiftRCl", op); flag("shiftRCl", "is64", is64); reg("shiftRCl", "dst", dst);
    this.insn(this.notes && `${op} ${dst},cl`, (c) => { maybeEmit1mod(c, R[dst], is64); c.emit(0xd3, add1reg(SHIFT_B3[op], R[dst])); });
    this.rec(SHIFT_CL_FORM[op][w(is64)])?.reg(0, R[dst], sz(is64)).reg(1, RCX, 1);
    return this;
  }

  /** emit_movsx_reg(): BPF_MOV with off 8/16/32 (movs[b,w,l]q; movs[b,w]l), REX bytes exactly as upstream writes them. */
  movsxReg(bits: 8 | 16 | 32, is64: boolean, dst: X86Reg, src: X86Reg): this {
    if (bits !== 8 && bits !== 16 && bits !== 32) bad("movsxReg", "bits", bits, "8, 16 or 32");
    flag("movsxReg", "is64", is64); reg("movsxReg", "dst", dst); reg("movsxReg", "src", src);
    const d = R[dst], s = R[src];
    this.insn(this.notes && `movsx${bits} ${dst},${src}${is64 ? "" : " (32)"}`, (c) => {
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
    // without REX.W, bits 32 writes what bits 16 does (0f bf)
    const [form, srcSize] = is64 ? (bits === 8 ? [MOVSX_R64_RM8, 1] : bits === 16 ? [MOVSX_R64_RM16, 2] : [MOVSXD_R64_RM32, 4]) : bits === 8 ? [MOVSX_R32_RM8, 1] : [MOVSX_R32_RM16, 2];
    this.rec(form)?.reg(0, d, sz(is64)).reg(1, s, srcSize);
    return this;
  }
  /** `imul dst,dst,imm8|imm32` (6b/69) with maybe_emit_mod(dst, dst): BPF_MUL | BPF_K. */
  imulRI(is64: boolean, dst: X86Reg, imm: number): this {
    flag("imulRI", "is64", is64); reg("imulRI", "dst", dst); imm = imm32("imulRI", "imm", is64, imm);
    const d = R[dst];
    this.insn(this.notes && `imul ${dst},${dst},${hex(imm)}`, (c) => {
      maybeEmitMod(c, d, d, is64);
      if (isImm8(imm)) c.emit(0x6b, add2reg(0xc0, d, d), imm);
      else { c.emit(0x69, add2reg(0xc0, d, d)); c.u32(imm); }
    });
    this.rec((isImm8(imm) ? IMUL_I8 : IMUL_I32)[w(is64)])?.reg(0, d, sz(is64)).reg(1, d, sz(is64)).imm(2, imm);
    return this;
  }
  /** `imul dst,src` (0f af) with maybe_emit_mod(src, dst): BPF_MUL | BPF_X. */
  imulRR(is64: boolean, dst: X86Reg, src: X86Reg): this {
    flag("imulRR", "is64", is64); reg("imulRR", "dst", dst); reg("imulRR", "src", src);
    this.insn(this.notes && `imul ${dst},${src}`, (c) => { maybeEmitMod(c, R[src], R[dst], is64); c.emit(0x0f, 0xaf, add2reg(0xc0, R[src], R[dst])); });
    this.rec(IMUL_RR[w(is64)])?.reg(0, R[dst], sz(is64)).reg(1, R[src], sz(is64));
    return this;
  }
  /** `mov r11,simm32` as the DIV/MOD case writes it (49 c7 c3 imm32). */
  movR11Imm32(imm: number): this {
    s32("movR11Imm32", "imm", imm, S32_SX);
    this.insn(this.notes && `mov r11,${hex(imm)}`, (c) => { c.emit(0x49, 0xc7, 0xc3); c.u32(imm); });
    this.rec(MOV_RM_I32[0])?.reg(0, R11, 8).imm(1, imm);
    return this;
  }
  /** `xor edx,edx` (31 d2). */
  xorEdx(): this { this.insn(this.notes && "xor edx,edx", (c) => c.emit(0x31, 0xd2)); this.rec(XOR_RM32_R32)?.reg(0, RDX, 4).reg(1, RDX, 4); return this; }
  /** `cdq` (99) or `cqo` (48 99). */
  cdq(is64: boolean): this { flag("cdq", "is64", is64); this.insn(this.notes && (is64 ? "cqo" : "cdq"), (c) => (is64 ? c.emit(0x48, 0x99) : c.emit(0x99))); this.rec(is64 ? CQO : CDQ); return this; }
  /** `div src` (f7 /6) or `idiv src` (f7 /7). */
  div(signed: boolean, is64: boolean, src: X86Reg): this {
    flag("div", "signed", signed); flag("div", "is64", is64); reg("div", "src", src);
    this.insn(this.notes && `${signed ? "idiv" : "div"} ${src}`, (c) => { maybeEmit1mod(c, R[src], is64); c.emit(0xf7, add1reg(signed ? 0xf8 : 0xf0, R[src])); });
    this.rec((signed ? IDIV : DIV)[w(is64)])?.reg(0, R[src], sz(is64));
    return this;
  }
  /** BPF_END 16 (to_be, bswap16): `ror r16,8` (66 [41] c1 /1 08). */
  ror16by8(dst: X86Reg): this {
    reg("ror16by8", "dst", dst);
    const d = R[dst];
    this.insn(this.notes && `ror ${dst}w,8`, (c) => { c.emit(0x66); if (isEreg(d)) c.emit(0x41); c.emit(0xc1, add1reg(0xc8, d), 8); });
    this.rec(ROR_RM16_I8)?.reg(0, d, 2).imm(1, 8);
    return this;
  }
  /** `movzx r32,r16` ([45] 0f b7): zero-extend the low 16 bits. */
  movzx16(dst: X86Reg): this {
    reg("movzx16", "dst", dst);
    const d = R[dst];
    this.insn(this.notes && `movzx ${dst}d,${dst}w`, (c) => { if (isEreg(d)) c.emit(0x45, 0x0f, 0xb7); else c.emit(0x0f, 0xb7); c.emit(add2reg(0xc0, d, d)); });
    this.rec(MOVZX_R32_RM16)?.reg(0, d, 4).reg(1, d, 2);
    return this;
  }
  /** `bswap r32` ([41] 0f c8+r) or `bswap r64` (REX.W 0f c8+r). */
  bswap(is64: boolean, dst: X86Reg): this {
    flag("bswap", "is64", is64); reg("bswap", "dst", dst);
    const d = R[dst];
    this.insn(this.notes && `bswap ${dst}${is64 ? "" : "d"}`, (c) => {
      if (is64) c.emit(add1mod(0x48, d), 0x0f, add1reg(0xc8, d));
      else { if (isEreg(d)) c.emit(0x41, 0x0f); else c.emit(0x0f); c.emit(add1reg(0xc8, d)); }
    });
    this.rec(BSWAP[w(is64)])?.reg(0, d, sz(is64));
    return this;
  }
  /** `mov r32,r32` to itself ([45] 89): clears the upper half (BPF_END to_le 32). */
  movSelf32(dst: X86Reg): this {
    reg("movSelf32", "dst", dst);
    const d = R[dst];
    this.insn(this.notes && `mov ${dst}d,${dst}d`, (c) => { if (isEreg(d)) c.emit(0x45); c.emit(0x89, add2reg(0xc0, d, d)); });
    this.rec(MOV_RM_R[1])?.reg(0, d, 4).reg(1, d, 4);
    return this;
  }
  /** emit_shiftx(): BMI2 `shlx/shrx/sarx dst,dst,src` (VEX.0F38 f7); pp 1 shlx, 3 shrx, 2 sarx. */
  shiftx(op: ShiftOp, is64: boolean, dst: X86Reg, src: X86Reg): this {
    shiftOp("shiftx", op); flag("shiftx", "is64", is64); reg("shiftx", "dst", dst); reg("shiftx", "src", src);
    const d = R[dst], s = R[src];
    const pp = op === "shl" ? 1 : op === "shr" ? 3 : 2;
    const ext = isEreg(d);
    this.insn(this.notes && `${op}x ${dst},${dst},${src}`, (c) => {
      // emit_3vex(r = b = is_ereg(dst), x = 0, m = 2 (0f38), w = is64, vvvv = src, l = 0, pp)
      c.emit(0xc4, ((ext ? 0 : 1) << 7) | (1 << 6) | ((ext ? 0 : 1) << 5) | 2, ((is64 ? 1 : 0) << 7) | ((~s & 0xf) << 3) | pp);
      c.emit(0xf7, add2reg(0xc0, d, d));
    });
    this.rec(SHIFTX_FORM[op][w(is64)])?.reg(0, d, sz(is64)).reg(1, d, sz(is64)).reg(2, s, sz(is64));
    return this;
  }
  /**
   * emit_atomic_rmw(): `lock` (not for xchg), maybe_emit_mod(dst, src), then the opcode: the ALU
   * op for add/and/or/xor, 0f c1 (xadd) for add|fetch, 87 for xchg, 0f b1 for cmpxchg.
   */
  atomicRmw(op: "add" | "and" | "or" | "xor" | "xadd" | "xchg" | "cmpxchg", size: 4 | 8, base: X86Reg, off: number, src: X86Reg): this {
    if (op !== "add" && op !== "and" && op !== "or" && op !== "xor" && op !== "xadd" && op !== "xchg" && op !== "cmpxchg") bad("atomicRmw", "op", op, "one of add, and, or, xor, xadd, xchg, cmpxchg");
    if (size !== 4 && size !== 8) bad("atomicRmw", "size", size, "4 or 8 (bytes)");
    reg("atomicRmw", "base", base); s32("atomicRmw", "off", off, DISP32); reg("atomicRmw", "src", src);
    const b = R[base], s = R[src];
    this.insn(this.notes && `${op === "xchg" ? "" : "lock "}${op}${size * 8} ${memText(base, off)},${src}`, (c) => {
      if (op !== "xchg") c.emit(0xf0);
      maybeEmitMod(c, b, s, size === 8);
      if (op === "xadd") c.emit(0x0f, 0xc1);
      else if (op === "xchg") c.emit(0x87);
      else if (op === "cmpxchg") c.emit(0x0f, 0xb1);
      else c.emit(ALU_RR[op]);
      emitInsnSuffix(c, b, s, off);
    });
    this.rec(ATOMIC_FORM[op][w(size === 8)])?.mem(0, size, b, off).reg(1, s, size);
    return this;
  }

  // ---- memory (emit_ldx, emit_stx, BPF_ST) ----
  /** emit_ldx(): movzx r64,byte/word; mov r32,dword; mov r64,qword. */
  ldx(size: Width, dst: X86Reg, base: X86Reg, off: number): this {
    width("ldx", "size", size); reg("ldx", "dst", dst); reg("ldx", "base", base); s32("ldx", "off", off, DISP32);
    const d = R[dst], b = R[base];
    this.insn(this.notes && `ldx${size * 8} ${dst},${memText(base, off)}`, (c) => {
      if (size === 1) c.emit(add2mod(0x48, b, d), 0x0f, 0xb6);
      else if (size === 2) c.emit(add2mod(0x48, b, d), 0x0f, 0xb7);
      else if (size === 4) { if (isEreg(d) || isEreg(b)) c.emit(add2mod(0x40, b, d)); c.emit(0x8b); }
      else c.emit(add2mod(0x48, b, d), 0x8b);
      emitInsnSuffix(c, b, d, off);
    });
    this.rec(size === 1 ? MOVZX_R64_RM8 : size === 2 ? MOVZX_R64_RM16 : MOV_R_RM[w(size === 8)])?.reg(0, d, size === 4 ? 4 : 8).mem(1, size, b, off);
    return this;
  }
  /** emit_ldsx(): movsx r64,byte/word [..] (REX.W 0f be/bf), movsxd r64,dword [..] (REX.W 63). */
  ldsx(size: 1 | 2 | 4, dst: X86Reg, base: X86Reg, off: number): this {
    if (size !== 1 && size !== 2 && size !== 4) bad("ldsx", "size", size, "1, 2 or 4 (bytes)");
    reg("ldsx", "dst", dst); reg("ldsx", "base", base); s32("ldsx", "off", off, DISP32);
    const d = R[dst], b = R[base];
    this.insn(this.notes && `ldsx${size * 8} ${dst},${memText(base, off)}`, (c) => {
      if (size === 1) c.emit(add2mod(0x48, b, d), 0x0f, 0xbe);
      else if (size === 2) c.emit(add2mod(0x48, b, d), 0x0f, 0xbf);
      else c.emit(add2mod(0x48, b, d), 0x63);
      emitInsnSuffix(c, b, d, off);
    });
    this.rec(size === 1 ? MOVSX_R64_RM8 : size === 2 ? MOVSX_R64_RM16 : MOVSXD_R64_RM32)?.reg(0, d, 8).mem(1, size, b, off);
    return this;
  }
  /** emit_stx(). */
  stx(size: Width, base: X86Reg, off: number, src: X86Reg): this {
    width("stx", "size", size); reg("stx", "base", base); s32("stx", "off", off, DISP32); reg("stx", "src", src);
    const b = R[base], s = R[src];
    this.insn(this.notes && `stx${size * 8} ${memText(base, off)},${src}`, (c) => {
      if (size === 1) { if (isEreg(b) || isEreg8l(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x88); }
      else if (size === 2) { c.emit(0x66); if (isEreg(b) || isEreg(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x89); }
      else if (size === 4) { if (isEreg(b) || isEreg(s)) c.emit(add2mod(0x40, b, s)); c.emit(0x89); }
      else c.emit(add2mod(0x48, b, s), 0x89);
      emitInsnSuffix(c, b, s, off);
    });
    this.rec(size === 1 ? MOV_RM8_R8 : size === 2 ? MOV_RM16_R16 : MOV_RM_R[w(size === 8)])?.mem(0, size, b, off).reg(1, s, size);
    return this;
  }
  /**
   * BPF_ST: mov byte/word/dword/qword [base+off], imm. `imm` is an imm32 (signed for 8 bytes,
   * whose imm32 is sign-extended); 1 and 2 bytes store its low bytes, as upstream's EMIT(imm32, size).
   */
  st(size: Width, base: X86Reg, off: number, imm: number): this {
    width("st", "size", size); reg("st", "base", base); s32("st", "off", off, DISP32); imm = imm32("st", "imm", size === 8, imm);
    const b = R[base];
    this.insn(this.notes && `st${size * 8} ${memText(base, off)},${hex(imm)}`, (c) => {
      if (size === 1) { if (isEreg(b)) c.emit(0x41); c.emit(0xc6); }
      else if (size === 2) { c.emit(0x66); if (isEreg(b)) c.emit(0x41); c.emit(0xc7); }
      else if (size === 4) { if (isEreg(b)) c.emit(0x41); c.emit(0xc7); }
      else c.emit(add1mod(0x48, b), 0xc7);
      emitInsnSuffix(c, b, 0, off);
      if (size === 1) c.emit(imm);
      else if (size === 2) c.u16(imm);
      else c.u32(imm); // bpf_size_to_x86_bytes(): DW stores an imm32
    });
    this.rec(size === 1 ? MOV_RM8_I8 : size === 2 ? MOV_RM16_I16 : MOV_RM_I32[w(size === 8)])?.mem(0, size, b, off).imm(1, imm);
    return this;
  }

  // ---- compares and branches ----
  cmpRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    flag("cmpRR", "is64", is64); reg("cmpRR", "a", a); reg("cmpRR", "b", b);
    this.insn(this.notes && `cmp ${a},${b}`, (c) => { maybeEmitMod(c, R[a], R[b], is64); c.emit(0x39, add2reg(0xc0, R[a], R[b])); });
    this.rec(CMP_RR[w(is64)])?.reg(0, R[a], sz(is64)).reg(1, R[b], sz(is64));
    return this;
  }
  /** `cmp r,imm` (83 /7 or 81 /7; never the short rax form). */
  cmpRI(is64: boolean, a: X86Reg, imm: number): this {
    flag("cmpRI", "is64", is64); reg("cmpRI", "a", a); imm = imm32("cmpRI", "imm", is64, imm);
    this.insn(this.notes && `cmp ${a},${hex(imm)}`, (c) => {
      maybeEmit1mod(c, R[a], is64);
      if (isImm8(imm)) c.emit(0x83, add1reg(0xf8, R[a]), imm);
      else { c.emit(0x81, add1reg(0xf8, R[a])); c.u32(imm); }
    });
    this.rec((isImm8(imm) ? CMP_I8 : CMP_I32)[w(is64)])?.reg(0, R[a], sz(is64)).imm(1, imm);
    return this;
  }
  testRR(is64: boolean, a: X86Reg, b: X86Reg): this {
    flag("testRR", "is64", is64); reg("testRR", "a", a); reg("testRR", "b", b);
    this.insn(this.notes && `test ${a},${b}`, (c) => { maybeEmitMod(c, R[a], R[b], is64); c.emit(0x85, add2reg(0xc0, R[a], R[b])); });
    this.rec(TEST_RR[w(is64)])?.reg(0, R[a], sz(is64)).reg(1, R[b], sz(is64));
    return this;
  }
  /** JSET with an immediate: `test r,imm32` (f7 /0), always the imm32 form. */
  testRI(is64: boolean, a: X86Reg, imm: number): this {
    flag("testRI", "is64", is64); reg("testRI", "a", a); imm = imm32("testRI", "imm", is64, imm);
    this.insn(this.notes && `test ${a},${hex(imm)}`, (c) => { maybeEmit1mod(c, R[a], is64); c.emit(0xf7, add1reg(0xc0, R[a])); c.u32(imm); });
    this.rec(TEST_I32[w(is64)])?.reg(0, R[a], sz(is64)).imm(1, imm);
    return this;
  }
  /** A conditional jump by `rel` bytes from its end: rel8 (EMIT2) or rel32 (0f 8x). */
  jcc(cond: Cond, short: boolean, rel: number): this {
    if (typeof cond !== "string" || typeof JCC[cond] !== "number") bad("jcc", "cond", cond, `one of ${Object.keys(JCC).join(", ")}`);
    flag("jcc", "short", short); checkRel("jcc", short, rel);
    this.insn(this.notes && `j${cond} ${hex(rel)}`, (c) => { if (short) c.emit(JCC[cond], rel); else { c.emit(0x0f, JCC[cond] + 0x10); c.u32(rel); } });
    return this.branchTo(JCC_FORM[cond][short ? 0 : 1], short ? (rel << 24) >> 24 : rel | 0);
  }
  /** `jmp rel8` (eb) or `jmp rel32` (e9). */
  jmp(short: boolean, rel: number): this {
    flag("jmp", "short", short); checkRel("jmp", short, rel);
    this.insn(this.notes && `jmp ${hex(rel)}`, (c) => { if (short) c.emit(0xeb, rel); else { c.emit(0xe9); c.u32(rel); } });
    return this.branchTo(short ? JMP_REL8 : JMP_REL32, short ? (rel << 24) >> 24 : rel | 0);
  }
  /** The record of the near branch written last: its target `rel` bytes (as encoded) from its end. */
  private branchTo(form: string, rel: number): this {
    const r = this.rec(form);
    if (r !== null) r.target(this.ip0 + this.code.length + rel);
    return this;
  }
  /** emit_call(): `call rel32` to a helper, kfunc or BPF function by name. */
  callSymbol(symbol: string): this {
    if (typeof symbol !== "string") bad("callSymbol", "symbol", symbol, "a symbol's name");
    const target = this.o.symbols(symbol);
    if (target === undefined) throw new JitError(`${this.name}: call to unknown symbol '${symbol}'`);
    const ip = this.o.base + BigInt(this.code.length);
    const rel = BigInt.asIntN(64, target - (ip + 5n));
    if (!isSimm32(rel)) throw new JitError(`${this.name}: Target call ${target.toString(16)} is out of range`);
    this.insn(this.notes && `call ${symbol}`, (c) => { c.emit(0xe8); c.u32(Number(rel)); });
    this.rec(CALL_REL32)?.target(Number(BigInt.asIntN(64, target)));
    return this;
  }
}
