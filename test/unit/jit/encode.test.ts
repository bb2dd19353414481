// The JIT's own encoder (jit/x86/encode.ts, emit.ts) against iced-x86: for every emitter, every
// register and a spread of immediates and displacements, the bytes equal what iced encodes for
// the instruction form upstream's emitter names (the iced Code of each idiom), and iced decodes
// them back to that one instruction.
import { describe, expect, test as plain } from "vitest";
import { fc, test } from "@fast-check/vitest";
import { alu, disp, gpr, imm32, reg, shift, width } from "../../helpers/operands.ts";
import { Code, Encoder, Instruction as I, MemoryOperand as M, Register as Reg } from "iced-x86";
import { Emitter, type Cond, type Width } from "../../../jit/x86/emit.ts";
import type { X86Reg } from "../../../jit/x86/encode.ts";
import { forEachInstruction } from "../../../jit/iced.ts";
import { InsnRecords } from "../../../harness/machine/decode.ts";

const R = Reg as unknown as Record<string, number>;
const C = Code as unknown as Record<string, number>;
const r64 = (r: X86Reg) => R[r.toUpperCase()]!;
const r32 = (r: X86Reg) => R[/^r\d+$/.test(r) ? `${r.toUpperCase()}D` : `E${r.slice(1).toUpperCase()}`]!;
const r16 = (r: X86Reg) => R[/^r\d+$/.test(r) ? `${r.toUpperCase()}W` : r.slice(1).toUpperCase()]!;
const r8 = (r: X86Reg) => R[/^r\d+$/.test(r) ? `${r.toUpperCase()}L` : ({ rax: "AL", rcx: "CL", rdx: "DL", rbx: "BL", rsp: "SPL", rbp: "BPL", rsi: "SIL", rdi: "DIL" } as Record<string, string>)[r]!]!;
const rw = (r: X86Reg, w: Width) => (w === 8 ? r64(r) : w === 4 ? r32(r) : w === 2 ? r16(r) : r8(r));
const imm8 = (v: number) => v >= -128 && v <= 127;
const mem = (base: X86Reg, off: number) => M.createBaseDisplSize(r64(base), BigInt(off), imm8(off) ? 1 : 8);
const BASE = 0xffffffffa0000000n;
const TARGET = 0xffffffff81000100n;

/** iced's encoding of one instruction at BASE. */
function iced(make: () => I): Uint8Array {
  const ins = make();
  const enc = new Encoder(64);
  try {
    enc.encode(ins, BASE);
    return enc.takeBuffer();
  } finally {
    ins.free();
    enc.free();
  }
}

/** The emitter's bytes for one call. */
function ours(emit: (e: Emitter) => void): Uint8Array {
  const e = new Emitter("t", { base: BASE, symbols: (s) => (s === "target" ? TARGET : undefined) });
  emit(e);
  return e.finish().bytes;
}

