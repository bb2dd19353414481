// The JIT's record of each instruction it writes (jit/x86/form.ts), which the machine takes in
// place of decoding a JIT image, against iced-x86's decoding of the same bytes: the machine's
// decoded records (harness/machine/decode.ts convert()) must be the same, field for field, for
// every emitter form and operand kind, and for every function of generated programs under every
// built-in strategy and JIT option. A run from the records and one from the bytes alone give the
// same outcome.
import { describe, expect, test as plain } from "vitest";
import { fc, test } from "@fast-check/vitest";
import { Emitter, type AluOp, type Cond, type ShiftOp, type Width } from "../../../jit/x86/emit.ts";
import { REG_NAMES } from "../../../jit/x86/encode.ts";
import { code, EmittedInsn, mem, reg } from "../../../jit/x86/form.ts";
import type { InsnView } from "../../../harness/machine/decode.ts";
import { convert, forgetDecodedBlocks, unsupportedWhy, type DInsn } from "../../../harness/machine/decode.ts";
import { forEachInstruction } from "../../../jit/iced.ts";
import { buildImage, type Image } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { isaProgramArb, richArb } from "../../../generators/programs.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { hostTimeout } from "../../helpers/runs.ts";

const BASE = 0xffffffffa0000000n;
const TARGET = 0xffffffff81000100n;
const ip = (a: bigint) => Number(BigInt.asIntN(64, a));

/** A decoded record with the reason it is unsupported, if it is, for comparison. */
const record = (d: DInsn) => ({ ...d, why: unsupportedWhy.get(d) });

/** What iced's decoding of `bytes` at `base` gives the machine, instruction by instruction. */
function fromBytes(bytes: Uint8Array, base: bigint): ReturnType<typeof record>[] {
  const out: ReturnType<typeof record>[] = [];
  let at = ip(base);
  forEachInstruction(bytes, base, (ins) => {
    const d = convert(ins, at, bytes.subarray(at - ip(base)));
    out.push(record(d));
    at = d.next;
  });
  return out;
}

/** What the JIT's records give it. */
function fromForms(forms: readonly InsnView[], base: bigint): ReturnType<typeof record>[] {
  let at = ip(base);
  return forms.map((f) => {
    const d = convert(f, at);
    at = d.next;
    return record(d);
  });
}

const gpr = fc.constantFrom(...REG_NAMES.filter((r) => r !== "rsp"));
const any = fc.constantFrom(...REG_NAMES);
// values past what the instruction's field holds too (a strategy module may pass them): the
// record must say what the bytes say, not what was asked for
const past = fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.constantFrom(0x80000000, 0xffffffff, 0x100000000, -0x80000001, 2 ** 53 - 1));
const imm32 = fc.oneof(fc.integer({ min: -130, max: 130 }), fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0, -1, 127, 128, -128, -129, 0x7fffffff, -0x80000000), past);
const disp = fc.oneof(fc.integer({ min: -300, max: 300 }), fc.integer({ min: -0x80000000, max: 0x7fffffff }), past);
const width = fc.constantFrom<Width>(1, 2, 4, 8);
const alu = fc.constantFrom<AluOp>("add", "sub", "and", "or", "xor");
const shift = fc.constantFrom<ShiftOp>("shl", "shr", "sar");
const cond = fc.constantFrom<Cond>("e", "ne", "a", "b", "ae", "be", "g", "l", "ge", "le");
const b = fc.boolean();
/** An emitter method and its arguments (printed as such in a counterexample). */
type Call = readonly [string, ...unknown[]];
const m = (name: keyof Emitter, ...args: fc.Arbitrary<unknown>[]): fc.Arbitrary<Call> => fc.tuple(fc.constant(name), ...args);

