// The machine's decoded instructions from the JIT's own output (jit/x86/emit.ts records,
// harness/machine/decode.ts InsnRecords): for every emitter, every operand kind and size, and
// every function of generated programs under every design, the records equal what decoding the
// bytes gives, field for field; the machine takes them; bytes no emitter recorded are
// decoded instead.
import { describe, expect, test as plain } from "vitest";
import { fc, test } from "@fast-check/vitest";
import { alu, disp, imm32, reg, shift, width } from "../../helpers/operands.ts";
import { Emitter, type Cond } from "../../../jit/x86/emit.ts";
import { decodeCode, InsnDecoder, InsnRecords, type DInsn } from "../../../harness/machine/decode.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { planArb } from "../../../generators/index.ts";
import { planToScenario } from "../../../generators/planToScenario.ts";
import { parseScenario } from "../../../harness/scenario.ts";
import { newMachine, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";
// the harness's loader asks the JIT for its records (recordInstructions()): buildImage() keeps them from then on
import "../../../harness/load.ts";
import { runs, runsTimeout } from "../../helpers/runs.ts";

const BASE = 0xffffffffa0000000n;
const TARGET = 0xffffffff81000100n;

/** Decoding, one instruction at a time from the bytes (not the block cache the records fill). */
function decoded(bytes: Uint8Array, base: bigint): DInsn[] {
  const dec = new InsnDecoder();
  try {
    const out: DInsn[] = [];
    const ip0 = Number(BigInt.asIntN(64, base));
    for (let off = 0; off < bytes.length; ) {
      const d = dec.decodeOne(bytes.subarray(off, off + 15), ip0 + off);
      out.push(d);
      off += d.len || 1;
    }
    return out;
  } finally {
    dec.free();
  }
}

/** What differs between the records and the decoding, field by field (empty when they agree). */
function mismatches(given: readonly object[] | undefined, bytes: Uint8Array, base: bigint, what: string): string[] {
  if (given === undefined) return [`${what}: no records`];
  const records = given as readonly DInsn[];
  const want = decoded(bytes, base);
  const out: string[] = [];
  if (records.length !== want.length) out.push(`${what}: ${records.length} records for ${want.length} instructions`);
  want.forEach((w, i) => {
    const got = records[i];
    for (const k of Object.keys(w) as (keyof DInsn)[]) {
      if (!Object.is(got?.[k], w[k])) out.push(`${what}: instruction ${i} (${Buffer.from(bytes.subarray(w.ip - want[0]!.ip, w.next - want[0]!.ip)).toString("hex")}) ${k}: ${String(got?.[k])}, decoded ${String(w[k])}`);
    }
  });
  return out;
}

/** Immediates as the emitters take them: signed, and unsigned 32-bit (the same low 32 bits, which the CPU sign-extends at size 8). */
// an imm32 of a 32-bit operation, signed or unsigned; one a 64-bit operation sign-extends is
// signed (the emitters refuse 0x80000000..0xffffffff there: it would be a negative number)
const imm = fc.oneof(imm32, fc.integer({ min: 0x80000000, max: 0xffffffff }), fc.constantFrom(0x80000000, 0xffffffff, 0xfffffff0));
const immFor = (is64: boolean) => (is64 ? imm32 : imm);
const cond = fc.constantFrom<Cond>("e", "ne", "a", "b", "ae", "be", "g", "l", "ge", "le");
const rel = (short: boolean) => (short ? fc.integer({ min: -128, max: 127 }) : fc.integer({ min: -0x80000000, max: 0x7fffffff }));

type Emit = (e: Emitter) => void;
/** Every emitter with every kind of operand it takes (rsp too, which BPF registers never map to but a strategy may use). */
const EMITS: fc.Arbitrary<Emit>[] = [
  fc.constant((e) => e.endbr64()), fc.constant((e) => e.nop5()), fc.constant((e) => e.nop3()), fc.integer({ min: 1, max: 30 }).map((n) => (e) => e.nops(n)),
  reg.map((r) => (e) => e.push(r)), reg.map((r) => (e) => e.pop(r)), fc.tuple(reg, reg).map(([d, s]) => (e) => e.movRR(d, s)),
  imm32.map((v) => (e) => e.subRspImm32(v)), imm32.map((v) => (e) => e.subRsp(v)), imm32.map((v) => (e) => e.addRsp(v)),
  fc.tuple(reg, reg, disp).map(([d, b, o]) => (e) => e.lea(d, b, o)),
  fc.constant((e) => e.leave()), fc.constant((e) => e.ret()), fc.constant((e) => e.int3()),
  fc.tuple(reg, disp).map(([d, a]) => (e) => e.addFromGs(d, a)),
  fc.tuple(fc.boolean(), reg, imm).map(([sign, d, v]) => (e) => e.movImm32(sign, d, v)),
  fc.tuple(reg, fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n })).map(([d, v]) => (e) => e.movImm64(d, v)),
  fc.tuple(fc.boolean(), reg, reg).map(([is64, d, s]) => (e) => e.movReg(is64, d, s)),
  fc.tuple(alu, fc.boolean(), reg, reg).map(([op, is64, d, s]) => (e) => e.aluRR(op, is64, d, s)),
  fc.tuple(alu, fc.boolean(), reg).chain(([op, is64, d]) => immFor(is64).map((v) => (e: Emitter) => e.aluRI(op, is64, d, v))),
  fc.tuple(fc.boolean(), reg).map(([is64, d]) => (e) => e.neg(is64, d)),
  fc.tuple(shift, fc.boolean(), reg, fc.integer({ min: 0, max: 255 })).map(([op, is64, d, n]) => (e) => e.shiftRI(op, is64, d, n)),
  fc.tuple(shift, fc.boolean(), reg).map(([op, is64, d]) => (e) => e.shiftRCl(op, is64, d)),
  fc.tuple(fc.constantFrom<8 | 16 | 32>(8, 16, 32), fc.boolean(), reg, reg).map(([bits, is64, d, s]) => (e) => e.movsxReg(bits, is64, d, s)),
  fc.tuple(fc.boolean(), reg).chain(([is64, d]) => immFor(is64).map((v) => (e: Emitter) => e.imulRI(is64, d, v))),
  fc.tuple(fc.boolean(), reg, reg).map(([is64, d, s]) => (e) => e.imulRR(is64, d, s)),
  imm32.map((v) => (e) => e.movR11Imm32(v)), fc.constant((e) => e.xorEdx()), fc.boolean().map((is64) => (e) => e.cdq(is64)),
  fc.tuple(fc.boolean(), fc.boolean(), reg).map(([signed, is64, s]) => (e) => e.div(signed, is64, s)),
  reg.map((d) => (e) => e.ror16by8(d)), reg.map((d) => (e) => e.movzx16(d)), fc.tuple(fc.boolean(), reg).map(([is64, d]) => (e) => e.bswap(is64, d)),
  reg.map((d) => (e) => e.movSelf32(d)),
  fc.tuple(shift, fc.boolean(), reg, reg).map(([op, is64, d, s]) => (e) => e.shiftx(op, is64, d, s)),
  fc.tuple(fc.constantFrom("add", "and", "or", "xor", "xadd", "xchg", "cmpxchg" as const), fc.constantFrom<4 | 8>(4, 8), reg, disp, reg)
    .map(([op, size, b, o, s]) => (e) => e.atomicRmw(op, size, b, o, s)),
  fc.tuple(width, reg, reg, disp).map(([size, d, b, o]) => (e) => e.ldx(size, d, b, o)),
  fc.tuple(fc.constantFrom<1 | 2 | 4>(1, 2, 4), reg, reg, disp).map(([size, d, b, o]) => (e) => e.ldsx(size, d, b, o)),
  fc.tuple(width, reg, disp, reg).map(([size, b, o, s]) => (e) => e.stx(size, b, o, s)),
  fc.tuple(width, reg, disp).chain(([size, b, o]) => immFor(size === 8).map((v) => (e: Emitter) => e.st(size, b, o, size === 1 ? (v << 24) >> 24 : size === 2 ? (v << 16) >> 16 : v))),
  fc.tuple(fc.boolean(), reg, reg).map(([is64, a, b]) => (e) => e.cmpRR(is64, a, b)),
  fc.tuple(fc.boolean(), reg).chain(([is64, a]) => immFor(is64).map((v) => (e: Emitter) => e.cmpRI(is64, a, v))),
  fc.tuple(fc.boolean(), reg, reg).map(([is64, a, b]) => (e) => e.testRR(is64, a, b)),
  fc.tuple(fc.boolean(), reg).chain(([is64, a]) => immFor(is64).map((v) => (e: Emitter) => e.testRI(is64, a, v))),
  fc.tuple(cond, fc.boolean()).chain(([c, short]) => rel(short).map((r) => (e: Emitter) => e.jcc(c, short, r))),
  fc.boolean().chain((short) => rel(short).map((r) => (e: Emitter) => e.jmp(short, r))),
  fc.constant((e) => e.callSymbol("target")),
];