/** Exactly one instruction decodes from the bytes. */
function oneInstruction(bytes: Uint8Array): boolean {
  let n = 0, invalid = false;
  forEachInstruction(bytes, BASE, (ins) => { n++; if (ins.isInvalid) invalid = true; });
  return n === 1 && !invalid;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

type Case = { readonly what: string; readonly ours: Uint8Array; readonly iced: Uint8Array };
const cases: fc.Arbitrary<Case>[] = [
  fc.tuple(reg).map(([r]) => ({ what: `push ${r}`, ours: ours((e) => e.push(r)), iced: iced(() => I.createReg(Code.Push_r64, r64(r))) })),
  fc.tuple(reg).map(([r]) => ({ what: `pop ${r}`, ours: ours((e) => e.pop(r)), iced: iced(() => I.createReg(Code.Pop_r64, r64(r))) })),
  fc.tuple(reg, reg).map(([d, s]) => ({ what: `mov ${d},${s}`, ours: ours((e) => e.movRR(d, s)), iced: iced(() => I.createRegReg(Code.Mov_rm64_r64, r64(d), r64(s))) })),
  fc.tuple(gpr, gpr).filter(([d, s]) => d !== s).map(([d, s]) => ({ what: `mov ${d}d,${s}d`, ours: ours((e) => e.movReg(false, d, s)), iced: iced(() => I.createRegReg(Code.Mov_rm32_r32, r32(d), r32(s))) })),
  fc.tuple(gpr, imm32, fc.boolean()).map(([d, v, sign]) => ({
    what: `movImm32 ${d} ${v} ${sign}`, ours: ours((e) => e.movImm32(sign, d, v)),
    iced: iced(() => (sign && v < 0 ? I.createRegI32(Code.Mov_rm64_imm32, r64(d), v) : v === 0 ? I.createRegReg(Code.Xor_rm32_r32, r32(d), r32(d)) : I.createRegU32(Code.Mov_r32_imm32, r32(d), v >>> 0))),
  })),
  fc.tuple(gpr, fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n })).filter(([, v]) => BigInt.asUintN(64, v) > 0xffffffffn && (BigInt.asIntN(64, v) < -0x80000000n || BigInt.asIntN(64, v) > 0x7fffffffn)).map(([d, v]) => ({
    what: `movabs ${d},${v}`, ours: ours((e) => e.movImm64(d, v)), iced: iced(() => I.createRegU64(Code.Mov_r64_imm64, r64(d), BigInt.asUintN(64, v))),
  })),
  fc.tuple(alu, fc.boolean(), gpr, gpr).map(([op, is64, d, s]) => ({
    what: `${op}${is64 ? 64 : 32} ${d},${s}`, ours: ours((e) => e.aluRR(op, is64, d, s)),
    iced: iced(() => I.createRegReg(C[`${cap(op)}_rm${is64 ? 64 : 32}_r${is64 ? 64 : 32}`]!, is64 ? r64(d) : r32(d), is64 ? r64(s) : r32(s))),
  })),
  fc.tuple(alu, fc.boolean(), gpr, imm32).map(([op, is64, d, v]) => {
    const w = is64 ? 64 : 32;
    const code = imm8(v) ? `${cap(op)}_rm${w}_imm8` : d === "rax" ? `${cap(op)}_${is64 ? "RAX" : "EAX"}_imm32` : `${cap(op)}_rm${w}_imm32`;
    return { what: `${op}${w} ${d},${v}`, ours: ours((e) => e.aluRI(op, is64, d, v)), iced: iced(() => I.createRegI32(C[code]!, is64 ? r64(d) : r32(d), v)) };
  }),
  fc.tuple(fc.boolean(), gpr).map(([is64, d]) => ({ what: `neg ${d}`, ours: ours((e) => e.neg(is64, d)), iced: iced(() => I.createReg(is64 ? Code.Neg_rm64 : Code.Neg_rm32, is64 ? r64(d) : r32(d))) })),
  fc.tuple(shift, fc.boolean(), gpr, fc.integer({ min: 1, max: 63 })).map(([op, is64, d, n]) => {
    const w = is64 ? 64 : 32;
    return { what: `${op}${w} ${d},${n}`, ours: ours((e) => e.shiftRI(op, is64, d, n)), iced: iced(() => I.createRegI32(C[n === 1 ? `${cap(op)}_rm${w}_1` : `${cap(op)}_rm${w}_imm8`]!, is64 ? r64(d) : r32(d), n)) };
  }),
  fc.tuple(shift, fc.boolean(), gpr).map(([op, is64, d]) => {
    const w = is64 ? 64 : 32;
    return { what: `${op}${w} ${d},cl`, ours: ours((e) => e.shiftRCl(op, is64, d)), iced: iced(() => I.createRegReg(C[`${cap(op)}_rm${w}_CL`]!, is64 ? r64(d) : r32(d), Reg.CL)) };
  }),
  fc.tuple(width, gpr, reg, disp).map(([w, d, b, off]) => ({
    what: `ldx${w * 8} ${d},[${b}${off}]`, ours: ours((e) => e.ldx(w, d, b, off)),
    iced: iced(() => I.createRegMem(w === 1 ? Code.Movzx_r64_rm8 : w === 2 ? Code.Movzx_r64_rm16 : w === 4 ? Code.Mov_r32_rm32 : Code.Mov_r64_rm64, w === 4 ? r32(d) : r64(d), mem(b, off))),
  })),
  fc.tuple(width, reg, disp, gpr).map(([w, b, off, s]) => ({
    what: `stx${w * 8} [${b}${off}],${s}`, ours: ours((e) => e.stx(w, b, off, s)),
    iced: iced(() => I.createMemReg(w === 1 ? Code.Mov_rm8_r8 : w === 2 ? Code.Mov_rm16_r16 : w === 4 ? Code.Mov_rm32_r32 : Code.Mov_rm64_r64, mem(b, off), rw(s, w))),
  })),
  fc.tuple(width, gpr, disp, imm32).map(([w, b, off, v]) => ({
    what: `st${w * 8} [${b}${off}],${v}`, ours: ours((e) => e.st(w, b, off, v)),
    iced: iced(() => (w === 1 ? I.createMemI32(Code.Mov_rm8_imm8, mem(b, off), v & 0xff) : w === 2 ? I.createMemI32(Code.Mov_rm16_imm16, mem(b, off), v & 0xffff) : w === 4 ? I.createMemU32(Code.Mov_rm32_imm32, mem(b, off), v >>> 0) : I.createMemI32(Code.Mov_rm64_imm32, mem(b, off), v))),
  })),
  fc.tuple(fc.boolean(), gpr, gpr).map(([is64, a, b]) => ({ what: `cmp ${a},${b}`, ours: ours((e) => e.cmpRR(is64, a, b)), iced: iced(() => I.createRegReg(is64 ? Code.Cmp_rm64_r64 : Code.Cmp_rm32_r32, is64 ? r64(a) : r32(a), is64 ? r64(b) : r32(b))) })),
  fc.tuple(fc.boolean(), gpr, imm32).map(([is64, a, v]) => ({
    what: `cmp ${a},${v}`, ours: ours((e) => e.cmpRI(is64, a, v)),
    iced: iced(() => I.createRegI32(imm8(v) ? (is64 ? Code.Cmp_rm64_imm8 : Code.Cmp_rm32_imm8) : (is64 ? Code.Cmp_rm64_imm32 : Code.Cmp_rm32_imm32), is64 ? r64(a) : r32(a), v)),
  })),
  fc.tuple(fc.boolean(), gpr, gpr).map(([is64, a, b]) => ({ what: `test ${a},${b}`, ours: ours((e) => e.testRR(is64, a, b)), iced: iced(() => I.createRegReg(is64 ? Code.Test_rm64_r64 : Code.Test_rm32_r32, is64 ? r64(a) : r32(a), is64 ? r64(b) : r32(b))) })),
  fc.tuple(fc.boolean(), gpr, imm32).map(([is64, a, v]) => ({ what: `test ${a},${v}`, ours: ours((e) => e.testRI(is64, a, v)), iced: iced(() => I.createRegI32(is64 ? Code.Test_rm64_imm32 : Code.Test_rm32_imm32, is64 ? r64(a) : r32(a), v)) })),
  fc.tuple(reg, reg, disp).map(([d, b, off]) => ({ what: `lea ${d},[${b}${off}]`, ours: ours((e) => e.lea(d, b, off)), iced: iced(() => I.createRegMem(Code.Lea_r64_m, r64(d), mem(b, off))) })),
  fc.tuple(reg, fc.integer({ min: 0, max: 0xffff })).map(([d, a]) => ({
    what: `add ${d},gs:[${a}]`, ours: ours((e) => e.addFromGs(d, a)), iced: iced(() => I.createRegMem(Code.Add_r64_rm64, r64(d), M.new64(Reg.None, Reg.None, 1, BigInt(a), 8, false, Reg.GS))),
  })),
  fc.tuple(fc.constantFrom<Cond>("e", "ne", "a", "b", "ae", "be", "g", "l", "ge", "le"), fc.boolean(), fc.integer({ min: -128, max: 0x7fffff })).filter(([, short, rel]) => !short || imm8(rel)).map(([cond, short, rel]) => ({
    what: `j${cond} ${rel}`, ours: ours((e) => e.jcc(cond, short, rel)),
    iced: iced(() => I.createBranch(C[`J${cond}_rel${short ? 8 : 32}_64`]!, BASE + BigInt((short ? 2 : 6) + rel))),
  })),
  fc.tuple(fc.boolean(), fc.integer({ min: -128, max: 0x7fffff })).filter(([short, rel]) => !short || imm8(rel)).map(([short, rel]) => ({
    what: `jmp ${rel}`, ours: ours((e) => e.jmp(short, rel)), iced: iced(() => I.createBranch(short ? Code.Jmp_rel8_64 : Code.Jmp_rel32_64, BASE + BigInt((short ? 2 : 5) + rel))),
  })),
  fc.constant({ what: "call", ours: ours((e) => e.callSymbol("target")), iced: iced(() => I.createBranch(Code.Call_rel32_64, TARGET)) }),
  fc.constant({ what: "endbr64", ours: ours((e) => e.endbr64()), iced: iced(() => I.create(Code.Endbr64)) }),
  fc.constant({ what: "nop5", ours: ours((e) => e.nop5()), iced: iced(() => I.createMem(Code.Nop_rm32, M.createBaseIndexScaleDisplSize(Reg.RAX, Reg.RAX, 1, 0n, 1))) }),
  fc.constant({ what: "nop3", ours: ours((e) => e.nop3()), iced: iced(() => I.createMem(Code.Nop_rm32, M.createBase(Reg.RAX))) }),
  fc.constant({ what: "leave", ours: ours((e) => e.leave()), iced: iced(() => I.create(Code.Leaveq)) }),
  fc.constant({ what: "ret", ours: ours((e) => e.ret()), iced: iced(() => I.create(Code.Retnq)) }),
  fc.constant({ what: "sub rsp", ours: ours((e) => e.subRspImm32(0x28)), iced: iced(() => I.createRegI32(Code.Sub_rm64_imm32, Reg.RSP, 0x28)) }),
  // the whole instruction set's forms (do_jit(), 7.2)
  fc.tuple(gpr, gpr).map(([d, s]) => ({ what: `movsxq8 ${d},${s}`, ours: ours((e) => e.movsxReg(8, true, d, s)), iced: iced(() => I.createRegReg(Code.Movsx_r64_rm8, r64(d), r8(s))) })),
  fc.tuple(gpr, gpr).map(([d, s]) => ({ what: `movsxq16 ${d},${s}`, ours: ours((e) => e.movsxReg(16, true, d, s)), iced: iced(() => I.createRegReg(Code.Movsx_r64_rm16, r64(d), r16(s))) })),
  fc.tuple(gpr, gpr).map(([d, s]) => ({ what: `movsxd ${d},${s}`, ours: ours((e) => e.movsxReg(32, true, d, s)), iced: iced(() => I.createRegReg(Code.Movsxd_r64_rm32, r64(d), r32(s))) })),
  fc.tuple(gpr, gpr).map(([d, s]) => ({ what: `movsxl16 ${d},${s}`, ours: ours((e) => e.movsxReg(16, false, d, s)), iced: iced(() => I.createRegReg(Code.Movsx_r32_rm16, r32(d), r16(s))) })),
  fc.tuple(fc.boolean(), gpr, imm32).map(([is64, d, v]) => ({
    what: `imul ${d},${d},${v}`, ours: ours((e) => e.imulRI(is64, d, v)),
    iced: iced(() => I.createRegRegI32(C[`Imul_r${is64 ? 64 : 32}_rm${is64 ? 64 : 32}_imm${imm8(v) ? 8 : 32}`]!, is64 ? r64(d) : r32(d), is64 ? r64(d) : r32(d), v)),
  })),
  fc.tuple(fc.boolean(), gpr, gpr).map(([is64, d, s]) => ({ what: `imul ${d},${s}`, ours: ours((e) => e.imulRR(is64, d, s)), iced: iced(() => I.createRegReg(is64 ? Code.Imul_r64_rm64 : Code.Imul_r32_rm32, is64 ? r64(d) : r32(d), is64 ? r64(s) : r32(s))) })),
  fc.tuple(fc.boolean(), fc.boolean(), gpr).map(([signed, is64, s]) => ({
    what: `${signed ? "i" : ""}div ${s}`, ours: ours((e) => e.div(signed, is64, s)), iced: iced(() => I.createReg(C[`${signed ? "Idiv" : "Div"}_rm${is64 ? 64 : 32}`]!, is64 ? r64(s) : r32(s))),
  })),
  fc.constant({ what: "cdq", ours: ours((e) => e.cdq(false)), iced: iced(() => I.create(Code.Cdq)) }),
  fc.constant({ what: "cqo", ours: ours((e) => e.cdq(true)), iced: iced(() => I.create(Code.Cqo)) }),
  fc.constant({ what: "xor edx,edx", ours: ours((e) => e.xorEdx()), iced: iced(() => I.createRegReg(Code.Xor_rm32_r32, Reg.EDX, Reg.EDX)) }),
  fc.tuple(imm32).map(([v]) => ({ what: `mov r11,${v}`, ours: ours((e) => e.movR11Imm32(v)), iced: iced(() => I.createRegI32(Code.Mov_rm64_imm32, Reg.R11, v)) })),
  fc.tuple(gpr).map(([d]) => ({ what: `ror ${d}w,8`, ours: ours((e) => e.ror16by8(d)), iced: iced(() => I.createRegI32(Code.Ror_rm16_imm8, r16(d), 8)) })),
  fc.tuple(gpr).map(([d]) => ({ what: `movzx ${d}d,${d}w`, ours: ours((e) => e.movzx16(d)), iced: iced(() => I.createRegReg(Code.Movzx_r32_rm16, r32(d), r16(d))) })),
  fc.tuple(fc.boolean(), gpr).map(([is64, d]) => ({ what: `bswap ${d}`, ours: ours((e) => e.bswap(is64, d)), iced: iced(() => I.createReg(is64 ? Code.Bswap_r64 : Code.Bswap_r32, is64 ? r64(d) : r32(d))) })),
  fc.tuple(fc.constantFrom<1 | 2 | 4>(1, 2, 4), gpr, reg, disp).map(([w, d, b, off]) => ({
    what: `ldsx${w * 8} ${d},[${b}${off}]`, ours: ours((e) => e.ldsx(w, d, b, off)),
    iced: iced(() => I.createRegMem(w === 1 ? Code.Movsx_r64_rm8 : w === 2 ? Code.Movsx_r64_rm16 : Code.Movsxd_r64_rm32, r64(d), mem(b, off))),
  })),
  fc.tuple(shift, fc.boolean(), gpr, gpr).map(([op, is64, d, s]) => ({
    what: `${op}x ${d},${d},${s}`, ours: ours((e) => e.shiftx(op, is64, d, s)),
    iced: iced(() => I.createRegRegReg(C[`${op === "shl" ? "VEX_Shlx" : op === "shr" ? "VEX_Shrx" : "VEX_Sarx"}_r${is64 ? 64 : 32}_rm${is64 ? 64 : 32}_r${is64 ? 64 : 32}`]!, is64 ? r64(d) : r32(d), is64 ? r64(d) : r32(d), is64 ? r64(s) : r32(s))),
  })),
  fc.tuple(fc.constantFrom("add", "and", "or", "xor", "xadd", "xchg", "cmpxchg" as const), fc.constantFrom<4 | 8>(4, 8), gpr, disp, gpr).map(([op, size, b, off, s]) => {
    const w = size * 8;
    const code = op === "xadd" ? `Xadd_rm${w}_r${w}` : op === "xchg" ? `Xchg_rm${w}_r${w}` : op === "cmpxchg" ? `Cmpxchg_rm${w}_r${w}` : `${cap(op)}_rm${w}_r${w}`;
    return {
      what: `${op}${w} [${b}${off}],${s}`, ours: ours((e) => e.atomicRmw(op, size, b, off, s)),
      iced: iced(() => { const i = I.createMemReg(C[code]!, mem(b, off), size === 8 ? r64(s) : r32(s)); if (op !== "xchg") i.hasLockPrefix = true; return i; }),
    };
  }),
];