/** One call of every emitter, with operands drawn from every kind it takes. */
const call: fc.Arbitrary<Call> = fc.oneof(
  ...(["endbr64", "nop5", "nop3", "leave", "ret", "int3", "xorEdx"] as const).map((name) => m(name)),
  m("cdq", b), m("callSymbol", fc.constant("target")), m("nops", fc.integer({ min: 0, max: 40 })),
  m("push", any), m("pop", any), m("movRR", any, any), m("movReg", b, gpr, gpr),
  m("subRspImm32", imm32), m("subRsp", imm32), m("addRsp", imm32), m("lea", any, any, disp), m("addFromGs", any, fc.oneof(fc.integer({ min: 0, max: 0xffff }), past)),
  m("movImm32", b, gpr, imm32), m("movImm64", gpr, fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n })),
  m("aluRR", alu, b, gpr, gpr), m("aluRI", alu, b, gpr, imm32), m("neg", b, gpr),
  m("shiftRI", shift, b, gpr, fc.integer({ min: 1, max: 300 })), m("shiftRCl", shift, b, gpr),
  m("movsxReg", fc.constantFrom(8, 16, 32), b, gpr, gpr).filter(([, n, w]) => w === true || n !== 32),
  m("imulRI", b, gpr, imm32), m("imulRR", b, gpr, gpr), m("movR11Imm32", imm32), m("div", b, b, gpr),
  m("ror16by8", gpr), m("movzx16", gpr), m("movSelf32", gpr), m("bswap", b, gpr), m("shiftx", shift, b, gpr, gpr),
  m("atomicRmw", fc.constantFrom("add", "and", "or", "xor", "xadd", "xchg", "cmpxchg"), fc.constantFrom(4, 8), any, disp, gpr),
  m("ldx", width, gpr, any, disp), m("ldsx", fc.constantFrom(1, 2, 4), gpr, any, disp), m("stx", width, any, disp, gpr), m("st", width, any, disp, imm32),
  m("cmpRR", b, gpr, gpr), m("cmpRI", b, gpr, imm32), m("testRR", b, gpr, gpr), m("testRI", b, gpr, imm32),
  m("jcc", cond, b, fc.oneof(fc.integer({ min: -128, max: 0x7fffff }), past)), m("jmp", b, fc.oneof(fc.integer({ min: -128, max: 0x7fffff }), past)),
);

/** An emitter's bytes and records for a sequence of calls. */
function emit(calls: readonly Call[]) {
  const e = new Emitter("t", { base: BASE, symbols: (s) => (s === "target" ? TARGET : undefined) });
  for (const [name, ...args] of calls) (e[name as keyof Emitter] as (...a: unknown[]) => unknown).apply(e, args);
  return e.finish();
}

describe("the JIT's instruction records against iced-x86's decoding", () => {
  test.prop([fc.array(call, { minLength: 1, maxLength: 12 })], { numRuns: 400 })("every emitter form and operand kind: the same decoded records", (calls) => {
    const a = emit(calls);
    expect(fromForms(a.forms!(), a.base)).toEqual(fromBytes(a.bytes, a.base));
  });

  plain("a record that is not what the bytes say is told apart (the check can fail)", () => {
    const a = emit([["push", "rbp"], ["movRR", "rbp", "rsp"], ["ldx", 4, "rax", "rbp", -8]]);
    const forms = [...a.forms!()];
    expect(fromForms(forms, a.base)).toEqual(fromBytes(a.bytes, a.base));
    // the load's destination one register off
    forms[2] = new EmittedInsn(code("Mov_r32_rm32"), forms[2]!.length, [reg("rcx", 4), mem("rbp", -8, 4)]);
    expect(fromForms(forms, a.base)).not.toEqual(fromBytes(a.bytes, a.base));
  });

  const programs = fc.oneof(isaProgramArb.map((p) => ({ programs: [p], nested: [] })), richArb.map(([rich, nested]) => ({ programs: [rich, nested], nested: [1] })));
  const image = fc.tuple(programs, fc.constantFrom(...BUILTIN_STRATEGIES), b, b, b);
  test.prop([image], { numRuns: 40 })("every function of generated programs under every strategy and JIT option: the same records, and the same run", ([spec, s, ibt, sls, bmi2]) => {
    const img = buildImage({ ...spec, task: 0 }, s, { ibt, sls, bmi2 });
    const jitted = img.loads.filter((l) => l.forms !== undefined);
    expect(jitted.length).toBeGreaterThan(0);
    for (const l of jitted) expect(fromForms(l.forms!(), l.addr)).toEqual(fromBytes(l.bytes, l.addr));
    // the machine from the bytes alone and from the records (decoded blocks are shared by
    // content: forgotten before each, so each builds its own)
    const run = (i: Image) => {
      forgetDecodedBlocks();
      const m = loadImage(i);
      startTask(i, m);
      const r = m.run({ maxSteps: 400_000 });
      return { ...r, regs: m.regs() };
    };
    const bare: Image = { ...img, loads: img.loads.map(({ addr, bytes }) => ({ addr, bytes })) };
    expect(run(img)).toEqual(run(bare));
  }, hostTimeout(60_000));
});