function emitted(emits: readonly Emit[], records = true) {
  const e = new Emitter("t", { base: BASE, symbols: (s) => (s === "target" ? TARGET : undefined), ...(records ? { records: new InsnRecords() } : {}) });
  for (const f of emits) f(e);
  return e.finish();
}

describe("the JIT's records of what it wrote", () => {
  test.prop([fc.array(fc.oneof(...EMITS), { minLength: 1, maxLength: 12 })], runs(1500))("equal the decoding of their bytes, for every emitter and operand kind", (emits) => {
    const a = emitted(emits);
    expect(mismatches(a.decoded, a.bytes, a.base, "the emitters' code")).toEqual([]);
  });

  plain("every emitter form, each alone", () => {
    const out: string[] = [];
    EMITS.forEach((arb, i) => {
      for (const f of fc.sample(arb, { numRuns: 40, seed: i })) {
        const a = emitted([f]);
        out.push(...mismatches(a.decoded, a.bytes, a.base, `emitter ${i}`));
      }
    });
    expect(out).toEqual([]);
  });

  plain("an emitter asked for none keeps none; bytes written without a record leave the code to be decoded", () => {
    expect(emitted([(e) => e.push("rbp"), (e) => e.ret()], false).decoded).toBeUndefined();
    const e = new Emitter("t", { base: BASE, symbols: () => undefined, records: new InsnRecords() });
    e.push("rbp");
    // a strategy module reaching the private writer writes bytes no emitter recorded
    (e as unknown as { insn(note: string, write: (c: { emit(...b: number[]): void }) => void): void }).insn("raw", (c) => c.emit(0x90));
    e.ret();
    expect(e.finish().decoded).toBeUndefined();
  });

  test.prop([fc.constantFrom(...BUILTIN_STRATEGIES), planArb({ maxPrograms: 3, maxFuncs: 3 }), fc.boolean(), fc.boolean(), fc.boolean()], runs(60))(
    "of every function of generated programs under every design and JIT option equal the decoding, and the machine takes them",
    (strategy, plan, ibt, sls, bmi2) => {
      const img = buildImage(parseScenario(planToScenario(plan)).spec, strategy, { ibt, sls, bmi2 });
      const out: string[] = [];
      const funcs = img.programs.flatMap((p) => p.jit.funcs);
      for (const f of funcs) out.push(...mismatches(f.image.decoded, f.image.bytes, f.image.base, `${strategy.name} ${f.symbol}`));
      expect(funcs.length).toBeGreaterThan(0);
      expect(out).toEqual([]);
    },
    runsTimeout(60, 30_000),
  );

  plain("are what the machine loads and runs, and what decodeCode() then gives the oracles", () => {
    // an immediate no other test loads at TEXT: the block cache has not seen these bytes
    const e = new Emitter("t", { base: TEXT, symbols: () => undefined, records: new InsnRecords() });
    e.push("rbx").movImm32(false, "rbx", 0x5ca1ab1e).aluRI("add", true, "rbx", 7).movReg(true, "rax", "rbx").pop("rbx").ret();
    const a = e.finish();
    const m = newMachine();
    m.load(TEXT, a.bytes, a.decoded as readonly DInsn[]);
    expect(decodeCode(a.bytes, TEXT)).toBe(a.decoded);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run({ maxSteps: 100 })).toMatchObject({ kind: "completed", rax: 0x5ca1ab25n, steps: 6 });
  });

  plain("are not taken for other bytes, nor when they are not a recorder's", () => {
    const e = new Emitter("t", { base: TEXT, symbols: () => undefined, records: new InsnRecords() });
    e.movImm32(false, "rax", 0x7e57c0de).ret();
    const a = e.finish();
    // the same length, another immediate: the records of the first bytes stay out
    const patched = a.bytes.slice();
    patched[1] = patched[1]! ^ 0xff;
    const m = newMachine();
    m.load(TEXT, patched, a.decoded as readonly DInsn[]);
    expect(decodeCode(patched, TEXT)).not.toBe(a.decoded);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run({ maxSteps: 10 })).toMatchObject({ kind: "completed", rax: BigInt(0x7e57c0de ^ 0xff) });
    // a copy of the records is not a recorder's: the bytes are decoded
    const again = new Emitter("t", { base: TEXT, symbols: () => undefined, records: new InsnRecords() }).movImm32(false, "rax", 0x7e57c0df).ret().finish();
    newMachine().load(TEXT, again.bytes, [...(again.decoded as readonly DInsn[])]);
    expect(decodeCode(again.bytes, TEXT)).not.toBe(again.decoded);
    expect(decodeCode(again.bytes, TEXT)).toStrictEqual(again.decoded);
    // records of another origin that say something else of the same bytes are not run: the bytes are
    const forged = new Emitter("t", { base: TEXT, symbols: () => undefined, records: new InsnRecords() }).movImm32(false, "rax", 0x7e57c0e0).ret().finish();
    const lying = (forged.decoded as readonly DInsn[]).map((d) => ({ ...d, immLo: 0 }));
    const mf = newMachine();
    mf.load(TEXT, forged.bytes, lying);
    mf.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(mf.run({ maxSteps: 10 })).toMatchObject({ kind: "completed", rax: 0x7e57c0e0n });
  });
});