/**
 * Forms whose bytes carry a REX prefix no assembler would emit (emit_movsx_reg()'s 32-bit form
 * always writes one; emit_mov_imm32-style `mov r32,r32` to itself, movsx 8 of rsp..rdi), so
 * iced's encoding differs: these must decode to the same single instruction instead.
 */
const decodeCases: fc.Arbitrary<Case>[] = [
  fc.tuple(gpr, gpr).map(([d, s]) => ({ what: `movsxl8 ${d},${s}`, ours: ours((e) => e.movsxReg(8, false, d, s)), iced: iced(() => I.createRegReg(Code.Movsx_r32_rm8, r32(d), r8(s))) })),
  fc.tuple(gpr).map(([d]) => ({ what: `mov ${d}d,${d}d`, ours: ours((e) => e.movSelf32(d)), iced: iced(() => I.createRegReg(Code.Mov_rm32_r32, r32(d), r32(d))) })),
];

/** The one instruction `bytes` decode to, as text. */
function decodedText(bytes: Uint8Array): string {
  const out: string[] = [];
  forEachInstruction(bytes, BASE, (ins) => { out.push(ins.toString()); });
  return out.join("; ");
}

describe("the JIT's encoder against iced-x86", () => {
  plain("every emitter's bytes are iced's encoding of upstream's form, one instruction", () => {
    for (const arb of cases) {
      // (the expects only where something differs: one per case cost more than the encoding)
      fc.assert(fc.property(arb, (c) => {
        if (hex(c.ours) !== hex(c.iced) || !oneInstruction(c.ours)) expect({ what: c.what, bytes: hex(c.ours), oneInstruction: oneInstruction(c.ours) }).toEqual({ what: c.what, bytes: hex(c.iced), oneInstruction: true });
      }), { numRuns: 250 });
    }
  });

  plain("forms with upstream's extra REX prefixes decode to the instruction upstream means", () => {
    for (const arb of decodeCases) {
      fc.assert(fc.property(arb, (c) => {
        expect(oneInstruction(c.ours), c.what).toBe(true);
        expect(decodedText(c.ours), c.what).toBe(decodedText(c.iced));
      }), { numRuns: 250 });
    }
  });

  test.prop([fc.integer({ min: 1, max: 40 })])("emit_nops(n): x86_nops of the largest lengths, each one instruction", (n) => {
    const bytes = ours((e) => e.nops(n));
    expect(bytes.length).toBe(n);
    let decoded = 0;
    forEachInstruction(bytes, BASE, (ins) => { decoded++; expect(ins.isInvalid).toBe(false); });
    expect(decoded).toBe(Math.ceil(n / 11));
  });
});

describe("an emitter without notes (the JIT's passes before the image)", () => {
  const write = (e: Emitter) => e.endbr64().push("rbp").movRR("rbp", "rsp").subRsp(0x28).lea("rdi", "rbp", -0x10).cdq(true).nops(13).leave().ret();
  const symbols = () => undefined;
  plain("writes the same bytes and the same machine records, and keeps no listing", () => {
    const base = 0xffffffffa0000000n;
    const withNotes = write(new Emitter("t", { base, symbols, records: new InsnRecords() })).finish();
    const without = write(new Emitter("t", { base, symbols, records: new InsnRecords(), notes: false })).finish();
    expect(without.bytes).toEqual(withNotes.bytes);
    expect(withNotes.insns.map((x) => x.note)).toEqual(["endbr64", "push rbp", "mov rbp,rsp", "sub rsp,0x28", "lea rdi,[rbp-0x10]", "cqo", "nop13", "leave", "ret"]);
    expect(without.insns).toEqual([]);
    // the records (each instruction's address and length among them) do not depend on the notes
    expect(withNotes.decoded).toBeDefined();
    expect(without.decoded).toEqual(withNotes.decoded);
  });
});
